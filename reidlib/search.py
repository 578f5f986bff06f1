"""Person search from a shell: embed a gallery folder once, then query it with images.

    python -m reidlib.search index --model osnet_x0_25 --weights ../shared/weights/osnet_x0_25_msmt17.pth \\
        --gallery ../shared/data/viper/bounding_box_test --out viper.npz --height 128 --width 64
    python -m reidlib.search query --index viper.npz --top-k 5 --html results.html img1.png img2.png

``index`` embeds every image under ``--gallery`` (recursively; jpg/jpeg/png/bmp) with the model in eval mode,
flip-averaged by default as reidlib's evaluation does, L2-normalises the embeddings and stores them (float32)
with the image paths relative to the gallery folder and the model identity: architecture name, SHA-256 of the
weights or checkpoint file (and its path, to reload it), input size, flip and precision. A tqdm bar goes to
stderr; unreadable files are skipped and listed at the end (the index records them too).

``query`` embeds each query image with *the model the index records* (reloaded from the recorded path, or from
``--weights``/``--checkpoint`` when given, which must then hash to the recorded file; a different ``--model``,
``--weights``, ``--checkpoint``, ``--height`` or ``--width`` is refused) and prints one JSON object per query on
stdout::

    {"query": "img1.png", "results": [{"rank": 1, "path": "<gallery>/0003_c2_00030002.png", "score": 0.83}, ...]}

``score`` is the cosine similarity (best first; equal scores keep gallery order, as a stable sort would).
The search is exact and memory-bounded: queries are processed in blocks of :data:`QUERY_BLOCK` rows against
gallery chunks of :data:`GALLERY_CHUNK` rows, keeping a running top-k, so the largest temporary is one
QUERY_BLOCK x GALLERY_CHUNK float32 score tile (256 x 65,536 = 64 MiB) whatever the gallery size; the gallery
features themselves (N x D float32, 2 GiB per million 512-d embeddings) are the only thing proportional to N.
``--html PAGE.html`` also writes a self-contained page (thumbnails inlined as base64 JPEG).
"""
from __future__ import annotations

import argparse
import base64
import html
import io
import itertools
import json
import os
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
import torch.nn as nn

INDEX_FORMAT = "reidlib-search-index"
INDEX_VERSION = 1
GALLERY_CHUNK = 65_536
QUERY_BLOCK = 256
MAX_BATCH = 65_536  # --batch-size bound: a typo guard (a 64k batch at 256x128 is already ~25 GiB of input)
MAX_THREADS = 1024


class SearchError(Exception):
    """A problem the user can fix (bad folder, model mismatch, missing weights); the CLI prints it and exits 2."""


@dataclass
class Embedded:
    """Embeddings of the readable images of a list: ``feats`` (n, D) float32 L2-normalised, ``kept`` (n,) indices
    into the input list, ``errors`` [(path, reason)] for the unreadable ones."""

    feats: np.ndarray
    kept: np.ndarray
    errors: list[tuple[str, str]]


