"""P x K identity samplers with BoT's epoch semantics, deterministic per (seed, epoch).

One epoch (BoT's ``RandomIdentitySampler``): for every identity, shuffle its image indices (an identity with
fewer than K images first draws K of them with replacement) and cut them into chunks of K, dropping the
remainder; then, while at least P identities still have chunks, pick P of them at random and emit one chunk
of each. The result is a sequence of complete P x K batches. Identities that still hold chunks when fewer than
P remain are left out of that epoch (BoT does the same); with typical datasets every identity is drawn.

The random stream is ``numpy.random.default_rng([seed, epoch])``: no global RNG is read or advanced.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Iterator, Sequence

import numpy as np
from torch.utils.data import Sampler

from .base import Item


def _check_pk(batch_size: int, num_instances: int) -> int:
    if num_instances < 1 or batch_size < 1 or batch_size % num_instances:
        raise ValueError(
            f"batch_size ({batch_size}) must be a positive multiple of num_instances ({num_instances}): "
            f"a batch holds P = batch_size / num_instances identities with K = num_instances images each"
        )
    return batch_size // num_instances


class RandomIdentitySampler(Sampler[int]):
    """Yields dataset indices forming ``P x K`` batches; use with ``DataLoader(batch_size=P*K, drop_last=True)``.

    Args:
        items: the training items ``(path, pid, camid)``; indices refer to this list.
        batch_size: P x K images per batch (default 64 = 16 ids x 4 images).
        num_instances: K, images per identity in a batch.
        seed: non-negative base seed; epoch ``e`` uses the stream ``(seed, e)``.

    Iterating uses the current epoch, then advances it by one; :meth:`set_epoch` sets it explicitly (call it
    at the start of every epoch for exact resume). ``len()`` is the exact length of the next epoch.
    """

    def __init__(self, items: Sequence[Item], batch_size: int = 64, num_instances: int = 4, seed: int = 0) -> None:
        self.num_pids_per_batch = _check_pk(batch_size, num_instances)
        self.batch_size, self.num_instances = batch_size, num_instances
        index: dict[int, list[int]] = defaultdict(list)
        for i, (_, pid, _) in enumerate(items):
            index[pid].append(i)
        self.index = {pid: np.asarray(idxs) for pid, idxs in index.items()}
        self.pids = sorted(self.index)
        if len(self.pids) < self.num_pids_per_batch:
            raise ValueError(
                f"a P x K batch needs at least P = {self.num_pids_per_batch} identities, the items have "
                f"{len(self.pids)}; lower batch_size or raise num_instances"
            )
        if seed < 0:
            raise ValueError(f"seed must be non-negative, got {seed}")
        self.seed, self.epoch = seed, 0
        self._cache: tuple[int, list[list[int]]] | None = None

    def set_epoch(self, epoch: int) -> None:
        """Make the next iteration produce epoch ``epoch``'s order."""
        self.epoch = int(epoch)

    def epoch_batches(self, epoch: int) -> list[list[int]]:
        """The global list of P x K batches (lists of item indices) for ``epoch``."""
        if self._cache is not None and self._cache[0] == epoch:
            return self._cache[1]
        rng = np.random.default_rng([self.seed, epoch])
        k, p = self.num_instances, self.num_pids_per_batch
        chunks: dict[int, list[list[int]]] = {}
        for pid in self.pids:
            idxs = self.index[pid]
            if len(idxs) < k:
                idxs = rng.choice(idxs, size=k, replace=True)
            idxs = rng.permutation(idxs)
            chunks[pid] = [idxs[j:j + k].tolist() for j in range(0, len(idxs) - k + 1, k)]
        available = list(self.pids)
        batches = []
        while len(available) >= p:
            selected = [available[j] for j in rng.choice(len(available), size=p, replace=False)]
            batch = []
            for pid in selected:
                batch += chunks[pid].pop()
                if not chunks[pid]:
                    available.remove(pid)
            batches.append(batch)
        self._cache = (epoch, batches)
        return batches

    def _indices(self, epoch: int) -> list[int]:
        return [i for batch in self.epoch_batches(epoch) for i in batch]

    def __iter__(self) -> Iterator[int]:
        indices = self._indices(self.epoch)
        self.epoch += 1
        return iter(indices)

    def __len__(self) -> int:
        return len(self._indices(self.epoch))


class DistributedRandomIdentitySampler(RandomIdentitySampler):
    """The P x K sampler split across ``num_replicas`` processes, one complete P x K batch per process per step.

    Every rank builds the same global batch list for (seed, epoch) and takes batches ``rank, rank + W, ...``,
    truncated to ``len(batches) // W`` so that all ranks have equal lengths (the few leftover batches are
    dropped). ``num_replicas``/``rank`` default to the initialised ``torch.distributed`` group.
    """

    def __init__(self, items: Sequence[Item], batch_size: int = 64, num_instances: int = 4,
                 num_replicas: int | None = None, rank: int | None = None, seed: int = 0) -> None:
        super().__init__(items, batch_size, num_instances, seed)
        if num_replicas is None or rank is None:
            import torch.distributed as dist

            if not (dist.is_available() and dist.is_initialized()):
                raise ValueError("pass num_replicas and rank, or initialise torch.distributed first")
            num_replicas = dist.get_world_size() if num_replicas is None else num_replicas
            rank = dist.get_rank() if rank is None else rank
        if num_replicas < 1 or not 0 <= rank < num_replicas:
            raise ValueError(f"need num_replicas >= 1 and 0 <= rank < num_replicas, got {num_replicas=} {rank=}")
        self.num_replicas, self.rank = num_replicas, rank
        if len(self.epoch_batches(0)) < num_replicas:
            raise ValueError(
                f"an epoch has only {len(self.epoch_batches(0))} P x K batches, fewer than the {num_replicas} "
                "replicas; lower batch_size or use fewer processes"
            )

    def _indices(self, epoch: int) -> list[int]:
        batches = self.epoch_batches(epoch)
        per_rank = len(batches) // self.num_replicas
        return [i for batch in batches[self.rank::self.num_replicas][:per_rank] for i in batch]
