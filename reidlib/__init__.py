"""reidlib: a small, importable person re-identification library.

The package reproduces "Person Re-identification using Siamese Networks" (BoT ResNet50, OSNet x0.25 and a
MobileNetV3-Large embedding net) and the tooling around it: dataset readers, models, losses, a trainer,
an exact and fast evaluator, and plots.

Top-level names are imported lazily so that ``import reidlib`` stays cheap (no torch import until needed).
"""
from __future__ import annotations

import importlib
import os

# No code path of this project may wait on the network: timm/huggingface_hub honour this flag.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

__version__ = "0.1.0"

_LAZY = {
    "build_dataset": "reidlib.data",
    "list_datasets": "reidlib.data",
    "build_model": "reidlib.models",
    "list_models": "reidlib.models",
    "count_parameters": "reidlib.models",
    "make_loss": "reidlib.losses",
    "evaluate": "reidlib.evaluation",
    "distance": "reidlib.evaluation",
    "extract_features": "reidlib.evaluation",
    "evaluate_features": "reidlib.evaluation",
    "fit": "reidlib.engine",
    "finetune": "reidlib.engine",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name: str):
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'reidlib' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