def embed_files(model: nn.Module, paths: Sequence[str | Path], height: int, width: int, batch_size: int = 64,
                flip: bool = True, precision: str = "fp32", progress: bool = False,
                desc: str = "embedding") -> Embedded:
    """Embed image files with ``model`` (eval mode, CPU, :func:`reidlib.evaluation.extract_features` without
    channels_last), skipping the unreadable ones.

    Args:
        model: (B, 3, height, width) normalised batch -> (B, D) embeddings in eval mode.
        paths: image files; each is decoded with :func:`reidlib.data.read_image`, resized to height x width
            pixels and normalised as :func:`reidlib.data.build_transforms` does at test time.
        batch_size: images per forward pass.
        flip: average each embedding with its horizontal mirror's.
        precision: ``"fp32"``, ``"bf16"`` or ``"auto"`` (see :func:`reidlib.runtime.resolve_precision`).
        progress: a tqdm bar on stderr.

    Returns:
        :class:`Embedded` (features L2-normalised, float32).
    """
    from tqdm.auto import tqdm

    from reidlib.data import ImageReadError, build_transforms, read_image
    from reidlib.evaluation import extract_features

    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1 image, got {batch_size}")
    tf = build_transforms(int(height), int(width), is_train=False)
    kept: list[int] = []
    errors: list[tuple[str, str]] = []

    def batches():  # (imgs, pids, camids, indices) of the readable images, batch_size paths at a time
        for start in range(0, len(paths), int(batch_size)):
            imgs, idx = [], []
            for i in range(start, min(start + int(batch_size), len(paths))):
                try:
                    imgs.append(tf(read_image(paths[i])))
                    idx.append(i)
                except ImageReadError as err:
                    errors.append((str(paths[i]), str(err.__cause__ or err)))
            bar.update(min(int(batch_size), len(paths) - start))
            if imgs:
                kept.extend(idx)
                yield torch.stack(imgs), [-1] * len(idx), [-1] * len(idx), [str(i) for i in idx]

    bar = tqdm(total=len(paths), desc=desc, unit="img", disable=not progress, file=sys.stderr, leave=False)
    try:
        readable = batches()
        first = next(readable, None)
        if first is None:
            return Embedded(np.zeros((0, 0), np.float32), np.zeros(0, np.int64), errors)
        fs = extract_features(model, itertools.chain([first], readable), flip=flip, device="cpu",
                              channels_last=False, precision=precision, progress=False)
    finally:
        bar.close()
    feats = torch.nn.functional.normalize(fs.feats, dim=1).numpy().astype(np.float32)
    return Embedded(feats, np.asarray(kept, dtype=np.int64), errors)


