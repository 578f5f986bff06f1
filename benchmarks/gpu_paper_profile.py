"""Write a short profile derived from ``params/paper.yaml`` for a GPU check on CUHK03-NP laid out as Market-1501.

    python3 benchmarks/gpu_paper_profile.py OUT.yaml [--epochs 2] [--work-dir DIR] [--market-tree DIR --cuhk03 DIR]

The derived profile keeps the paper's recipe (256x128, P x K 16 x 4, LS-CE + triplet + center, Adam 3.5e-4, paper
augmentations, AMP) and its three models, but trains ``--epochs`` epochs on the ``market`` dataset only (no Duke, no
LaST, no fine-tuning; the distance study without re-ranking). ``pretrained: imagenet`` is kept for a model only when
its ImageNet file is already in place under ``$TORCH_HOME`` (a GPU machine without internet cannot download it);
otherwise that model starts from random init (``pretrained: null``), and the profile's description says which.

``--market-tree DIR --cuhk03 SRC`` also makes ``DIR/Market-1501-v15.09.15/`` a tree of symlinks to SRC's
``bounding_box_train``, ``query`` and ``bounding_box_test`` (CUHK03-NP's files are in Market-1501's layout), so
``./run_all.sh OUT.yaml --data-root DIR`` reads it with the ``market1501`` reader.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# the ImageNet file each model's ``pretrained: imagenet`` loads (reidlib/models/weights.py; params/paper.yaml)
IMAGENET_FILES = {"bot_resnet50": ["hub/checkpoints/resnet50-0676ba61.pth"],
                  "mnv3_siamese": ["hub/checkpoints/mobilenet_v3_large-8738ca79.pth"],
                  "osnet_x0_25": ["checkpoints/osnet_x0_25_imagenet.pth", "hub/checkpoints/osnet_x0_25_imagenet.pth"]}
SPLITS = ("bounding_box_train", "query", "bounding_box_test")


def torch_home() -> Path:
    return Path(os.environ.get("TORCH_HOME", Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "torch"))


def market_tree(tree: Path, source: Path) -> Path:
    """``tree/Market-1501-v15.09.15/<split>`` symlinked to ``source/<split>``; returns ``tree``."""
    dest = tree / "Market-1501-v15.09.15"
    dest.mkdir(parents=True, exist_ok=True)
    for split in SPLITS:
        if not (source / split).is_dir():
            raise SystemExit(f"{source / split} is missing: need a Market-1501-layout folder")
        link = dest / split
        if link.is_symlink() or link.exists():
            link.unlink()
        link.symlink_to((source / split).resolve(), target_is_directory=True)
    return tree


def derive(epochs: int, work_dir: str | None) -> dict:
    import yaml

    prof = yaml.safe_load((ROOT / "params" / "paper.yaml").read_text())
    home = torch_home()
    notes = []
    for model in prof["models"]:
        files = [home / f for f in IMAGENET_FILES[model["name"]]]
        file = next((f for f in files if f.is_file()), files[0])
        if model.get("pretrained") == "imagenet" and not file.is_file():
            model["pretrained"] = None
            notes.append(f"{model['name']} from random init ({file} absent)")
        elif model.get("pretrained") == "imagenet":
            notes.append(f"{model['name']} from ImageNet ({file})")
    prof["description"] = (f"A {epochs}-epoch GPU check of the paper profile on CUHK03-NP laid out as Market-1501 "
                           "(written by benchmarks/gpu_paper_profile.py; not the paper's experiment): "
                           + "; ".join(notes) + ".")
    prof["datasets"] = {"market": {**prof["datasets"]["market"], "label": "CUHK03-NP (as Market-1501)",
                                   "kwargs": {"check_counts": False}}}
    prof["train_on"] = ["market"]
    prof["zero_shot"] = []
    prof.pop("finetune", None)
    prof["training"].update(epochs=epochs, warmup_epochs=min(epochs, prof["training"]["warmup_epochs"]),
                            eval_every=epochs)
    prof["distance_study"]["rerank"] = False
    if work_dir:
        prof["work_dir"] = work_dir
    return prof


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", help="the profile YAML to write (its file name is the profile's name)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--work-dir", default=None, help="checkpoints and features (default: work/<profile>)")
    ap.add_argument("--market-tree", default=None, help="folder to hold Market-1501-v15.09.15/ (symlinks)")
    ap.add_argument("--cuhk03", default=None, help="CUHK03-NP detected folder the tree points at")
    args = ap.parse_args(argv)
    import yaml

    from reidlib.pipeline.profile import load_profile

    if args.market_tree:
        if not args.cuhk03:
            raise SystemExit("--market-tree needs --cuhk03")
        market_tree(Path(args.market_tree), Path(args.cuhk03))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(derive(args.epochs, args.work_dir), sort_keys=False, width=118))
    load_profile(out, data_root=args.market_tree)  # the schema checks every key now, not on the GPU machine later
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
