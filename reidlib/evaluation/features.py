"""Embedding extraction with flip test-time augmentation, and a small .npz feature store.

The CPU fast path (channels_last + bf16 autocast) and CUDA AMP come from :mod:`reidlib.runtime`; features are
always returned as float32 on the CPU, so a distance study can reload them instead of re-running the network.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from reidlib.io import atomic_path
from reidlib.progress import progress_bar
from reidlib.runtime import autocast, resolve_device, resolve_precision, to_memory_format


@dataclass
class FeatureSet:
    """Embeddings of an ordered list of images.

    Attributes:
        feats: (N, D) float32 CPU tensor.
        pids, camids: (N,) int64 numpy arrays.
        paths: N image paths (str).
        meta: free-form JSON-able settings (model, flip, precision, ...) saved with the features.
    """

    feats: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray
    paths: list[str]
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.feats = torch.as_tensor(self.feats, dtype=torch.float32).cpu()
        self.pids = np.asarray(self.pids, dtype=np.int64)
        self.camids = np.asarray(self.camids, dtype=np.int64)
        self.paths = [str(p) for p in self.paths]
        n = self.feats.shape[0]
        if self.feats.dim() != 2 or not (len(self.pids) == len(self.camids) == len(self.paths) == n):
            raise ValueError(f"FeatureSet needs feats (N, D) and N pids/camids/paths; got feats "
                             f"{tuple(self.feats.shape)}, {len(self.pids)} pids, {len(self.camids)} camids, "
                             f"{len(self.paths)} paths")

    def __len__(self) -> int:
        return self.feats.shape[0]

    def save(self, path: str | Path) -> Path:
        """Write an uncompressed ``.npz`` (temp file in the same folder, then renamed into place)."""
        path = Path(path)
        if path.suffix != ".npz":
            path = path.with_name(path.name + ".npz")
        with atomic_path(path, suffix=".npz") as tmp, tmp.open("wb") as fh:
            np.savez(fh, feats=self.feats.numpy(), pids=self.pids, camids=self.camids,
                     paths=np.asarray(self.paths, dtype=np.str_), meta=np.asarray(json.dumps(self.meta)))
        return path

    @classmethod
    def load(cls, path: str | Path) -> "FeatureSet":
        """Read a file written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            missing = {"feats", "pids", "camids", "paths"} - set(z.files)
            if missing:
                raise ValueError(f"{path} is not a reidlib FeatureSet file (missing {sorted(missing)})")
            meta = json.loads(str(z["meta"])) if "meta" in z.files else {}
            return cls(torch.from_numpy(z["feats"].copy()), z["pids"], z["camids"], z["paths"].tolist(), meta)


def _embed(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        got = type(out).__name__ if not isinstance(out, torch.Tensor) else f"a tensor of shape {tuple(out.shape)}"
        raise TypeError(f"the model must return a (B, D) embedding tensor in eval mode, got {got}")
    return out.float()


def extract_features(model: torch.nn.Module, loader: Iterable, flip: bool = True,
                     device: str | torch.device | None = None, channels_last: bool | None = None,
                     precision: str = "auto", progress: bool = True) -> FeatureSet:
    """Embed every image of ``loader`` with ``model`` in eval mode.

    Args:
        model: maps a (B, 3, H, W) batch to (B, D) embeddings in eval mode. It is moved to ``device`` (and to
            channels_last) in place, as ``nn.Module.to`` does; its train/eval mode is restored afterwards.
        loader: yields ``(imgs, pids, camids, paths)`` batches (``reidlib.data.make_test_loader``).
        flip: average the embeddings of each image and its horizontal mirror (the paper code's test-time flip).
        device: default CUDA when available, else CPU.
        channels_last: default True (faster for conv nets on CPU and tensor cores).
        precision: ``"auto"`` (bf16 autocast on CPUs with native bf16, else fp32; bf16/fp16 AMP on CUDA),
            ``"fp32"``, ``"bf16"`` or ``"fp16"``.
        progress: show a tqdm bar.

    Returns:
        :class:`FeatureSet` with float32 CPU features in loader order (not normalised).
    """
    dev = resolve_device(device)
    precision = resolve_precision(precision, dev)  # fails early on a typo
    channels_last = True if channels_last is None else bool(channels_last)
    was_training = model.training
    model.eval()
    to_memory_format(model.to(dev), channels_last)
    feats, pids, camids, paths = [], [], [], []
    try:
        with torch.inference_mode():
            for batch in progress_bar(loader, desc="features", enabled=progress, unit="batch"):
                if not isinstance(batch, (tuple, list)) or len(batch) != 4:
                    raise ValueError("the loader must yield (imgs, pids, camids, paths) batches")
                imgs, pid, cam, path = batch
                x = to_memory_format(imgs.to(dev, non_blocking=True), channels_last)
                with autocast(dev, precision):
                    f = _embed(model, x)
                    if flip:
                        f = (f + _embed(model, x.flip(dims=[3]))) / 2
                feats.append(f.cpu())
                pids.append(np.asarray(pid, dtype=np.int64).reshape(-1))
                camids.append(np.asarray(cam, dtype=np.int64).reshape(-1))
                paths.extend([path] if isinstance(path, (str, Path)) else list(path))
    finally:
        model.train(was_training)
    if not feats:
        raise ValueError("the loader yielded no batches: nothing to extract")
    meta = {"flip": bool(flip), "precision": precision, "device": str(dev), "channels_last": channels_last}
    return FeatureSet(torch.cat(feats), np.concatenate(pids), np.concatenate(camids), paths, meta)
