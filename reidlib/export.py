"""ONNX export of a re-ID embedding network, checked against PyTorch with onnxruntime.

    python -m reidlib.export --model osnet_x0_25 --weights ../shared/weights/osnet_x0_25_msmt17.pth \\
        --height 256 --width 128 --out osnet.onnx
    python -m reidlib.export --checkpoint work/osnet/best.pt --height 256 --width 128 --out osnet.onnx

The graph is the model in eval mode: input ``images``, the normalised float32 batch (N, 3, H, W) that
``reidlib.data.build_transforms(H, W, is_train=False)`` makes (resize, ToTensor, ImageNet mean/std), with a
dynamic batch axis N; output ``embeddings``, the (N, D) float32 embedding PyTorch returns (not L2-normalised,
no flip averaging). H and W are fixed at export. The file carries metadata (``metadata_props``): ``reidlib``
(JSON: model identity, input size, mean, std), readable with ``onnx.load(path).metadata_props``.

Exporter: ``torch.onnx.export(..., dynamo=False)`` (TorchScript tracing), which needs only ``onnx`` and works
offline; opset 17 by default. The file is written to a temporary name beside ``out``, checked with
``onnx.checker``, then renamed into place, so a failed export leaves nothing behind.
"""
from __future__ import annotations

import argparse
import copy
import json
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn as nn

DEFAULT_OPSET = 17
# opsets the TorchScript exporter (dynamo=False) writes
MIN_OPSET, MAX_OPSET = 7, 20
INPUT_NAME = "images"
OUTPUT_NAME = "embeddings"


def _require(module: str) -> None:
    try:
        __import__(module)
    except ImportError as err:
        raise ImportError(f"{module} is not installed: `pip install -e .[deploy]` (or `pip install onnx onnxruntime`, "
                          f"the versions pinned in requirements.txt)") from err


def export_onnx(model: nn.Module, path: str | Path, height: int = 256, width: int = 128,
                opset: int = DEFAULT_OPSET, metadata: dict | None = None) -> Path:
    """Export ``model``'s eval-mode embedding to an ONNX file with a dynamic batch axis.

    Args:
        model: maps a (N, 3, height, width) float32 batch to (N, D) embeddings in eval mode. It is not modified
            (a CPU fp32 copy in eval mode is traced).
        path: the ``.onnx`` file to write (parent folders are created); replaced atomically.
        height, width: the input size in pixels, fixed in the graph.
        opset: ONNX opset version.
        metadata: JSON-able dict stored under the ``reidlib`` metadata key (the input size, mean and std are
            always added).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.
    """
    _require("onnx")
    import onnx

    from reidlib.data import IMAGENET_MEAN, IMAGENET_STD

    height, width = int(height), int(width)
    if height < 16 or width < 16:
        raise ValueError(f"height and width must be at least 16 pixels, got {height}x{width}")
    path = Path(path)
    if path.suffix.lower() != ".onnx":
        raise ValueError(f"the output file must end in .onnx, got {path}")
    path.parent.mkdir(parents=True, exist_ok=True)
    traced = copy.deepcopy(model).float().cpu().eval()
    example = torch.randn(2, 3, height, width, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = traced(example)
    if not isinstance(out, torch.Tensor) or out.dim() != 2 or out.shape[0] != 2:
        got = f"shape {tuple(out.shape)}" if isinstance(out, torch.Tensor) else type(out).__name__
        raise TypeError(f"the model must return a (N, D) embedding tensor in eval mode, got {got}")
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".onnx.tmp")
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=torch.jit.TracerWarning)  # shape checks traced as constants
            warnings.simplefilter("ignore", category=DeprecationWarning)  # "legacy TorchScript-based exporter": chosen
            torch.onnx.export(traced, (example,), str(tmp), dynamo=False, opset_version=int(opset),
                              input_names=[INPUT_NAME], output_names=[OUTPUT_NAME],
                              dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}},
                              do_constant_folding=True)
        proto = onnx.load(str(tmp))
        meta = {**(metadata or {}), "height": height, "width": width, "mean": list(IMAGENET_MEAN),
                "std": list(IMAGENET_STD), "input": f"{INPUT_NAME}: float32 (N, 3, {height}, {width}), normalised",
                "output": f"{OUTPUT_NAME}: float32 (N, {int(out.shape[1])})"}
        entry = proto.metadata_props.add()
        entry.key, entry.value = "reidlib", json.dumps(meta, sort_keys=True)
        onnx.checker.check_model(proto)
        onnx.save(proto, str(tmp))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp made it private; a finished export reads like any written file
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_metadata(path: str | Path) -> dict:
    """The ``reidlib`` metadata dict stored by :func:`export_onnx` (empty when absent)."""
    _require("onnx")
    import onnx

    proto = onnx.load(str(path), load_external_data=False)
    for entry in proto.metadata_props:
        if entry.key == "reidlib":
            return json.loads(entry.value)
    return {}


