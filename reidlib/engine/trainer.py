"""The training loop: :func:`fit` runs the paper's recipe with checkpoints, exact resume, DDP and model selection.

One epoch = one pass of the P x K sampler. Order of events per 0-based epoch ``e``: set sampler epoch ``e``,
train at ``lr(e)`` (see :mod:`reidlib.engine.optim`), step the scheduler, evaluate on the selection split when
``(e + 1) % eval_every == 0`` or at the last epoch, save ``last.pt`` (and ``best.pt`` on improvement), append
one row to ``metrics.csv`` / ``history.json``. The test set is evaluated once, after training, from the
selected checkpoint. Under DDP only rank 0 evaluates, logs and writes files.

History rows (``history.json``, ``metrics.csv``; one per epoch): ``epoch`` (1-based), ``lr``, ``head_only``,
``loss`` and ``loss_id``/``loss_triplet``/``loss_center`` (unweighted, mean per image), ``train_acc``, ``images``,
``images_per_s`` (all ranks), ``train_seconds``, ``epoch_seconds`` (with evaluation); when evaluated,
``val_rank1``/``val_rank5``/``val_rank10``/``val_mAP``/``val_mINP`` (fractions in [0, 1]; ``test_*`` with
``select_on="test"``) and ``select_score`` = (rank1 + mAP) / 2, the paper code's selection score. Collapse
diagnostics from the training batches (:mod:`reidlib.engine.health`): ``feat_norm`` (mean L2 norm of the features
the triplet loss sees), ``dist_ap``/``dist_an`` (mean batch-hard anchor-positive / anchor-negative distance); with
``metric_warmup_epochs`` also ``metric_weight``, the factor on the triplet and center weights that epoch.

Divergence: after each epoch, before it is evaluated or saved, a non-finite loss term, a cross-entropy above
10 x ln(K) or a loss above 1000 x the first epoch's raises :class:`reidlib.engine.health.TrainingDiverged` (naming
the epoch, the terms and the fix) out of :func:`fit`; ``last.pt`` keeps the last healthy epoch.

Exact resume: ``last.pt`` holds model, optimizer, scheduler, center loss and its optimizer, GradScaler, every
rank's python/numpy/torch/CUDA RNG state and the loader generator. Restarting the same call continues at the
next epoch; on CPU with ``deterministic=True``, ``num_workers=0`` and the same thread count the final weights
are bit-identical to an uninterrupted run (persistent loader workers keep RNG state that is not saved). The cached
data path (``data_path="cached"``, the default) draws its augmentations from a generator seeded by (seed, epoch,
rank), so its batches need no saved state at all.

Before training, every query/gallery image of the selection and test splits is decoded once
(:func:`reidlib.data.verify_images`), so an unreadable file stops the call before the first epoch.

``max_minutes``: before each epoch but the first of the call, stop if the elapsed time plus the mean duration
of the last (up to 5) epochs would pass the budget; recorded as ``stopped_early``. The final test evaluation
still runs (it is not counted in the estimate). ``stop_after=k`` stops after epoch k without the test
evaluation, as an interrupted run would.
"""
from __future__ import annotations

import dataclasses
import platform
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from reidlib.progress import bars_enabled, progress_bar, write_line
from reidlib.runtime import autocast, resolve_device, resolve_precision, seed_everything, to_memory_format

from . import checkpoint as ckpt
from .config import LEGACY_VALUES, RESUME_FREE, SELECT_LABELS, TrainConfig, TrainResult
from .criterion import build_criterion, center_step_prepare
from .distributed import (
    all_gather_objects,
    all_reduce_sum,
    average_gradients,
    barrier,
    broadcast_object,
    dist_info,
    same_on_every_rank,
    unwrap,
)
from .evaluate import evaluate_model
from .health import BatchDiagnostics, check_divergence, metric_weight_factor
from .memory import keep_freed_memory
from .optim import build_optimizer, build_scheduler
from .records import write_csv, write_json

Item = tuple[str, int, int]
READ_EVERY = 10
"""Training steps between reads of the running loss sums from the device (each read waits for the GPU)."""


