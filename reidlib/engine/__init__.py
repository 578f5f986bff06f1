"""The trainer: the paper's recipe with checkpoints, exact resume, DDP, model selection and fine-tuning.

>>> from reidlib.engine import fit, finetune
>>> res = fit("osnet_x0_25", dataset, out_dir="work/osnet", epochs=120, optimizer="adam", num_val_ids=50)
>>> res.test_metrics["rank1"], res.optimizer, res.selected_on
>>> ft = finetune(res.checkpoint, other_dataset, out_dir="work/osnet_ft", epochs=10, head_only_epochs=1)

Command line (also under ``torchrun --nproc_per_node=N``): ``python -m reidlib.train --help``.
"""
from __future__ import annotations

from .checkpoint import load_checkpoint, resolve_checkpoint, save_checkpoint
from .config import SELECT_LABELS, TrainConfig, TrainResult
from .distributed import init_distributed, unwrap
from .evaluate import evaluate_model
from .finetune import finetune, load_model, prepare_finetune
from .optim import OPTIMIZERS, SCHEDULERS, EpochLRScheduler, build_optimizer, build_scheduler, lr_factor
from .trainer import fit, split_training_data

__all__ = [
    "OPTIMIZERS", "SCHEDULERS", "SELECT_LABELS", "EpochLRScheduler", "TrainConfig", "TrainResult",
    "build_optimizer", "build_scheduler", "evaluate_model", "finetune", "fit", "init_distributed",
    "load_checkpoint", "load_model", "lr_factor", "prepare_finetune", "resolve_checkpoint", "save_checkpoint",
    "split_training_data", "unwrap",
]
