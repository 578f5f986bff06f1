"""Fine-tuning a trained model on another dataset, done the way the paper's code meant to (reproduction_notes §5).

Order of operations in :func:`finetune`: load the source weights; replace the classifier **on the real module**
by a fresh one with the target's number of training identities (always, even when the counts match: the
identities differ); then :func:`reidlib.engine.fit` builds a fresh center loss for the target's classes and
the optimizer *after* the surgery, optionally trains only the head (classifier + neck) for the first epochs,
selects on a held-out split of the target's training ids, and writes into a fresh ``out_dir``.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn as nn

from reidlib.runtime import seed_everything

from .checkpoint import load_checkpoint, resolve_checkpoint
from .config import TrainResult
from .distributed import unwrap
from .trainer import Item, fit, split_training_data


def load_model(checkpoint: str | Path, model: nn.Module | None = None,
               device: str | torch.device = "cpu") -> nn.Module:
    """A model with the weights of ``checkpoint`` (a ``best.pt``/``last.pt`` file or a run folder).

    Without ``model``, it is rebuilt with :func:`reidlib.models.build_model` from the checkpoint's
    ``model_spec`` (recorded when ``fit`` got a model name, or a model carrying ``build_spec``). With ``model``,
    its classifier is resized to the checkpoint's class count if needed, then the weights are loaded (strict).
    """
    path = resolve_checkpoint(checkpoint)
    state = load_checkpoint(path, map_location="cpu", require=("model", "num_classes"))
    if model is None:
        spec = state.get("model_spec")
        if not spec:
            raise ValueError(f"{path} records no model_spec (fit got a model object without build_spec); "
                             "pass the architecture as model=build_model(name, num_classes, ...)")
        from reidlib.models import build_model

        kwargs = dict(spec.get("kwargs") or {})
        kwargs.pop("pretrained", None)  # the checkpoint holds the weights
        kwargs.pop("num_classes", None)
        if "paper_code" in spec:
            kwargs["paper_code"] = spec["paper_code"]
        model = build_model(spec["name"], state["num_classes"], **kwargs)
    raw = unwrap(model)
    head = getattr(raw, "classifier", None)
    if isinstance(head, nn.Linear) and head.out_features != state["num_classes"]:
        raw.reset_classifier(state["num_classes"])
    raw.load_state_dict(state["model"])
    return model.to(device)


def prepare_finetune(source_checkpoint: str | Path, target: Any, *, model: nn.Module | None = None,
                     val: tuple[Sequence[Item], Sequence[Item]] | int | None = None,
                     num_val_ids: int | None = None, seed: int = 0) -> nn.Module:
    """Source weights with a fresh classifier for the target's training identities (after its val split).

    The head is replaced with ``reset_classifier`` on the unwrapped module, under ``seed``, so the
    same call gives the same initial head.
    """
    if isinstance(val, int) and not isinstance(val, bool):
        num_val_ids, val = val, None
    model = load_model(source_checkpoint, model)
    train_items, _, _ = split_training_data(target, val, num_val_ids, seed)
    raw = unwrap(model)
    if not hasattr(raw, "reset_classifier"):
        raise TypeError(f"{type(raw).__name__} has no reset_classifier(num_classes); cannot fine-tune it")
    seed_everything(seed)
    raw.reset_classifier(len({pid for _, pid, _ in train_items}))
    return model


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def finetune(source_checkpoint: str | Path, target: Any, *, out_dir: str | Path, epochs: int = 10,
             head_only_epochs: int = 1, warmup_epochs: int = 0, milestones: Sequence[int] = (),
             model: nn.Module | None = None, val: tuple[Sequence[Item], Sequence[Item]] | int | None = None,
             train_transform: Callable | None = None, test_transform: Callable | None = None,
             **kwargs: Any) -> TrainResult:
    """Fine-tune the model in ``source_checkpoint`` on ``target`` (a ReIDDataset) into a fresh ``out_dir``.

    Args:
        source_checkpoint: a ``best.pt``/``last.pt`` or a run folder (its ``best.pt`` is used, else ``last.pt``).
        target: the target dataset; its train split (minus held-out val ids) sets the new class count.
        out_dir: must differ from, and not lie inside, the source checkpoint's folder (which is only read).
        epochs: fine-tuning epochs (the paper: 10).
        head_only_epochs: the first epochs train only the new head (classifier + neck; the backbone and its
            BatchNorm statistics stay frozen); 0 trains everything from the start as the paper code did.
        warmup_epochs, milestones: the lr schedule; defaults = no warm-up, constant lr. The paper code ran
            all 10 epochs inside a 10-epoch warm-up (``warmup_epochs=10, milestones=(40, 70)``).
        model: the architecture, when the checkpoint has no ``model_spec``.
        **kwargs: any other :func:`reidlib.engine.fit` option (``optimizer``, ``lr``, ``num_val_ids``, ...).
    """
    src = resolve_checkpoint(source_checkpoint).resolve()
    out = Path(out_dir).resolve()
    if out == src.parent or src.parent in out.parents:
        raise ValueError(f"out_dir {out} must differ from (and not lie inside) the source run folder {src.parent}: "
                         "fine-tuning writes a fresh run and never touches the source")
    seed = int(kwargs.get("seed", 0))
    model = prepare_finetune(src, target, model=model, val=val, num_val_ids=kwargs.get("num_val_ids"), seed=seed)
    source = load_checkpoint(src)
    meta = {"finetune": {"source_checkpoint": str(src), "source_sha256": _digest(src),
                         "source_epoch": source.get("epoch"), "source_num_classes": source.get("num_classes"),
                         "head_only_epochs": head_only_epochs}}
    spec = source.get("model_spec")
    if spec and getattr(unwrap(model), "build_spec", None) is None:
        unwrap(model).build_spec = spec
    return fit(model, target, out_dir=out, val=val, epochs=epochs, warmup_epochs=warmup_epochs,
               milestones=tuple(milestones), head_only_epochs=head_only_epochs,
               train_transform=train_transform, test_transform=test_transform, meta=meta, **kwargs)