def topk_cosine(queries: np.ndarray, gallery: np.ndarray, k: int, gallery_chunk: int = GALLERY_CHUNK,
                query_block: int = QUERY_BLOCK) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-k cosine search of L2-normalised rows, memory-bounded.

    Args:
        queries: (Q, D) float32, L2-normalised.
        gallery: (N, D) float32, L2-normalised (a numpy memmap works too).
        k: results per query (capped at N).
        gallery_chunk, query_block: tile sizes; the largest temporary is a (query_block, gallery_chunk) float32
            score tile plus (query_block, 2k) merge buffers.

    Returns:
        ``(indices, scores)``, each (Q, k): gallery row indices and cosine similarities, best first; equal
        scores are ordered by gallery index (a stable sort's order).
    """
    from reidlib.evaluation.rank import stable_topk

    q = np.ascontiguousarray(queries, dtype=np.float32)
    n = gallery.shape[0]
    if q.ndim != 2 or gallery.ndim != 2 or q.shape[1] != gallery.shape[1]:
        raise ValueError(f"queries (Q, D) and gallery (N, D) need one D, got {q.shape} and {gallery.shape}")
    k = min(int(k), n)
    if k < 1:
        raise ValueError(f"need k >= 1 and a non-empty gallery, got k={k}, N={n}")
    out_idx = np.zeros((q.shape[0], k), dtype=np.int64)
    out_score = np.zeros((q.shape[0], k), dtype=np.float32)
    for qs in range(0, q.shape[0], int(query_block)):
        qb = q[qs:qs + int(query_block)]
        best_idx = np.zeros((qb.shape[0], 0), dtype=np.int64)
        best_score = np.zeros((qb.shape[0], 0), dtype=np.float32)
        for gs in range(0, n, int(gallery_chunk)):
            tile = qb @ np.asarray(gallery[gs:gs + int(gallery_chunk)], dtype=np.float32).T  # (b, chunk) cosine
            cols = stable_topk(-tile, k)  # best k of the chunk, ties by index
            cand_idx = np.concatenate([best_idx, cols + gs], axis=1)  # earlier chunks first: lower indices
            cand_score = np.concatenate([best_score, np.take_along_axis(tile, cols, axis=1)], axis=1)
            order = np.argsort(-cand_score, axis=1, kind="stable")[:, :k]
            best_idx = np.take_along_axis(cand_idx, order, axis=1)
            best_score = np.take_along_axis(cand_score, order, axis=1)
        out_idx[qs:qs + qb.shape[0]] = best_idx
        out_score[qs:qs + qb.shape[0]] = best_score
    return out_idx, out_score


@dataclass
class SearchIndex:
    """A gallery index: ``feats`` (N, D) float32 L2-normalised, ``paths`` N posix paths relative to
    ``meta["gallery_root"]``, ``meta`` (model identity, input size, flip, precision, skipped files, ...)."""

    feats: np.ndarray
    paths: list[str]
    meta: dict

    def save(self, path: str | Path) -> Path:
        """Write an uncompressed ``.npz`` through a temporary file beside ``path`` (renamed into place)."""
        path = Path(path)
        if path.suffix != ".npz":
            raise SearchError(f"the index file must end in .npz, got {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=".npz.tmp")
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, feats=self.feats, paths=np.asarray(self.paths, dtype=np.str_),
                         meta=np.asarray(json.dumps(self.meta, sort_keys=True)))
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(tmp, 0o666 & ~umask)
            os.replace(tmp, path)
        finally:
            Path(tmp).unlink(missing_ok=True)
        return path

    @classmethod
    def load(cls, path: str | Path) -> "SearchIndex":
        path = Path(path)
        if not path.is_file():
            raise SearchError(f"index {path} does not exist; build it with `python -m reidlib.search index ...`")
        try:
            with np.load(path, allow_pickle=False) as z:
                if not {"feats", "paths", "meta"} <= set(z.files):
                    raise SearchError(f"{path} is not a reidlib search index (it holds {sorted(z.files)})")
                meta = json.loads(str(z["meta"]))
                if meta.get("format") != INDEX_FORMAT:
                    raise SearchError(f"{path} is not a reidlib search index (format {meta.get('format')!r})")
                return cls(z["feats"], z["paths"].tolist(), meta)
        except (zipfile.BadZipFile, EOFError, OSError, ValueError) as err:  # truncated, not an npz, bad JSON
            raise SearchError(f"index {path} cannot be read ({type(err).__name__}: {err}); it is truncated or not "
                              "an index: build it again with `python -m reidlib.search index ...`") from err

    def resolve(self, rel: str, gallery_root: str | Path | None = None) -> str:
        """The path of a gallery image: ``gallery_root`` (default: the recorded one) joined with ``rel``."""
        return str(Path(gallery_root or self.meta["gallery_root"]) / rel)


def build_index(model: nn.Module, identity: dict, gallery: str | Path, batch_size: int = 64, flip: bool = True,
                precision: str = "fp32", weights_path: str | Path | None = None, progress: bool = True) -> SearchIndex:
    """Embed every image under ``gallery`` (recursively) into a :class:`SearchIndex`.

    Args:
        model: the embedding network (eval mode is used).
        identity: :meth:`reidlib.inference.ModelIdentity.as_dict` of ``model`` (with ``height``, ``width``).
        gallery: the gallery folder.
        batch_size, flip, precision, progress: see :func:`embed_files`.
        weights_path: the weights or checkpoint file the model came from (recorded, absolute, for queries).

    Raises:
        SearchError: the folder is missing, holds no image, or none of its images can be read.
    """
    from reidlib.evaluation.retrieval import gallery_files
    from reidlib.runtime import resolve_precision

    root = Path(gallery)
    try:
        files = gallery_files(root)
    except FileNotFoundError as err:
        raise SearchError(str(err)) from None
    precision = resolve_precision(precision, torch.device("cpu"))
    emb = embed_files(model, files, identity["height"], identity["width"], batch_size=batch_size, flip=flip,
                      precision=precision, progress=progress, desc="indexing")
    if emb.kept.size == 0:
        raise SearchError(f"none of the {len(files)} images under {root} could be read: {emb.errors[:3]} ...")
    rel = [files[i].relative_to(root).as_posix() for i in emb.kept]
    meta = {"format": INDEX_FORMAT, "version": INDEX_VERSION, "identity": dict(identity),
            "weights_path": str(Path(weights_path).resolve()) if weights_path else None, "flip": bool(flip),
            "precision": precision, "gallery_root": str(root.resolve()), "num_images": len(rel),
            "embed_dim": int(emb.feats.shape[1]), "skipped": [f"{p}: {why}" for p, why in emb.errors],
            "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    return SearchIndex(emb.feats, rel, meta)


def model_for_index(meta: dict, model: str | None = None, weights: str | Path | None = None,
                    checkpoint: str | Path | None = None, height: int | None = None,
                    width: int | None = None) -> nn.Module:
    """Load the model an index was built with, refusing anything that differs from it.

    Without ``weights``/``checkpoint`` the recorded file is reloaded; given ones must have the recorded
    SHA-256. ``model``, ``height``, ``width``, when given, must equal the recorded values.

    Raises:
        SearchError: naming the recorded and the given value.
    """
    from reidlib.inference import file_sha256, load_embedding_model

    ident = meta["identity"]
    if model is not None and model != ident["model"]:
        raise SearchError(f"the index was built with model {ident['model']!r}, not {model!r}; query it with "
                          f"--model {ident['model']} (or no --model), or build an index for {model!r}")
    for name, given in (("height", height), ("width", width)):
        if given is not None and int(given) != int(ident[name]):
            raise SearchError(f"the index was built at {name} {ident[name]}, not {given}; drop --{name}")
    given = weights or checkpoint
    if given is not None:
        kind = "weights" if weights is not None else "checkpoint"
        if kind != ident["source"]:
            raise SearchError(f"the index was built from a {ident['source']} file ({ident['weights_file']}), "
                              f"but --{kind} was given; pass --{ident['source']} with that file, or nothing")
        path = Path(given)
        if kind == "checkpoint":
            from reidlib.engine import resolve_checkpoint

            path = resolve_checkpoint(path)
        if not path.is_file():
            raise SearchError(f"--{kind} file {path} does not exist")
        digest = file_sha256(path)
        if digest != ident["weights_sha256"]:
            raise SearchError(f"--{kind} {path} (sha256 {digest[:12]}…) is not the file the index was built with "
                              f"({ident['weights_file']}, sha256 {ident['weights_sha256'][:12]}…); embeddings of "
                              "another model are not comparable: rebuild the index with this model")
    else:
        if ident["source"] == "random" or not meta.get("weights_path"):
            raise SearchError("the index records no weights file to reload; pass --weights or --checkpoint")
        path = Path(meta["weights_path"])
        if not path.is_file():
            raise SearchError(f"the index's {ident['source']} file {path} is gone; pass --{ident['source']} "
                              f"with the file (sha256 {ident['weights_sha256'][:12]}…)")
        if file_sha256(path) != ident["weights_sha256"]:
            raise SearchError(f"{path} changed since the index was built (its sha256 differs); rebuild the index "
                              f"or pass --{ident['source']} with the original file")
        kind = ident["source"]
    name = ident["model"]
    loaded, _ = (load_embedding_model(name, weights=path) if kind == "weights"
                 else load_embedding_model(name, checkpoint=path))
    return loaded


def query_index(index: SearchIndex, model: nn.Module, images: Sequence[str | Path], top_k: int = 10,
                batch_size: int = 64, gallery_root: str | Path | None = None,
                progress: bool = False) -> list[dict]:
    """Search the index for each query image.

    Returns:
        One dict per query, in input order: ``{"query": path, "results": [{"rank", "path", "score"}, ...]}``
        (score = cosine similarity, best first), or ``{"query": path, "error": reason}`` for an unreadable image.
    """
    if int(top_k) < 1:
        raise ValueError(f"top_k must be >= 1 result, got {top_k}")
    meta = index.meta
    emb = embed_files(model, [str(p) for p in images], meta["identity"]["height"], meta["identity"]["width"],
                      batch_size=batch_size, flip=meta["flip"], precision=meta["precision"], progress=progress,
                      desc="queries")
    out: list[dict] = [{"query": str(p)} for p in images]
    for path, why in emb.errors:
        for row in out:
            if row["query"] == path and "results" not in row:
                row["error"] = why
    if emb.kept.size:
        idx, score = topk_cosine(emb.feats, index.feats, top_k)
        for row_q, i in enumerate(emb.kept):
            hits = zip(idx[row_q], score[row_q])
            out[i]["results"] = [{"rank": r + 1, "path": index.resolve(index.paths[g], gallery_root),
                                  "score": round(float(s), 6)} for r, (g, s) in enumerate(hits)]
    return out


def _thumbnail(path: str, height: int = 128) -> str:
    from PIL import Image

    from reidlib.data.images import to_rgb

    try:
        with Image.open(path) as img:
            img = to_rgb(img)
            img.thumbnail((height, height))
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=85)
        return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")
    except OSError:
        return ""


def write_html(results: Iterable[dict], path: str | Path, title: str = "reidlib search") -> Path:
    """A self-contained HTML page (thumbnails inlined as base64), one row per query; written atomically."""
    rows = []
    for res in results:
        cells = [f'<td class="q"><img src="{_thumbnail(res["query"])}" alt=""><br>query<br>'
                 f'<small>{html.escape(Path(res["query"]).name)}</small></td>']
        if "error" in res:
            cells.append(f'<td>unreadable: {html.escape(res["error"])}</td>')
        for hit in res.get("results", []):
            cells.append(f'<td><img src="{_thumbnail(hit["path"])}" alt=""><br>#{hit["rank"]} '
                         f'{hit["score"]:.3f}<br><small>{html.escape(Path(hit["path"]).name)}</small></td>')
        rows.append("<tr>" + "".join(cells) + "</tr>")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title><style>"
            "body{font-family:sans-serif}td{text-align:center;padding:4px;vertical-align:top}"
            "td.q{border-right:3px solid #444}img{height:128px}</style></head><body>"
            f"<h1>{html.escape(title)}</h1><p>score = cosine similarity, best first</p><table>"
            + "\n".join(rows) + "</table></body></html>\n")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(page, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _add_model_args(p: argparse.ArgumentParser, required: bool) -> None:
    from reidlib.models import list_models

    p.add_argument("--model", choices=list_models(), help="architecture" + ("" if required else
                   " (optional; must match the index)"))
    src = p.add_mutually_exclusive_group(required=required)
    src.add_argument("--weights", help="a local weights file (with --model)")
    src.add_argument("--checkpoint", help="a reidlib training checkpoint (best.pt / last.pt / run folder)")


def main(argv: Sequence[str] | None = None) -> int:
    from reidlib.argtypes import MAX_SIDE, MIN_SIDE, image_side, int_range
    from reidlib.engine.checkpoint import CheckpointError

    batch = int_range(1, MAX_BATCH)
    side = f"{MIN_SIDE}-{MAX_SIDE}"
    parser = argparse.ArgumentParser(prog="python -m reidlib.search", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    pi = sub.add_parser("index", help="embed every image under a folder into an index file")
    _add_model_args(pi, required=True)
    pi.add_argument("--gallery", required=True, help="folder of gallery images (searched recursively)")
    pi.add_argument("--out", required=True, help="the index file to write (.npz)")
    pi.add_argument("--height", type=image_side, default=256, help=f"input height in pixels, {side} (default 256)")
    pi.add_argument("--width", type=image_side, default=128, help=f"input width in pixels, {side} (default 128)")
    pi.add_argument("--batch-size", type=batch, default=64, help=f"images per forward pass, 1-{MAX_BATCH} (default 64)")
    pi.add_argument("--no-flip", action="store_true", help="do not average with the mirrored image")
    pi.add_argument("--precision", default="fp32", choices=("fp32", "bf16", "auto"),
                    help="fp32 (default), bf16 autocast, or auto (bf16 where the CPU has it natively); recorded")
    pq = sub.add_parser("query", help="search an index with query images; one JSON line per query on stdout")
    pq.add_argument("--index", required=True, help="an index written by `index`")
    pq.add_argument("--top-k", type=int_range(1), default=10, help="results per query, >= 1 (default 10)")
    pq.add_argument("--html", help="also write a self-contained HTML page of the results")
    pq.add_argument("--gallery-root", help="where the gallery folder is now, if it moved since indexing")
    pq.add_argument("--height", type=image_side, help="must equal the index's (it is always used)")
    pq.add_argument("--width", type=image_side, help="must equal the index's (it is always used)")
    pq.add_argument("--batch-size", type=batch, default=64, help=f"images per forward pass, 1-{MAX_BATCH} (default 64)")
    _add_model_args(pq, required=False)
    for p in (pi, pq):
        p.add_argument("--threads", type=int_range(1, MAX_THREADS),
                       help="torch intra-op threads (default: torch's; 1 is often fastest on a small CPU shared with "
                       "other jobs)")
    pq.add_argument("images", nargs="+", help="query image files")
    args = parser.parse_args(argv)
    threads = torch.get_num_threads()
    if args.threads is not None:
        torch.set_num_threads(max(1, args.threads))
    try:
        if args.command == "index":
            return _index(args, parser)
        return _query(args)
    except (SearchError, CheckpointError, ValueError, FileNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)  # main(argv) called in-process leaves torch as it found it


def _index(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    from reidlib.inference import load_embedding_model

    if args.weights and not args.model:
        parser.error("--weights needs --model NAME (the file holds weights, not the architecture)")
    if not Path(args.gallery).is_dir():
        raise SearchError(f"gallery folder {args.gallery} does not exist")
    model, ident = load_embedding_model(args.model, weights=args.weights, checkpoint=args.checkpoint)
    source = args.weights or args.checkpoint
    if args.checkpoint:
        from reidlib.engine import resolve_checkpoint

        source = resolve_checkpoint(args.checkpoint)
    index = build_index(model, ident.as_dict(args.height, args.width), args.gallery, batch_size=args.batch_size,
                        flip=not args.no_flip, precision=args.precision, weights_path=source)
    out = index.save(args.out)
    print(f"indexed {len(index.paths)} images under {args.gallery} with {ident.model} ({ident.weights_file}, "
          f"{args.height}x{args.width}) -> {out}", file=sys.stderr)
    if index.meta["skipped"]:
        print(f"{len(index.meta['skipped'])} unreadable file(s) skipped:", file=sys.stderr)
        for line in index.meta["skipped"]:
            print(f"  {line}", file=sys.stderr)
    return 0


def _query(args: argparse.Namespace) -> int:
    index = SearchIndex.load(args.index)
    model = model_for_index(index.meta, args.model, args.weights, args.checkpoint, args.height, args.width)
    missing = [p for p in args.images if not Path(p).is_file()]
    if missing:
        raise SearchError(f"query image(s) not found: {', '.join(missing)}")
    results = query_index(index, model, args.images, top_k=args.top_k, batch_size=args.batch_size,
                          gallery_root=args.gallery_root, progress=len(args.images) > 64)
    for res in results:
        print(json.dumps(res), flush=False)
    sys.stdout.flush()
    if args.html:
        write_html(results, args.html, title=f"reidlib search: {Path(args.index).name}")
        print(f"wrote {args.html}", file=sys.stderr)
    bad = [r for r in results if "error" in r]
    for r in bad:
        print(f"error: query {r['query']} is unreadable: {r['error']}", file=sys.stderr)
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
