"""Command line for :func:`reidlib.engine.fit`, usable alone or under ``torchrun``.

    python -m reidlib.train --dataset synthetic --root data/synth --model osnet_x0_25 --epochs 2 --out work/run
    torchrun --nproc_per_node=2 -m reidlib.train --dataset synthetic --root data/synth --model osnet_x0_25 ...

Every :class:`~reidlib.engine.TrainConfig` field is an option (``--num-val-ids 20``, ``--optimizer sgd``,
``--milestones 40 70``, ``--no-eval-flip``, ``--model-kwargs '{"feature_dim": 256}'``). Under torchrun each
process joins the group with the backend of ``--device`` (gloo for cpu, nccl for cuda; ``--backend`` overrides)
and a collective timeout of ``--dist-timeout`` minutes; rank 0 prepares the data, logs and writes the run.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any, Sequence

from reidlib.runtime import PRECISIONS

from .config import DATA_PATHS, SELECT_ON, TrainConfig
from .distributed import DEFAULT_TIMEOUT_MINUTES
from .optim import OPTIMIZERS, SCHEDULERS

_SCALARS = {"int": int, "float": float, "str": str}
_CHOICES = {"optimizer": OPTIMIZERS, "scheduler": SCHEDULERS, "select_on": SELECT_ON, "precision": PRECISIONS,
            "data_path": DATA_PATHS}


def _add_config_options(parser: argparse.ArgumentParser) -> None:
    """One option per TrainConfig field, typed from its annotation."""
    group = parser.add_argument_group("training options (TrainConfig fields)")
    for f in dataclasses.fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        kind = str(f.type).replace(" | None", "")
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        help_ = f"default: {default!r}"
        if kind == "bool":
            group.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction, default=default, help=help_)
        elif kind in _SCALARS:
            group.add_argument(flag, dest=f.name, type=_SCALARS[kind], default=default, help=help_,
                               choices=_CHOICES.get(f.name))
        elif kind.startswith("tuple"):
            group.add_argument(flag, dest=f.name, type=int, nargs="*", default=default, help=help_)
        elif kind == "dict":
            group.add_argument(flag, dest=f.name, type=json.loads, default=default, help=help_ + " (JSON)")
        else:  # pragma: no cover - a new field type needs a rule here
            raise TypeError(f"no command-line rule for TrainConfig.{f.name}: {f.type}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m reidlib.train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, help="registered dataset name (reidlib.data.list_datasets())")
    parser.add_argument("--root", required=True, help="dataset folder (synthetic: generated there if absent)")
    parser.add_argument("--dataset-kwargs", type=json.loads, default={}, help="JSON options for build_dataset")
    parser.add_argument("--model", required=True, help="registered model name (reidlib.models.list_models())")
    parser.add_argument("--out", required=True, help="run folder (checkpoints, metrics.csv, history.json)")
    parser.add_argument("--backend", default=None,
                        help="torch.distributed backend (default: gloo for --device cpu, nccl for cuda)")
    parser.add_argument("--dist-timeout", type=float, default=DEFAULT_TIMEOUT_MINUTES, metavar="MINUTES",
                        help="how long a rank waits in a collective before the run is aborted; must exceed the "
                             "longest evaluation, which rank 0 runs alone (default: %(default)s)")
    _add_config_options(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train, print the result summary as JSON on rank 0; returns the exit status."""
    from reidlib.data import build_dataset

    from .distributed import barrier, cleanup, init_distributed
    from .trainer import fit

    parser = build_parser()
    args = parser.parse_args(argv)
    options: dict[str, Any] = {f.name: getattr(args, f.name) for f in dataclasses.fields(TrainConfig)}
    options["milestones"] = tuple(options["milestones"])
    try:  # TrainConfig's range checks (--epochs >= 1, --lr > 0, ...) as parser errors: one line, exit status 2
        TrainConfig.from_kwargs(**options)
    except (ValueError, TypeError) as err:
        parser.error(str(err))
    info = init_distributed(args.backend, device=options["device"], timeout_minutes=args.dist_timeout)
    try:
        if not info.is_main:
            barrier()  # rank 0 generates/validates the data first
        dataset = build_dataset(args.dataset, args.root, **args.dataset_kwargs)
        if info.is_main:
            barrier()
        result = fit(args.model, dataset, out_dir=args.out, **options)
        if info.is_main:
            print(json.dumps(result.summary(), indent=2, default=str))
    finally:
        cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