def fit(model: nn.Module | str, data: Any, *, out_dir: str | Path,
        val: tuple[Sequence[Item], Sequence[Item]] | int | None = None,
        train_transform: Callable | None = None, test_transform: Callable | None = None,
        meta: dict | None = None, config: TrainConfig | None = None, **kwargs: Any) -> TrainResult:
    """Train ``model`` on ``data`` and return a :class:`TrainResult`; files go to ``out_dir``.

    Args:
        model: a reidlib model whose classifier has one output per training identity, or a registered model
            name (built with ``num_classes`` = training identities and ``config.model_kwargs``). After ``fit``
            the module (also ``result.model``) holds the selected weights, the ones the test metrics come
            from, in eval mode. A classifier of another size is replaced by ``reset_classifier``.
            ``torch.compile(model)`` trains through the compiled module (evaluation and ``result.model`` use the
            module under it).
        data: a :class:`reidlib.data.ReIDDataset` (its train split is used for training and its query/gallery
            for the final test) or a list of training items ``(path, pid, camid)`` (no test evaluation).
        out_dir: run folder for ``last.pt``, ``best.pt``, ``metrics.csv``, ``history.json``, ``result.json``.
        val: model-selection data: ``(val_query, val_gallery)`` item lists, or an int = number of training
            identities to hold out with :func:`reidlib.data.make_val_split` (same as ``num_val_ids=``).
        train_transform, test_transform: PIL image -> tensor callables replacing the ones built from
            ``height``/``width``/``flip_p``/``pad``/``color_jitter``/``erasing_p`` (their repr is recorded).
        meta: extra provenance (JSON-able) stored in the checkpoints' and ``result.json``'s ``meta``.
        config: a :class:`TrainConfig`; or give its fields as keywords (``epochs=``, ``optimizer=``, ``lr=``,
            ``select_on=``, ``max_minutes=`` ...), which map 1:1 onto it.
    """
    if config is not None and kwargs:
        raise TypeError("pass either config= or keyword options, not both")
    cfg = dataclasses.replace(config) if config is not None else TrainConfig.from_kwargs(**kwargs)
    if isinstance(val, int) and not isinstance(val, bool):
        cfg.num_val_ids, val = val, None
    return _Trainer(model, data, Path(out_dir), val, cfg, (train_transform, test_transform), meta).run()


def freeze_layers(model: nn.Module, names: Sequence[str]) -> int:
    """Stop the parameters of the named submodules of ``model`` from training; returns how many were frozen.

    ``names`` are module paths as in ``model.named_modules()`` (``"conv1"``, ``"backbone.layer1"``). A name that
    matches no module, or a module without parameters, is an error naming the model's top-level modules.
    """
    modules = dict(model.named_modules())
    frozen = 0
    for name in names:
        if name not in modules or not name:
            top = [n for n, _ in model.named_children()]
            raise ValueError(f"frozen_layers: the model has no module {name!r}; its top-level modules are {top}")
        params = list(modules[name].parameters())
        if not params:
            raise ValueError(f"frozen_layers: module {name!r} has no parameters to freeze")
        for p in params:
            p.requires_grad_(False)
        frozen += sum(p.numel() for p in params)
    return frozen


def split_training_data(data: Any, val: Any = None, num_val_ids: int | None = None, seed: int = 0
                        ) -> tuple[list[Item], tuple[list[Item], list[Item]] | None, tuple | None]:
    """``(train_items, val, test)`` as :func:`fit` uses them.

    ``train_items`` have pids relabelled ``0..N-1`` (N = classifier size); ``val`` is ``(query, gallery)``
    or ``None``; ``test`` is ``(query, gallery, protocol)`` of a dataset, or ``None`` for a list of items.
    """
    from reidlib.data import make_val_split
    from reidlib.data.base import relabel

    if hasattr(data, "train"):
        train, test = list(data.train), (list(data.query), list(data.gallery), data.protocol)
    elif isinstance(data, (list, tuple)):
        train, test = list(data), None
    else:
        raise TypeError(f"data must be a ReIDDataset or a list of (path, pid, camid) items, got {type(data)}")
    if not train:
        raise ValueError("no training items")
    if num_val_ids:
        if val is not None:
            raise ValueError("give either val=(query, gallery) or num_val_ids, not both")
        train, vq, vg = make_val_split(train, num_val_ids, seed=seed)
        val = (vq, vg)
    elif val is not None:
        vq, vg = val
        val = (list(vq), list(vg))
    return relabel(train), val, test


