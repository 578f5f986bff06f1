"""A small retrieval API: the top-k gallery images for one query image.

>>> from reidlib.evaluation.retrieval import search                                   # doctest: +SKIP
>>> search(model, "query/0001_c1_f001.jpg", "gallery_folder/", topk=5)               # doctest: +SKIP
[('gallery_folder/0001_c3_f090.jpg', 0.41), ...]

The gallery is a folder (searched recursively), a list of image paths / ``(path, pid, camid)`` items, or a
:class:`~reidlib.evaluation.features.FeatureSet` embedded earlier (so repeated searches cost one query forward).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import torch

from reidlib.evaluation.distances import GalleryDistance
from reidlib.evaluation.embed_rank import embed_items
from reidlib.evaluation.features import FeatureSet
from reidlib.evaluation.rank import stable_topk

GalleryInput = str | Path | Sequence[str | Path | tuple] | FeatureSet


def gallery_files(folder: str | Path) -> list[Path]:
    """Every image under ``folder`` (recursively, sorted); ``FileNotFoundError`` when it is missing or holds none."""
    from reidlib.data.folder import image_files

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"gallery folder {folder} does not exist")
    files = image_files(folder, recursive=True)
    if not files:
        raise FileNotFoundError(f"no images (jpg/jpeg/png/bmp) under gallery folder {folder}")
    return files


def _items(gallery: str | Path | Sequence[str | Path | tuple]) -> list[tuple[str, int, int]]:
    if isinstance(gallery, (str, Path)):
        return [(str(p), -1, -1) for p in gallery_files(gallery)]
    items = [(str(x[0]), int(x[1]), int(x[2])) if isinstance(x, tuple) else (str(x), -1, -1) for x in gallery]
    if not items:
        raise ValueError("the gallery is empty")
    return items


def embed_images(model: torch.nn.Module, images: GalleryInput, transform: Callable | None = None,
                 batch_size: int = 64, flip: bool = True, device: str | torch.device | None = None,
                 precision: str = "auto", progress: bool = False) -> FeatureSet:
    """Embed a folder or list of images with :func:`reidlib.evaluation.embed_items` (a :class:`FeatureSet` is
    returned unchanged).

    ``transform`` defaults to the test transform of :func:`reidlib.data.build_transforms` (256 x 128).
    """
    if isinstance(images, FeatureSet):
        return images
    return embed_items(model, _items(images), transform, flip=flip, batch_size=batch_size, device=device,
                       precision=precision, progress=progress)


def search(model: torch.nn.Module, query_image_path: str | Path, gallery_folder_or_items: GalleryInput,
           topk: int = 10, transform: Callable | None = None, metric: str = "euclidean", normalize: bool = True,
           flip: bool = True, batch_size: int = 64, device: str | torch.device | None = None,
           precision: str = "auto") -> list[tuple[str, float]]:
    """Rank the gallery for one query image.

    Args:
        model: embedding network (eval-mode output (B, D)).
        query_image_path: the query image file.
        gallery_folder_or_items: folder, list of paths or ``(path, pid, camid)`` items, or a :class:`FeatureSet`.
        topk: how many matches to return (fewer if the gallery is smaller).
        transform: PIL image -> (3, H, W) tensor; default ``reidlib.data.build_transforms(is_train=False)``.
        metric, normalize: the distance, as :func:`reidlib.evaluation.distance`.
        flip, batch_size, device, precision: as :func:`reidlib.evaluation.extract_features`.

    Returns:
        ``[(gallery_path, distance), ...]`` sorted by increasing distance (ties by gallery order).
    """
    if int(topk) < 1:
        raise ValueError(f"topk must be >= 1, got {topk}")
    if not Path(query_image_path).is_file():
        raise FileNotFoundError(f"query image {query_image_path} does not exist")
    kwargs = dict(transform=transform, batch_size=batch_size, flip=flip, device=device, precision=precision)
    gallery = embed_images(model, gallery_folder_or_items, **kwargs)
    query = embed_images(model, [str(query_image_path)], **kwargs)
    d = GalleryDistance(gallery.feats, metric=metric, normalize=normalize, device="cpu")(query.feats)
    idx = stable_topk(d, int(topk))[0].tolist()
    return [(gallery.paths[i], float(d[0, i])) for i in idx]
