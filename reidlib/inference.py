"""Loading an embedding model for deployment (ONNX export, search), with an identity that names its weights.

>>> from reidlib.inference import load_embedding_model                                          # doctest: +SKIP
>>> model, ident = load_embedding_model("osnet_x0_25", weights="../shared/weights/osnet_x0_25_msmt17.pth")
>>> ident.as_dict(256, 128)       # {"model": "osnet_x0_25", "weights_sha256": "…", "height": 256, "width": 128, ...}

A model comes from exactly one of: a weights file (``build_model(name, pretrained=FILE)``: torchreid, torchvision,
timm or reidlib state dicts), a training checkpoint (``reidlib.engine.load_model``: ``best.pt``/``last.pt`` or
a run folder), or neither (random init under a seed: for tests only; such a model is identified by its seed).
The returned model is in eval mode, fp32, on the CPU, and maps a normalised (N, 3, H, W) float batch
(``reidlib.data.build_transforms(H, W, is_train=False)``) to (N, D) embeddings.
"""
from __future__ import annotations

import hashlib
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn

log = logging.getLogger(__name__)


def file_sha256(path: str | Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with Path(path).open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class ModelIdentity:
    """What produced an embedding: architecture name, where its weights came from and their hash.

    ``source`` is ``"weights"``, ``"checkpoint"`` or ``"random"``; ``weights_sha256`` is the SHA-256 of the file
    read (``"random-init-seed-<seed>"`` for a random model); ``weights_file`` is the file's name (not its path,
    so a moved file keeps its identity).
    """

    model: str
    source: str
    weights_file: str
    weights_sha256: str

    def as_dict(self, height: int, width: int) -> dict:
        """The identity plus the input size (height, width in pixels), JSON-able."""
        return {**asdict(self), "height": int(height), "width": int(width)}


def _classes_in(weights: Path) -> int:
    """Class count of the file's ID head when it has one (so the report stays exact), else 1 (unused at test time)."""
    from reidlib.models import read_state_dict

    state = read_state_dict(weights)
    head = state.get("classifier.weight")
    return int(head.shape[0]) if isinstance(head, torch.Tensor) and head.dim() == 2 else 1


def load_embedding_model(name: str | None = None, weights: str | Path | None = None,
                         checkpoint: str | Path | None = None, seed: int = 0,
                         **model_kwargs) -> tuple[nn.Module, ModelIdentity]:
    """Build or load an embedding model in eval mode (fp32, CPU) and say what it is.

    Args:
        name: a :func:`reidlib.models.list_models` name; required with ``weights`` or for random init. With
            ``checkpoint`` it is optional, and when given must match the architecture the checkpoint records.
        weights: a local weights file for ``build_model(name, num_classes, pretrained=weights)``.
        checkpoint: a reidlib training checkpoint (``best.pt``, ``last.pt`` or a run folder).
        seed: torch seed for a random-init model (no weights, no checkpoint).
        **model_kwargs: family options passed to ``build_model`` (not with ``checkpoint``).

    Returns:
        ``(model, identity)``.

    Raises:
        ValueError: both ``weights`` and ``checkpoint``; no ``name`` where one is needed; a checkpoint of
            another architecture than ``name``; weights that do not fit the architecture.
        reidlib.engine.checkpoint.CheckpointError: (a ``ValueError``) a checkpoint that is empty, truncated,
            corrupt or not a reidlib training checkpoint; the message names the file and what to do.
        reidlib.models.weights.CheckpointReadError: (a ``ValueError``) the same for a weights file.
        FileNotFoundError: a missing weights or checkpoint file.
    """
    from reidlib.models import build_model, list_models

    if weights is not None and checkpoint is not None:
        raise ValueError("give either weights (a weights file) or checkpoint (a reidlib training run), not both")
    if name is not None and name not in list_models():
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(list_models())}")
    if checkpoint is not None:
        from reidlib.engine import load_checkpoint, load_model, resolve_checkpoint

        path = resolve_checkpoint(checkpoint)
        spec = load_checkpoint(path, mmap=True, require=("model",)).get("model_spec") or {}  # tensors not read
        if name is not None and spec.get("name") not in (None, name):
            raise ValueError(f"checkpoint {path} holds a {spec.get('name')!r} model, not {name!r}; drop --model or "
                             f"pass --model {spec.get('name')}")
        if model_kwargs:
            raise ValueError("model options come from the checkpoint's recorded build spec; do not pass them")
        model = load_model(path)
        ident = ModelIdentity(spec.get("name") or name or type(model).__name__, "checkpoint", path.name,
                              file_sha256(path))
    elif weights is not None:
        if name is None:
            raise ValueError(f"weights {weights} need the architecture: pass the model name "
                             f"(one of {', '.join(list_models())})")
        path = Path(weights)
        if not path.is_file():
            raise FileNotFoundError(f"weights file {path} does not exist; pass a local .pth/.pt/.safetensors file")
        model = build_model(name, _classes_in(path), pretrained=path, **model_kwargs)
        report = getattr(model, "pretrained_report", None)
        if report is not None and not report.exact:
            log.warning("weights loaded with differences: %s", report.summary())
        ident = ModelIdentity(name, "weights", path.name, file_sha256(path))
    else:
        if name is None:
            raise ValueError(f"a random-init model needs its name (one of {', '.join(list_models())})")
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            model = build_model(name, 1, **model_kwargs)
        ident = ModelIdentity(name, "random", "", f"random-init-seed-{int(seed)}")
    return model.float().cpu().eval(), ident
