"""What the benchmark scripts share: the command line a report prints, writing results, the timed training step
and the commit a measurement ran on.

Scripts import it as ``from benchlib import ...`` (they run from ``benchmarks/``, which Python puts on the path).
Images are 256x128 (``SIZE``); throughputs are images per second.
"""
from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from reidlib.losses import make_loss
from reidlib.runtime import autocast, to_memory_format

ROOT = Path(__file__).resolve().parents[1]
SIZE = (256, 128)
NUM_CLASSES = 751  # Market-1501's training identities: the paper's classifier size


def command_line(script: str, argv: list[str] | None) -> str:
    """The command that reruns benchmark ``script`` (its file) with these arguments, as the reports print it."""
    args = argv if argv is not None else sys.argv[1:]
    return f"HF_HUB_OFFLINE=1 .venv/bin/python benchmarks/{Path(script).name} " + " ".join(args)


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file beside it (:func:`reidlib.io.write_atomic`)."""
    from reidlib.io import write_atomic as _write

    _write(path, text)


def write_results(out_dir: str | Path, stem: str, payload: dict, lines: list[str]) -> None:
    """``<out_dir>/<stem>.json`` (``payload``; NaN becomes null) and ``<stem>.md`` (``lines``), each through a
    temporary file."""
    from reidlib.engine.records import write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{stem}.json", payload)
    write_atomic(out / f"{stem}.md", "\n".join(lines) + "\n")


def git_commit() -> str:
    """The checkout's short commit, with "+ uncommitted changes" when reidlib/ or benchmarks/ differ from it."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                              capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "reidlib", "benchmarks"], cwd=ROOT,
                               capture_output=True, text=True).stdout.strip()
        return f"{head} + uncommitted changes" if dirty else head
    except OSError:
        return "unknown"


def best_seconds(fn: Callable[[], None], iters: int) -> float:
    """The fastest of ``iters`` timed calls of ``fn`` after one untimed warm-up (seconds): on a shared machine the
    minimum is the estimate least affected by other jobs."""
    fn()  # warm-up (oneDNN primitive creation, allocator)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def train_step(net: torch.nn.Module, model: torch.nn.Module, batch: int, precision: str, num_classes: int, *,
               center_weight: float = 5e-4, channels_last: bool = True, optimizer=None) -> Callable[[], None]:
    """One training step on a fixed random batch, as a function to call and time.

    ``net`` is what runs the forward (``model`` itself, or a DDP / compiled wrapper of it); ``model`` holds the
    parameters and ``feat_dim``. The batch is ``batch`` 256x128 images in P x K groups of 4 (channels_last unless
    told otherwise); forward under autocast(``precision``) on the CPU, LS-CE + batch-hard triplet (+ center) loss
    in fp32, backward, an optimizer step: ``optimizer(trainable parameters)``, by default the peer's amsgrad 1.5e-3.
    """
    device = torch.device("cpu")
    criterion = make_loss(num_classes=num_classes, feat_dim=model.feat_dim, center_weight=center_weight)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = optimizer(params) if optimizer else torch.optim.Adam(params, lr=1.5e-3, amsgrad=True)
    x = to_memory_format(torch.randn(batch, 3, *SIZE), channels_last)
    y = torch.arange(batch // 4).repeat_interleave(4)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with autocast(device, precision):
            logits, feat = net(x)
        total, _ = criterion(logits.float(), feat.float(), y)
        total.backward()
        opt.step()

    return step


def throughput(model: torch.nn.Module, batch: int, iters: int, train: bool, precision: str,
               channels_last: bool) -> float:
    """Images per second of eval inference (``train=False``) or of one training step (SGD momentum 0.9, lr 1e-4)
    on the CPU, on random 256x128 input: :func:`best_seconds` of ``iters`` calls."""
    device = torch.device("cpu")
    model = to_memory_format(model, channels_last)
    x = to_memory_format(torch.randn(batch, 3, *SIZE), channels_last)
    if not train:
        model.eval()

        def step() -> None:
            with torch.inference_mode(), autocast(device, precision):
                model(x)
    else:
        model.train()
        step = train_step(model, model, batch, precision, NUM_CLASSES, channels_last=channels_last,
                          optimizer=lambda params: torch.optim.SGD(params, lr=1e-4, momentum=0.9))

    return batch / best_seconds(step, iters)