def onnx_session(path: str | Path, threads: int | None = None):
    """An ``onnxruntime.InferenceSession`` on the CPU for ``path`` (``threads``: intra-op threads, None = default)."""
    _require("onnxruntime")
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads is not None:
        opts.intra_op_num_threads = int(threads)
        opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])


def compare_with_torch(model: nn.Module, path: str | Path, batch: torch.Tensor) -> dict:
    """Run ``batch`` (N, 3, H, W) through PyTorch (eval, fp32) and the ONNX file; agreement per image.

    Returns:
        ``{"min_cosine": float, "max_abs_diff": float, "shape": [N, D]}``.
    """
    session = onnx_session(path)
    onnx_out = session.run([OUTPUT_NAME], {INPUT_NAME: batch.float().numpy()})[0]
    ref_model = copy.deepcopy(model).float().cpu().eval()
    with torch.no_grad():
        ref = ref_model(batch.float()).numpy()
    if onnx_out.shape != ref.shape:
        raise AssertionError(f"ONNX output shape {onnx_out.shape} differs from PyTorch's {ref.shape}")
    num = (onnx_out.astype(np.float64) * ref).sum(axis=1)
    den = np.linalg.norm(onnx_out.astype(np.float64), axis=1) * np.linalg.norm(ref.astype(np.float64), axis=1)
    cos = num / np.maximum(den, 1e-30)
    return {"min_cosine": float(cos.min()), "max_abs_diff": float(np.abs(onnx_out - ref).max()),
            "shape": list(onnx_out.shape)}


def main(argv: Sequence[str] | None = None) -> int:
    from reidlib.argtypes import MAX_SIDE, MIN_SIDE, image_side, int_range
    from reidlib.engine.checkpoint import CheckpointError
    from reidlib.models import list_models

    parser = argparse.ArgumentParser(prog="python -m reidlib.export", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=list_models(),
                        help="architecture (required with --weights; checked against the checkpoint with --checkpoint)")
    src = parser.add_mutually_exclusive_group(required=True)
    src.add_argument("--weights", help="a local weights file (torchreid / torchvision / timm / reidlib state dict)")
    src.add_argument("--checkpoint", help="a reidlib training checkpoint: RUN/best.pt, RUN/last.pt or RUN/")
    parser.add_argument("--height", type=image_side, default=256,
                        help=f"input height in pixels, {MIN_SIDE}-{MAX_SIDE} (default 256)")
    parser.add_argument("--width", type=image_side, default=128,
                        help=f"input width in pixels, {MIN_SIDE}-{MAX_SIDE} (default 128)")
    parser.add_argument("--out", required=True, help="the .onnx file to write")
    parser.add_argument("--opset", type=int_range(MIN_OPSET, MAX_OPSET), default=DEFAULT_OPSET,
                        help=f"ONNX opset, {MIN_OPSET}-{MAX_OPSET} (default {DEFAULT_OPSET})")
    parser.add_argument("--no-verify", action="store_true", help="skip the onnxruntime-vs-PyTorch check")
    args = parser.parse_args(argv)
    if args.weights and not args.model:
        parser.error("--weights needs --model NAME (the file holds weights, not the architecture)")
    from reidlib.inference import load_embedding_model

    try:
        model, ident = load_embedding_model(args.model, weights=args.weights, checkpoint=args.checkpoint)
        out = export_onnx(model, args.out, args.height, args.width, opset=args.opset,
                          metadata=ident.as_dict(args.height, args.width))
    except (CheckpointError, ValueError, FileNotFoundError, TypeError, ImportError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    size_mb = out.stat().st_size / 2**20
    print(f"wrote {out} ({size_mb:.1f} MiB): {ident.model} from {ident.source} {ident.weights_file}, "
          f"input images (N, 3, {args.height}, {args.width}), output embeddings", flush=True)
    if not args.no_verify:
        batch = torch.randn(3, 3, args.height, args.width, generator=torch.Generator().manual_seed(1))
        check = compare_with_torch(model, out, batch)
        print(f"onnxruntime vs PyTorch on a random batch of 3: min cosine {check['min_cosine']:.6f}, "
              f"max |diff| {check['max_abs_diff']:.2e}, output {check['shape']}")
        if check["min_cosine"] < 0.9999:
            print("error: the ONNX graph disagrees with PyTorch (cosine < 0.9999); try another --opset",
                  file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
