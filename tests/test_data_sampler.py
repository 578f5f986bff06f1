"""P x K samplers (BoT epoch semantics, determinism, distributed split), loaders and the validation split."""
from __future__ import annotations

import random
from collections import Counter

import numpy as np
import pytest
import torch

from reidlib.data import (
    DistributedRandomIdentitySampler,
    RandomIdentitySampler,
    build_dataset,
    build_transforms,
    make_test_loader,
    make_train_loader,
    make_val_split,
)


def _items(counts: list[int], cams: int = 3) -> list[tuple[str, int, int]]:
    """Identity ``i`` gets ``counts[i]`` images spread over ``cams`` cameras."""
    return [(f"img_{pid}_{k}.jpg", pid, k % cams) for pid, n in enumerate(counts) for k in range(n)]


# Market-like: most ids have 4..20 images, a few only 1..3 (padded with replacement to K).
RNG = np.random.default_rng(0)
ITEMS = _items([int(n) for n in RNG.integers(4, 21, 97)] + [1, 2, 3])


def _batches(sampler, batch_size):
    idx = list(sampler)
    assert len(idx) % batch_size == 0
    return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]


def test_every_batch_is_p_ids_times_k_images():
    sampler = RandomIdentitySampler(ITEMS, batch_size=64, num_instances=4, seed=3)
    batches = _batches(sampler, 64)
    assert len(batches) > 5
    for batch in batches:
        per_id = Counter(ITEMS[i][1] for i in batch)
        assert len(per_id) == 16 and set(per_id.values()) == {4}


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_an_epoch_covers_every_identity_except_bots_last_few(seed):
    """BoT stops when fewer than P ids hold chunks, so an id never drawn must be among those < P leftovers.

    Every other id is drawn in every epoch, and across a few epochs every id is drawn.
    """
    sampler = RandomIdentitySampler(ITEMS, batch_size=64, num_instances=4, seed=seed)
    union = set()
    for _ in range(4):
        drawn = {ITEMS[i][1] for i in sampler}
        assert len(set(range(100)) - drawn) < 16
        union |= drawn
    assert union == set(range(100))


def test_an_epoch_covers_every_image_when_each_id_is_one_chunk():
    """With K images per id (and ids padded up to K) and P dividing the id count, nothing is left over."""
    items = _items([4] * 60 + [2] * 4)
    for seed in range(3):
        idx = list(RandomIdentitySampler(items, 32, 4, seed=seed))
        assert Counter(items[i][1] for i in idx) == Counter({pid: 4 for pid in range(64)})
        assert set(range(240)) <= set(idx)  # every image of the ids with exactly K images


def test_bot_epoch_semantics():
    """Without replacement within an id with >= K images; ids with < K images are padded; leftovers < K dropped."""
    sampler = RandomIdentitySampler(ITEMS, batch_size=16, num_instances=4, seed=0)
    counts = Counter(ITEMS[i][1] for i in sampler)
    by_pid = Counter(pid for _, pid, _ in ITEMS)
    for pid, used in counts.items():
        assert used % 4 == 0 and used <= max(4, by_pid[pid] - by_pid[pid] % 4)
    single = sampler.epoch_batches(0)
    small = [b[j:j + 4] for b in single for j in range(0, 16, 4) if ITEMS[b[j]][1] == 97]
    assert small and all(len(set(chunk)) == 1 for chunk in small)  # one image drawn K times


def test_deterministic_per_seed_and_epoch_without_touching_global_rng():
    state = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    a = RandomIdentitySampler(ITEMS, 64, 4, seed=5)
    b = RandomIdentitySampler(ITEMS, 64, 4, seed=5)
    first, second = list(a), list(a)  # iterating advances the epoch
    assert first != second and first == list(b)
    b.set_epoch(1)
    assert list(b) == second and b.epoch == 2
    a.set_epoch(0)
    assert len(a) == len(first) and list(a) == first
    assert list(RandomIdentitySampler(ITEMS, 64, 4, seed=6)) != first
    assert random.getstate() == state[0] and (np.random.get_state()[1] == state[1]).all()
    assert torch.equal(torch.get_rng_state(), state[2])


def test_len_is_exact():
    sampler = RandomIdentitySampler(ITEMS, 32, 4, seed=1)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        expected = len(sampler)
        assert len(list(sampler)) == expected


def test_distributed_ranks_are_disjoint_complete_and_equal():
    world = 3
    samplers = [DistributedRandomIdentitySampler(ITEMS, 32, 4, num_replicas=world, rank=r, seed=7)
                for r in range(world)]
    for epoch in (0, 1):
        for s in samplers:
            s.set_epoch(epoch)
        per_rank = [_batches(s, 32) for s in samplers]
        assert len({len(b) for b in per_rank}) == 1 and len({len(s) for s in samplers}) == 1
        global_batches = samplers[0].epoch_batches(epoch)
        for r, batches in enumerate(per_rank):
            assert batches == global_batches[r::world][: len(global_batches) // world]
            for batch in batches:
                assert set(Counter(ITEMS[i][1] for i in batch).values()) == {4}
        flat = [tuple(b) for batches in per_rank for b in batches]
        assert len(flat) == len(set(flat))  # no batch is seen by two ranks


@pytest.mark.parametrize("kwargs, match", [
    (dict(batch_size=30, num_instances=4), "multiple of num_instances"),
    (dict(batch_size=64, num_instances=0), "multiple of num_instances"),
    (dict(batch_size=4096, num_instances=4), "at least P = 1024 identities"),
])
def test_bad_batch_shapes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        RandomIdentitySampler(ITEMS, **kwargs)


def test_distributed_needs_world_and_rank():
    with pytest.raises(ValueError, match="num_replicas and rank"):
        DistributedRandomIdentitySampler(ITEMS, 64, 4)
    with pytest.raises(ValueError, match="rank < num_replicas"):
        DistributedRandomIdentitySampler(ITEMS, 64, 4, num_replicas=2, rank=2)


def test_loaders_yield_pk_batches_of_tensors(tiny_market):
    ds = build_dataset("synthetic", tiny_market)
    train = make_train_loader(ds.train, build_transforms(64, 32), batch_size=8, num_instances=2, seed=0)
    imgs, pids, camids, paths = next(iter(train))
    assert imgs.shape == (8, 3, 64, 32) and imgs.dtype == torch.float32
    assert pids.dtype == torch.int64 and len(paths) == 8 and set(Counter(pids.tolist()).values()) == {2}
    assert len(train) == len(train.sampler) // 8
    test = make_test_loader(ds.query, build_transforms(64, 32, is_train=False), batch_size=5)
    seen = [p for batch in test for p in batch[3]]
    assert seen == [p for p, _, _ in ds.query]  # fixed order, last partial batch kept


def test_val_split_holds_out_multi_camera_ids():
    single_camera = [(f"s_{pid}_{k}.jpg", pid, 0) for pid in range(130, 135) for k in range(4)]
    items = _items([6] * 30, cams=3) + single_camera
    train, query, gallery = make_val_split(items, num_val_ids=8, seed=0)
    held = {pid for _, pid, _ in query}
    assert len(held) == 8 and len(query) == 8 and held == {pid for _, pid, _ in gallery} and max(held) < 30
    assert sorted({pid for _, pid, _ in train}) == list(range(35 - 8))
    assert len(train) + len(query) + len(gallery) == len(items)
    for _, pid, cam in query:
        assert any(g == pid and c != cam for _, g, c in gallery)
    assert make_val_split(items, 8, seed=0) == (train, query, gallery)
    with pytest.raises(ValueError, match="seen by >= 2 cameras"):
        make_val_split(items, 31)
