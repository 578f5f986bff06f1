"""A synthetic person re-ID dataset: the embedded default when Market, Duke and LaST are not available.

What it is: drawn pedestrians written to disk in the real Market-1501 (or DukeMTMC-reID, or LaST) layout and
naming format, so that every reader, sampler, model, trainer and evaluator path runs on files exactly as it
would on the real benchmarks. Each identity keeps its appearance across images (body proportions; upper
and lower clothing colours; solid, striped, checked, banded, raglan or logo tops; trousers, shorts or skirt;
hair; bag, backpack, hat); each camera has its own background, illumination, colour cast, gamma, blur,
noise, JPEG quality, typical viewpoint (front/back/side, which hides or shows logos, backpacks and faces),
framing, and rate of partial occlusion. ``domain=1`` draws cameras and identities from a different
distribution (indoor, darker, warmer and blurrier; muted colours, coats, checks), giving a source/target pair
for the fine-tuning study. Market layouts include junk (pid -1, misframed detections) and distractors
(pid 0000); Duke layouts include gallery-only identities. Output is deterministic in ``seed``: the same
parameters give byte-identical files.

What it is not: a benchmark. Its difficulty is set by hand and it has none of the real data's pose,
resolution, crowding or labelling noise. Numbers measured on it validate the *pipeline* (does training
improve retrieval, does the evaluator agree with itself, do profiles run end to end); they never validate,
reproduce or contradict the paper's numbers.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np

from ..base import ReIDDataset
from ..folder import read_market_layout
from ..last import last as read_last
from ..registry import register_dataset
from .layout import LAYOUTS, Shot, plan_shots, relative_path
from .render import render_image
from .styles import CameraStyle, IdentityStyle, sample_camera, sample_identity

GENERATOR_VERSION = 1
_IDENTITY, _CAMERA, _IMAGE, _PLAN = 1, 2, 3, 4


def _rng(seed: int, domain: int, stream: int, key: int = 0) -> np.random.Generator:
    """An independent random stream per (seed, domain, kind of thing, which one)."""
    return np.random.default_rng([seed, domain, stream, key])


def synthetic_params(
    num_ids: int = 250,
    num_test_ids: int | None = None,
    num_cams: int = 4,
    images_per_id_per_cam: int = 4,
    height: int = 128,
    width: int = 64,
    layout: str = "market",
    domain: int = 0,
    seed: int = 0,
    num_distractors: int | None = None,
    num_junk: int | None = None,
) -> dict:
    """Validate generator parameters and fill the derived defaults; see :func:`generate_synthetic`."""
    num_test_ids = num_ids * 2 // 5 if num_test_ids is None else num_test_ids
    params = dict(
        num_ids=num_ids, num_test_ids=num_test_ids, num_cams=num_cams, images_per_id_per_cam=images_per_id_per_cam,
        height=height, width=width, layout=layout, domain=domain, seed=seed,
        num_distractors=num_test_ids if num_distractors is None else num_distractors,
        num_junk=num_test_ids // 2 if num_junk is None else num_junk,
    )
    problems = []
    if layout not in LAYOUTS:
        problems.append(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if domain not in (0, 1):
        problems.append(f"domain must be 0 or 1, got {domain!r}")
    if not 2 <= num_cams <= 9:
        problems.append(f"num_cams must be 2..9 (one digit in Market/Duke names), got {num_cams}")
    if not (2 if layout == "last" else 1) <= num_test_ids < num_ids:
        problems.append(f"need 1 <= num_test_ids < num_ids (2 for LaST: val and test), got {num_test_ids} of {num_ids}")
    if images_per_id_per_cam < 1 or min(params["num_distractors"], params["num_junk"]) < 0 or seed < 0:
        problems.append("images_per_id_per_cam must be >= 1; num_distractors, num_junk and seed >= 0")
    if height < 32 or width < 16:
        problems.append(f"image size must be at least 32 x 16 pixels (height x width), got {height} x {width}")
    if problems:
        raise ValueError("invalid synthetic dataset parameters: " + "; ".join(problems))
    return params


def _write_images(folder: Path, params: dict) -> int:
    """Render and save every planned image under ``folder``; returns the number of files."""
    seed, domain, layout = params["seed"], params["domain"], params["layout"]
    height, width = params["height"], params["width"]
    shots: list[Shot] = plan_shots(
        _rng(seed, domain, _PLAN), layout, params["num_ids"], params["num_test_ids"], params["num_cams"],
        params["images_per_id_per_cam"], params["num_distractors"], params["num_junk"],
    )
    cameras: list[CameraStyle] = [sample_camera(_rng(seed, domain, _CAMERA, c), domain, height, width)
                                  for c in range(params["num_cams"])]
    identities: dict[int, IdentityStyle] = {}
    for shot in shots:
        identity = None
        if shot.identity is not None:
            if shot.identity not in identities:
                identities[shot.identity] = sample_identity(_rng(seed, domain, _IDENTITY, shot.identity), domain)
            identity = identities[shot.identity]
        camera = cameras[shot.cam]
        img = render_image(_rng(seed, domain, _IMAGE, shot.index), camera, identity, height, width, shot.misaligned)
        path = folder / relative_path(layout, shot)
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, quality=camera.jpeg_quality)
    return len(shots)


def _read(root: Path, layout: str, split: str = "val", counts: dict | None = None) -> ReIDDataset:
    if layout == "last":
        dataset = read_last(root, split=split, check_counts=False)
    else:
        dataset = read_market_layout("synthetic", root, check_counts=False)
    dataset.name = "synthetic"
    dataset.expected_counts = counts
    return dataset


def _readme(params: dict, counts: dict, num_files: int) -> str:
    table = "\n".join(
        f"  [{pair}] " + "; ".join(f"{split}: {c['images']} images, {c['ids']} ids" for split, c in splits.items())
        for pair, splits in counts.items()
    )
    return (
        f"Synthetic person re-ID dataset written by reidlib.data.synthetic (generator version {GENERATOR_VERSION}).\n\n"
        "It validates the pipeline (readers, training, evaluation); it is NOT a benchmark, and numbers measured\n"
        "on it say nothing about the paper's results. Regenerate it with "
        "reidlib.data.generate_synthetic(root, **params)\n"
        "or build_dataset('synthetic', root, **params); never commit it.\n\n"
        f"Parameters: {json.dumps(params, sort_keys=True)}\n"
        f"Files: {num_files} JPEG images in the {params['layout']} layout.\n"
        f"Counts as read by reidlib (junk dropped):\n{table}\n"
    )


def read_meta(root: str | Path) -> dict | None:
    """The ``meta.json`` of a generated dataset, or None when ``root`` has none."""
    path = Path(root) / "meta.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _files_not_generated(root: Path, meta: dict) -> list[str]:
    """Files under a generated dataset ``root`` that are not its images, ``meta.json`` or ``README.txt``
    (relative paths, sorted); every file when the image count differs from the one ``meta`` recorded."""
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if not p.is_dir())
    own = {"meta.json", "README.txt"}
    images = [f for f in files if f not in own and Path(f).suffix.lower() in (".jpg", ".png")]
    others = [f for f in files if f not in own and f not in images]
    if len(images) != meta.get("num_files"):
        return others + [f"{len(images)} images where {meta.get('num_files')} were generated"]
    return others


def generate_synthetic(root: str | Path, overwrite: bool = False, **kwargs) -> Path:
    """Write a synthetic re-ID dataset into the folder ``root`` and return it.

    Args:
        root: the dataset folder to create (it must not exist, be empty, or hold an earlier generated dataset).
        overwrite: replace an earlier *generated* dataset at ``root`` whose parameters differ (refused when the
            folder also holds files the generator did not write).
        num_ids: identities in total (default 250); ``num_test_ids`` of them (default 2/5, i.e. 100) are
            test identities (query + gallery), the rest training identities.
        num_cams: cameras, 2..9 (default 4); each identity is seen by a random 2..num_cams of them.
        images_per_id_per_cam: images per identity per camera that sees it (default 4); for test ids one of them
            per camera is a query.
        height, width: image size in pixels (default 128 x 64).
        layout: "market", "duke" or "last" (folders and file names as in the real datasets).
        domain: 0 or 1: which camera/identity distribution to draw from.
        seed: non-negative; identical parameters give byte-identical files.
        num_distractors: Market: pid-0000 gallery images; Duke: images of gallery-only identities (default
            num_test_ids); ignored for LaST.
        num_junk: Market only: pid -1 gallery images (default num_test_ids // 2).

    Writes ``meta.json`` (parameters, generator version, counts) and ``README.txt`` next to the image folders.
    With the defaults: about 1,700 train / 300 query / 1,000 gallery images (+50 junk), ~3,100 files.

    Raises:
        ValueError: invalid parameters, or ``root`` holds a generated dataset with other parameters
            (delete it, choose another root, or pass ``overwrite=True``).
        FileExistsError: ``root`` exists, is not empty and was not written by this generator, or (with
            ``overwrite``) holds files besides the generated ones.
    """
    params = synthetic_params(**kwargs)
    root = Path(root).expanduser()
    meta = read_meta(root)
    if meta is not None:
        if meta["params"] == params and meta["generator_version"] == GENERATOR_VERSION:
            return root
        if not overwrite:
            raise ValueError(
                f"{root} already holds a synthetic dataset generated with other parameters:\n"
                f"  on disk:   {meta['params']}\n"
                f"  requested: {params}\ndelete the folder, choose another root, or pass overwrite=True"
            )
        foreign = _files_not_generated(root, meta)
        if foreign:
            raise FileExistsError(
                f"{root} holds files the generator did not write ({', '.join(foreign[:5])}"
                f"{', ...' if len(foreign) > 5 else ''}); move them elsewhere before overwriting the dataset"
            )
        shutil.rmtree(root)
    elif root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root} exists and is not a generated synthetic dataset (no meta.json); "
                              "choose an empty or new folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        num_files = _write_images(tmp, params)
        pairs = ("val", "test") if params["layout"] == "last" else ("test",)
        counts = {pair: _read(tmp, params["layout"], pair).summary().to_dict(orient="index") for pair in pairs}
        meta = {"generator": "reidlib.data.synthetic", "generator_version": GENERATOR_VERSION, "params": params,
                "num_files": num_files, "counts": counts}
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        (tmp / "README.txt").write_text(_readme(params, counts, num_files))
        if root.exists():
            root.rmdir()  # empty, checked above
        try:
            os.replace(tmp, root)
        except OSError:  # another process finished the same dataset first: fine if it is the same one
            if (read_meta(root) or {}).get("params") != params:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root


@register_dataset("synthetic")
def synthetic(root: str | Path, split: str | None = None, check_counts: bool = True, **kwargs) -> ReIDDataset:
    """Generate the synthetic dataset into ``root`` if it is not there yet, then read it.

    If ``root`` already holds one, the parameters given in ``kwargs`` must match those in its ``meta.json``
    (parameters not given are taken from it, so ``build_dataset("synthetic", root)`` reads whatever is there);
    a mismatch raises ValueError asking to delete the folder or choose another root. ``split`` ("val" or
    "test") is for the LaST layout only. ``check_counts`` warns when files were removed since generation.
    """
    root = Path(root).expanduser()
    meta = read_meta(root)
    if meta is None:
        generate_synthetic(root, **kwargs)
        meta = read_meta(root)
    else:
        differ = {k: (meta["params"].get(k), v) for k, v in kwargs.items() if meta["params"].get(k) != v}
        if differ:
            raise ValueError(
                f"{root} holds a synthetic dataset generated with other parameters "
                f"({', '.join(f'{k}: on disk {a!r}, requested {b!r}' for k, (a, b) in differ.items())}); "
                "delete the folder or choose another root"
            )
    layout = meta["params"]["layout"]
    if split is not None and layout != "last":
        raise ValueError(f"split= only applies to the LaST layout; {root} is in the {layout} layout")
    pair = split or ("val" if layout == "last" else "test")
    if pair not in meta["counts"]:
        raise ValueError(f"split must be one of {sorted(meta['counts'])}, got {split!r}")
    dataset = _read(root, layout, pair, meta["counts"][pair])
    if check_counts:
        dataset.warn_on_count_mismatch()
    return dataset


__all__ = ["generate_synthetic", "synthetic_params", "read_meta", "synthetic", "GENERATOR_VERSION"]