class _Trainer:
    """State of one :func:`fit` call (internal)."""

    def __init__(self, model: nn.Module | str, data: Any, out_dir: Path, val: Any, cfg: TrainConfig,
                 transforms: tuple[Callable | None, Callable | None] = (None, None), meta: dict | None = None) -> None:
        self.cfg, self.out = cfg, out_dir
        self.train_tf, self.test_tf = transforms
        self.info = dist_info()
        self.t_start = time.perf_counter()
        self.device = resolve_device(cfg.device)
        if self.info.enabled and self.device.type == "cuda" and self.device.index is None:
            self.device = torch.device("cuda", self.info.local_rank)  # "cuda:K" given: every rank on GPU K
        self.precision = resolve_precision(cfg.precision, self.device)
        self.channels_last = True if cfg.channels_last is None else bool(cfg.channels_last)
        # fp32 on a CPU: glibc keeping freed memory speeds a step ~x1.2 (reidlib/engine/memory.py)
        self.malloc = keep_freed_memory() if self.device.type == "cpu" and self.precision == "fp32" else "default"
        seed_everything(cfg.seed, cfg.deterministic)
        self._setup_data(data, val)
        self._setup_model(model)
        self._setup_optim()
        # per-rank augmentation streams; rank 0 keeps the single-process stream
        seed_everything(cfg.seed + self.info.rank, cfg.deterministic)
        self.history: list[dict] = []
        self.best: dict | None = None
        self.start_epoch = 0
        self.meta: dict = {"runs": [], "classifier_reset": self.classifier_reset, **(meta or {})}
        if self.info.is_main:
            self.out.mkdir(parents=True, exist_ok=True)
        last = self.out / ckpt.LAST
        state = (ckpt.load_checkpoint(last, map_location="cpu", require=ckpt.RESUME_KEYS)
                 if cfg.resume and last.is_file() else None)
        same_on_every_rank(None if state is None else int(state["epoch"]), f"the epoch {last} resumes from",
                           "out_dir must be one folder that every rank reads and writes (several nodes: a shared "
                           "filesystem, mounted at the same path); give such an out_dir, or resume=False")
        if state is not None:
            self._resume(state)
        elif self.info.is_main:  # a fresh run: nothing of an earlier one may pass for this one's
            if (self.out / ckpt.LAST).is_file():
                warnings.warn(f"resume=False: starting afresh and overwriting the run in {self.out}", stacklevel=3)
            for stale in (ckpt.LAST, ckpt.BEST, "test_metrics.json", "result.json"):
                (self.out / stale).unlink(missing_ok=True)
        barrier()

    # ---- setup ------------------------------------------------------------------------------------------
    def _setup_data(self, data: Any, val: Any) -> None:
        from reidlib.data import (
            BatchAugment,
            build_transforms,
            make_cached_train_loader,
            make_train_loader,
            verify_images,
        )

        cfg = self.cfg
        self.train_items, self.val, self.test = split_training_data(data, val, cfg.num_val_ids, cfg.seed)
        self.select_on = cfg.select_on or ("val" if self.val else "last")
        if self.select_on == "val" and not self.val:
            raise ValueError("select_on='val' needs val=(query, gallery) or num_val_ids")
        if self.select_on == "test" and self.test is None:
            raise ValueError("select_on='test' needs a dataset with query/gallery splits")
        self.num_classes = len({pid for _, pid, _ in self.train_items})
        # every image read after training starts (selection and test splits) must decode now, not after the
        # last epoch; the training images are read up front by the cached path, in epoch 1 by the PIL path
        t0 = time.perf_counter()
        later = [it for split in (self.val or ()) for it in split]
        later += [it for split in (self.test[:2] if self.test else ()) for it in split]
        verify_images(later)
        self.data_info: dict = {"verified_images": len(later), "verify_seconds": round(time.perf_counter() - t0, 3)}
        self.data_path = "pil" if cfg.data_path == "pil" or self.train_tf is not None else "cached"
        self.data_info["data_path"] = self.data_path
        if self.data_path == "cached":
            augment = BatchAugment(flip_p=cfg.flip_p, pad=cfg.pad, color_jitter=cfg.color_jitter,
                                   erasing_p=cfg.erasing_p)
            try:
                self.loader = make_cached_train_loader(
                    self.train_items, cfg.height, cfg.width, augment, batch_size=cfg.batch_size,
                    num_instances=cfg.num_instances, seed=cfg.seed, distributed=self.info.enabled,
                    rank=self.info.rank, cache_dir=cfg.cache_dir,
                    device=self.device if self.device.type == "cuda" else None)
                self.data_info["image_cache"] = self.loader.cache.info()
            except MemoryError as err:  # too large for memory and no cache_dir: the PIL path still works
                if self.info.is_main:
                    warnings.warn(f"{err}; training on the PIL data path instead", stacklevel=4)
                self.data_path = self.data_info["data_path"] = "pil"
                self.data_info["cached_path_refused"] = str(err)
        if self.data_path == "pil":
            transform = self.train_tf or build_transforms(cfg.height, cfg.width, is_train=True, flip_p=cfg.flip_p,
                                                          pad=cfg.pad, color_jitter=cfg.color_jitter,
                                                          erasing_p=cfg.erasing_p)
            self.loader = make_train_loader(self.train_items, transform, batch_size=cfg.batch_size,
                                            num_instances=cfg.num_instances, num_workers=cfg.num_workers,
                                            seed=cfg.seed, distributed=self.info.enabled)
        if self.info.rank > 0 and self.loader.generator is not None:
            self.loader.generator.manual_seed(cfg.seed + 1_000_003 * self.info.rank)
        if len(self.loader) == 0:
            raise ValueError(f"the training items make no complete {cfg.batch_size}-image P x K batch")

    def _setup_model(self, model: nn.Module | str) -> None:
        cfg = self.cfg
        if isinstance(model, str):
            from reidlib.models import build_model

            self.model_spec: dict | None = {"name": model, "kwargs": dict(cfg.model_kwargs)}
            model = build_model(model, self.num_classes, **cfg.model_kwargs)
        else:
            self.model_spec = getattr(unwrap(model), "build_spec", None)
        raw = unwrap(model)
        self.compiled = _compiled_around(model, raw)  # torch.compile(model) given: train through it
        head = getattr(raw, "classifier", None)
        self.classifier_reset = None
        if isinstance(head, nn.Linear) and head.out_features != self.num_classes:
            if not hasattr(raw, "reset_classifier"):
                raise ValueError(
                    f"the model's classifier has {head.out_features} outputs but the training split has "
                    f"{self.num_classes} identities, and the model has no reset_classifier(); pass a matching model")
            if not cfg.num_val_ids and self.info.is_main:
                warnings.warn(f"classifier has {head.out_features} outputs, training split {self.num_classes} "
                              "identities: replacing it with a fresh head", stacklevel=4)
            raw.reset_classifier(self.num_classes)
            self.classifier_reset = [head.out_features, self.num_classes]
        freeze_layers(raw, cfg.frozen_layers)
        self.raw = to_memory_format(raw.to(self.device), self.channels_last)
        self.trainable = {n: p.requires_grad for n, p in self.raw.named_parameters()}
        self._head_only: bool | None = None
        self.net: nn.Module = self.raw if self.compiled is None else self.compiled

    def _setup_optim(self) -> None:
        cfg = self.cfg
        params = [p for p in self.raw.parameters() if p.requires_grad]
        self.criterion, self.center_opt = build_criterion(cfg, self.num_classes, self.raw, self.device)
        self.optimizer = build_optimizer(params, cfg.optimizer, lr=cfg.lr, weight_decay=cfg.weight_decay,
                                         momentum=cfg.momentum)
        self.scheduler = build_scheduler(self.optimizer, cfg.scheduler, epochs=cfg.epochs,
                                         warmup_epochs=cfg.warmup_epochs, warmup_factor=cfg.warmup_factor,
                                         milestones=cfg.milestones, gamma=cfg.gamma, min_factor=cfg.min_lr_factor)
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=self.precision == "fp16")

    # ---- checkpoints ------------------------------------------------------------------------------------
    def _state(self, epoch: int, rng: list[dict]) -> dict:
        gen = self.loader.generator
        return {
            "format": 1, "epoch": epoch, "model": self.raw.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(), "criterion": self.criterion.state_dict(),
            "center_optimizer": None if self.center_opt is None else self.center_opt.state_dict(),
            "scaler": self.scaler.state_dict(), "rng": rng,
            "loader_generator": None if gen is None else gen.get_state(),
            "sampler_epoch": epoch, "history": ckpt.to_builtin(self.history), "best": ckpt.to_builtin(self.best),
            "config": self.cfg.to_dict(), "model_spec": self.model_spec, "num_classes": self.num_classes,
            "select_on": self.select_on, "world_size": self.info.world_size, "meta": ckpt.to_builtin(self.meta),
        }

    def _resume(self, state: dict) -> None:
        """Continue from ``state`` (``last.pt`` loaded on the CPU: ``load_state_dict`` moves each tensor to where
        its model/optimizer lives, the RNG states stay CPU tensors and Adam's ``step`` counters stay on the CPU)."""
        old = {**LEGACY_VALUES, **state["config"]}
        if "freeze_backbone_epochs" in old:  # the field's name before it became head_only_epochs
            old["head_only_epochs"] = old.pop("freeze_backbone_epochs")
        old = {k: v for k, v in old.items() if k not in RESUME_FREE}
        new = {k: v for k, v in self.cfg.to_dict().items() if k not in RESUME_FREE}
        diff = {k: (old.get(k), new.get(k)) for k in set(old) | set(new) if old.get(k) != new.get(k)}
        if diff or state["num_classes"] != self.num_classes:
            raise ValueError(
                f"{self.out / ckpt.LAST} was written with another recipe ({diff or 'num_classes differs'}, as "
                "(checkpoint, now)); use a new out_dir, or resume=False to overwrite it")
        self.raw.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.criterion.load_state_dict(state["criterion"])
        if self.center_opt is not None:
            self.center_opt.load_state_dict(state["center_optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        if state.get("loader_generator") is not None and self.loader.generator is not None:
            self.loader.generator.set_state(state["loader_generator"].cpu())
        rng = state["rng"]
        if len(rng) == self.info.world_size:
            ckpt.unpack_rng(rng[self.info.rank])
        elif self.info.is_main:
            warnings.warn(f"checkpoint has RNG states of {len(rng)} ranks, this run has {self.info.world_size}: "
                          "augmentation streams restart from the seed (resume is not bit-exact)", stacklevel=4)
        self.history, self.best, self.meta = state["history"], state["best"], state.get("meta") or {"runs": []}
        self.start_epoch = int(state["epoch"])

    def _save(self, epoch: int, improved: bool) -> None:
        rng = all_gather_objects(ckpt.pack_rng())
        if self.info.is_main:
            ckpt.save_checkpoint(self._state(epoch, rng), self.out / ckpt.LAST)
            if improved:
                ckpt.save_checkpoint({"format": 1, "epoch": epoch, "model": self.raw.state_dict(),
                                      "metrics": ckpt.to_builtin(self.best), "config": self.cfg.to_dict(),
                                      "model_spec": self.model_spec, "num_classes": self.num_classes,
                                      "select_on": self.select_on}, self.out / ckpt.BEST)
            write_csv(self.out / "metrics.csv", self.history)
            write_json(self.out / "history.json", self.history)
        barrier()

    # ---- one epoch --------------------------------------------------------------------------------------
    def _set_phase(self, head_only: bool) -> None:
        """Freeze everything but the head (classifier + neck) or restore the original trainable flags."""
        if head_only == self._head_only:
            return
        names = getattr(self.raw, "head_parameter_names", None)
        head = set(names() if names else [n for n in self.trainable if n.startswith(("classifier.", "bottleneck."))])
        if head_only and not head:
            raise ValueError("head_only_epochs > 0 but the model exposes no head parameters")
        for name, p in self.raw.named_parameters():
            p.requires_grad_(self.trainable[name] and (not head_only or name in head))
        self._head_modules = {n.rsplit(".", 1)[0] for n in head}
        self._head_only = head_only
        if self.info.enabled:
            self.net = self.raw  # drop the old wrapper (and its hooks) before building the next
            find_unused = self.cfg.ddp_find_unused_parameters
            if find_unused is None:
                find_unused = bool(_unused_parameters(self.raw, self.criterion, self.num_classes, self.cfg.height,
                                                      self.cfg.width, self.device))
            ids = [self.device.index] if self.device.type == "cuda" else None
            module = self.raw if self.compiled is None else self.compiled
            self.net = nn.parallel.DistributedDataParallel(module, device_ids=ids, find_unused_parameters=find_unused)

    def _train_mode(self) -> None:
        self.net.train()
        if self._head_only:  # frozen backbone: keep its BatchNorm running statistics fixed too
            for name, m in self.raw.named_modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm) and name not in self._head_modules:
                    m.eval()

    def _train_epoch(self, epoch: int) -> dict:
        cfg, dev = self.cfg, self.device
        self._set_phase(epoch < cfg.head_only_epochs)
        self._train_mode()
        self.criterion.metric_scale = metric_weight_factor(epoch, cfg.metric_warmup_epochs)
        diag = BatchDiagnostics(cfg.loss_kwargs.get("metric", "euclidean"), dev)
        self.loader.sampler.set_epoch(epoch)
        lr = self.optimizer.param_groups[0]["lr"]
        # on the device, float64: loss terms x batch size, then correct predictions (read back every READ_EVERY steps)
        keys: list[str] = []
        sums = torch.zeros(0, dtype=torch.float64, device=dev)
        n_local = 0
        show = cfg.progress and self.info.is_main and bars_enabled()
        bar = progress_bar(prefetch(self.loader, dev), desc=f"epoch {epoch + 1}/{cfg.epochs}",
                           total=len(self.loader), enabled=show)
        size = cfg.train_size(epoch)
        low_res = size != (cfg.height, cfg.width)
        t0 = time.perf_counter()
        for it, (img, target, _cam, _path) in enumerate(bar):  # img, target already on dev
            if low_res:
                img = F.interpolate(img, size=size, mode="bilinear", antialias=True, align_corners=False)
            img = to_memory_format(img, True) if self.channels_last else img.contiguous()
            with autocast(dev, self.precision):
                logits, feat = self.net(img)
            total, parts = self.criterion.terms(logits.float(), feat.float(), target)
            diag.update(feat, target)
            self._step(total)
            bs = target.numel()
            n_local += bs
            if not keys:
                keys = ["loss"] + [f"loss_{k}" for k in parts if k != "total"]
                sums = torch.zeros(len(keys) + 1, dtype=torch.float64, device=dev)
            values = torch.stack([parts["total"]] + [v for k, v in parts.items() if k != "total"])
            sums[:-1] += values.double() * bs
            sums[-1] += (logits.detach().argmax(1) == target).sum()
            if (it + 1) % READ_EVERY == 0 or it == len(self.loader) - 1:
                self.last_read = dict(zip(keys, (sums[:-1] / n_local).tolist()))  # the loop's one device read
                if show:
                    dt = time.perf_counter() - t0
                    post = {k: f"{v:.3f}" for k, v in self.last_read.items()}
                    bar.set_postfix(**post, lr=f"{lr:.2e}", img_s=f"{n_local * self.info.world_size / dt:.1f}")
        train_s = time.perf_counter() - t0
        local = torch.cat([sums, sums.new_tensor([float(n_local)])])
        totals = all_reduce_sum(local).tolist()
        n = totals[-1]
        row = {"epoch": epoch + 1, "lr": lr, "head_only": bool(self._head_only)}
        row.update({k: totals[i] / n for i, k in enumerate(keys)})
        row.update(train_acc=totals[-2] / n, images=int(n), images_per_s=n / train_s, train_seconds=train_s)
        row.update(diag.result())
        if cfg.metric_warmup_epochs:
            row["metric_weight"] = self.criterion.metric_scale
        if cfg.low_res_epochs:
            row["input_size"] = list(size)
        return row

    def _step(self, total: torch.Tensor) -> None:
        self.optimizer.zero_grad(set_to_none=True)
        if self.center_opt is not None:
            self.center_opt.zero_grad(set_to_none=True)
        self.scaler.scale(total).backward()
        if self.center_opt is not None:
            average_gradients(self.criterion.parameters())  # centres live outside DDP
            self.scaler.unscale_(self.center_opt)
            center_step_prepare(self.criterion)
            self.scaler.step(self.center_opt)
        self.scaler.step(self.optimizer)
        self.scaler.update()

    # ---- selection and the whole run --------------------------------------------------------------------
    def _evaluate(self, items: tuple, protocol: str) -> dict:
        """Selection and test metrics of ``items`` = (query, gallery) under ``cfg.evaluation``."""
        cfg = self.cfg
        return evaluate_model(self.raw, items[0], items[1], cfg.evaluation, protocol=protocol, height=cfg.height,
                              width=cfg.width, num_workers=cfg.num_workers, device=self.device,
                              precision=self.precision, channels_last=self.channels_last, progress=False,
                              transform=self.test_tf)

    def _select(self, epoch: int, row: dict) -> bool:
        """Evaluate the selection split on rank 0 when due; return whether this epoch is the new best."""
        cfg = self.cfg
        due = (epoch + 1) % cfg.eval_every == 0 or epoch + 1 == cfg.epochs
        if self.select_on == "last":
            self.best = {"epoch": epoch + 1}
            return False
        if not due:
            return False
        improved = False
        if self.info.is_main:
            items = self.val if self.select_on == "val" else self.test
            protocol = "market" if self.select_on == "val" else self.test[2]
            res = self._evaluate(items[:2], protocol)
            prefix = "val" if self.select_on == "val" else "test"
            row.update({f"{prefix}_{k}": v for k, v in res.items() if k != "cmc"})
            score = 0.5 * (res["rank1"] + res["mAP"])
            row["select_score"] = score
            improved = self.best is None or score > self.best["score"]
            if improved:
                self.best = {"epoch": epoch + 1, "score": score, **{k: v for k, v in res.items() if k != "cmc"}}
        return bool(broadcast_object(improved))

    def _out_of_time(self, epoch: int) -> bool:
        cfg = self.cfg
        if cfg.max_minutes is None or epoch == self.start_epoch:
            return False
        done = [r["epoch_seconds"] for r in self.history[-5:]] or [0.0]
        elapsed = time.perf_counter() - self.t_start
        stop = elapsed + sum(done) / len(done) > cfg.max_minutes * 60
        return bool(broadcast_object(stop))

    def run(self) -> TrainResult:
        cfg = self.cfg
        stopped = None
        self.meta.setdefault("runs", []).append({
            "start_epoch": self.start_epoch, "world_size": self.info.world_size, "device": str(self.device),
            "precision": self.precision, "channels_last": self.channels_last,
            "torch_threads": torch.get_num_threads(), "malloc": self.malloc, **self.data_info,
            "train_transform": repr(self.train_tf) if self.train_tf else None,
            "test_transform": repr(self.test_tf) if self.test_tf else None})
        epoch = self.start_epoch
        for epoch in range(self.start_epoch, cfg.epochs):
            if self._out_of_time(epoch):
                stopped = f"max_minutes={cfg.max_minutes} reached before epoch {epoch + 1}"
                break
            t0 = time.perf_counter()
            row = self._train_epoch(epoch)
            check_divergence(row, self.history[0] if self.history else None, self.num_classes, cfg.to_dict())
            self.scheduler.step()
            improved = self._select(epoch, row)
            row["epoch_seconds"] = time.perf_counter() - t0
            self.history.append(row)
            self._save(epoch + 1, improved)
            if cfg.progress and self.info.is_main:
                write_line(_summary(row))
            if cfg.stop_after is not None and epoch + 1 >= cfg.stop_after and epoch + 1 < cfg.epochs:
                stopped = f"stop_after={cfg.stop_after}"
                break
        return self._finish(stopped)

    def _finish(self, stopped: str | None) -> TrainResult:
        cfg = self.cfg
        done = self.history[-1]["epoch"] if self.history else 0
        best_path = self.out / ckpt.BEST if (self.out / ckpt.BEST).is_file() else None
        selected = best_path if self.select_on != "last" and best_path is not None else self.out / ckpt.LAST
        test = None
        run_test = cfg.evaluate_test and self.test is not None and not (stopped or "").startswith("stop_after")
        if selected != self.out / ckpt.LAST and selected.is_file():
            self.raw.load_state_dict(ckpt.load_checkpoint(selected, map_location="cpu")["model"])
        self.raw.eval()
        if run_test and self.info.is_main and done > 0:
            test = self._evaluate(self.test[:2], self.test[2])
            write_json(self.out / "test_metrics.json", {
                "checkpoint": str(selected), "epoch": (self.best or {}).get("epoch", done),
                "selected_on": self.select_on, "optimizer": cfg.optimizer, **test})
        self.meta["runs"][-1].update(seconds=time.perf_counter() - self.t_start, torch=torch.__version__,
                                     python=platform.python_version(), host=platform.node())
        result = TrainResult(
            out_dir=self.out, history=self.history, epochs_completed=done, epochs_planned=cfg.epochs,
            optimizer=cfg.optimizer, selected_on=self.select_on, selection=SELECT_LABELS[self.select_on],
            best_epoch=(self.best or {}).get("epoch"), best_metrics=self.best, checkpoint=selected,
            last_checkpoint=self.out / ckpt.LAST, best_checkpoint=best_path, test_metrics=test,
            stopped_early=stopped, config=cfg.to_dict(), meta=self.meta, model=self.raw)
        if self.info.is_main:
            write_json(self.out / "result.json", result.to_dict())
        barrier()
        return result


def _unused_parameters(model: nn.Module, criterion: nn.Module, num_classes: int, height: int, width: int,
                       device: torch.device) -> list[str]:
    """Trainable parameters that get no gradient from the training loss of a train-mode forward of 4 blank images.

    The loss is ``criterion`` (the run's, with its weights: with ``id_weight=0`` the classifier is unused), on
    targets ``[0, 0, 1, 1]`` (mod ``num_classes``). RNG, BatchNorm statistics and gradients (the model's and the
    criterion's) are restored, so the probe leaves no trace on the run.
    """
    buffers = {k: v.detach().clone() for k, v in model.named_buffers()}
    was_training = model.training
    target = torch.tensor([0, 0, 1, 1], device=device) % num_classes
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        model.train()
        logits, feat = model(torch.zeros(4, 3, height, width, device=device))
        criterion.terms(logits.float(), feat.float(), target)[0].backward()
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    for p in [*model.parameters(), *criterion.parameters()]:
        p.grad = None
    with torch.no_grad():
        for k, v in model.named_buffers():
            v.copy_(buffers[k])
    model.train(was_training)
    return unused


def _compiled_around(model: nn.Module, raw: nn.Module) -> nn.Module | None:
    """The ``torch.compile`` wrapper of ``raw`` in ``model`` (kept, so ``fit`` trains compiled), or None.

    ``raw.compile()`` (in place) needs nothing: ``raw`` itself runs compiled. A compile wrapper around DDP or
    DataParallel is refused: ``fit`` adds DDP itself.
    """
    while model is not raw:
        if hasattr(model, "_orig_mod"):
            if model._orig_mod is raw:
                return model
            raise ValueError("fit got torch.compile() of a DDP/DataParallel wrapper: pass torch.compile(model) of "
                             "the bare model (fit wraps it in DDP itself under torchrun)")
        model = model.module
    return None


def prefetch(batches: Iterable[tuple], device: torch.device) -> Iterator[tuple]:
    """Batches ``(img, pid, *rest)`` with ``img`` and ``pid`` on ``device``, fetched one batch ahead.

    CPU: the batches pass through untouched (nothing to overlap; the global RNG sees the same order of draws).
    Elsewhere batch ``i + 1`` is fetched, and its copy issued, before batch ``i`` is handed out; on CUDA the copy
    runs on a side stream that the training stream waits for, so loading and copying overlap the step.
    """
    if device.type == "cpu":
        yield from batches
        return
    stream = torch.cuda.Stream(device) if device.type == "cuda" else None

    def load(batch: tuple) -> tuple:
        with torch.cuda.stream(stream) if stream is not None else nullcontext():
            return (batch[0].to(device, non_blocking=True), batch[1].to(device, non_blocking=True), *batch[2:])

    it = iter(batches)
    ahead = next(it, None)
    ahead = None if ahead is None else load(ahead)
    while ahead is not None:
        current = ahead
        if stream is not None:
            main = torch.cuda.current_stream(device)
            main.wait_stream(stream)
            for t in current[:2]:
                t.record_stream(main)  # the allocator must not reuse them before the step is done
        nxt = next(it, None)
        ahead = None if nxt is None else load(nxt)
        yield current


_SPLIT_WORDS = {"val": "held-out", "test": "test"}


def _summary(row: dict) -> str:
    """One log line per epoch: losses as they are, accuracies and rank-1 / mAP as percentages with one decimal."""
    parts = [f"epoch {row['epoch']}", f"lr {row['lr']:.2e}", f"loss {row['loss']:.4f}"]
    parts += [f"{k[5:]} {v:.4f}" for k, v in row.items() if k.startswith("loss_")]
    parts += [f"train acc {100 * row['train_acc']:.1f}%", f"{row['images_per_s']:.1f} img/s",
              f"{row['epoch_seconds']:.1f} s"]
    for k, v in row.items():
        split, _, metric = k.partition("_")
        if metric in ("rank1", "mAP"):
            parts.append(f"{_SPLIT_WORDS.get(split, split)} {'R1' if metric == 'rank1' else 'mAP'} {100 * v:.1f}%")
    return " | ".join(parts)
