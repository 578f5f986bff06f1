"""The recipe a training or fine-tuning notebook ran, in words, rendered from the parameters it was given.

:func:`describe_recipe` turns a profile's merged ``training`` (or ``finetune``) block into a short markdown list
(loss mix with weights, optimizer, learning-rate schedule, augmentation, model selection, epochs), so an
executed notebook says exactly what it did. Keys a block leaves out take the defaults of the call the stage makes:
:class:`reidlib.engine.TrainConfig` for training, and for fine-tuning the stage's own (no warm-up, no milestones,
no head-only epochs). Learning rates are per step; epochs count from 1 in the text.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping

from reidlib.engine.config import TrainConfig

STAGES = ("train", "finetune")
OPTIMIZER_WORDS = {
    "adam": "Adam",
    "amsgrad": "Adam with AMSGrad",
    "adamw": "AdamW (decoupled weight decay)",
    "sgd": "SGD with momentum {momentum:g}",
}
# what the fine-tuning stage passes when its block leaves a key out (reidlib.stages.finetune / engine.finetune)
FINETUNE_DEFAULTS = {"warmup_epochs": 0, "milestones": [], "head_only_epochs": 0}


def _num(x: float) -> str:
    """A learning rate or weight as written in a profile: ``0.0015`` -> ``1.5e-3``, ``0.5`` -> ``0.5``."""
    x = float(x)
    if x == 0 or 1e-2 <= abs(x) < 1e4:
        return f"{x:g}"
    mantissa, exp = f"{x:.6e}".split("e")
    return f"{float(mantissa):g}e{int(exp)}"


def _recipe(train: Mapping[str, Any], stage: str) -> dict[str, Any]:
    """Defaults of the stage's call, then the block's keys, with ``transforms`` and ``loss_kwargs`` flattened."""
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {STAGES}, got {stage!r}")
    if not isinstance(train, Mapping):
        raise TypeError(f"train must be a mapping of training options (a profile's training block), got "
                        f"{type(train).__name__}")
    recipe: dict[str, Any] = {f.name: (f.default if f.default is not dataclasses.MISSING else f.default_factory())
                              for f in dataclasses.fields(TrainConfig)}
    if stage == "finetune":
        recipe.update(FINETUNE_DEFAULTS)
    recipe.update({k: v for k, v in train.items() if k not in ("transforms", "loss_kwargs")})
    recipe.update(train.get("transforms") or {})
    loss = {"id_weight": 1.0, "triplet_weight": 1.0, "soft_margin": False}
    loss.update(train.get("loss_kwargs") or {})
    recipe["loss"] = loss
    return recipe


def describe_loss(recipe: Mapping[str, Any], sigmoid_logits: bool = False) -> str:
    """The loss mix with its weights, e.g. ``label-smoothed cross-entropy (ε 0.1) + batch-hard triplet ...``.

    ``sigmoid_logits``: the model squashes its logits with a sigmoid before the loss (the paper code's MobileNetV3).
    """
    loss = recipe["loss"]
    terms = []
    if float(loss["id_weight"]) > 0:
        ce = (f"label-smoothed cross-entropy (ε {_num(recipe['label_smooth'])})" if float(recipe["label_smooth"]) > 0
              else "cross-entropy")
        if sigmoid_logits:
            ce += " on sigmoid-squashed logits (the paper code's MobileNetV3 head)"
        if float(loss["id_weight"]) != 1:
            ce = f"{_num(loss['id_weight'])} × {ce}"
        terms.append(ce)
    metric_terms: list[str] = []
    if float(loss["triplet_weight"]) > 0:
        soft = bool(loss["soft_margin"]) or recipe["triplet_margin"] is None
        kind = "soft-margin batch-hard triplet" if soft else \
            f"batch-hard triplet (margin {_num(recipe['triplet_margin'])})"
        if loss.get("metric", "euclidean") == "cosine":
            kind += " on cosine distances (1 - cos of the features)"
        terms.append(kind if float(loss["triplet_weight"]) == 1 else f"{_num(loss['triplet_weight'])} × {kind}")
        metric_terms.append("triplet")
    if float(recipe["center_weight"]) > 0:
        centres = (f"centres trained by their own SGD, lr {_num(recipe['center_lr'])}" if recipe["train_centers"]
                   else "centres frozen at their random start, as in the paper's code")
        terms.append(f"{_num(recipe['center_weight'])} × center loss ({centres})")
        metric_terms.append("center")
    if not terms:
        raise ValueError("the recipe has no loss term: id_weight, triplet_weight and center_weight are all 0")
    text = " + ".join(terms)
    ramp = int(recipe.get("metric_warmup_epochs") or 0)
    if ramp and metric_terms:
        which = "the " + " and ".join(metric_terms) + (" terms" if len(metric_terms) > 1 else " term")
        first, span = ("the first epoch", "1 epoch") if ramp == 1 else (f"the first {ramp} epochs", f"{ramp} epochs")
        text += f"; {which} ramped in: off for {first}, then raised linearly to full weight over {span} more"
    return text


def describe_schedule(recipe: Mapping[str, Any]) -> str:
    """Epochs, warm-up and decay of the learning rate, in the words of :mod:`reidlib.engine.optim`."""
    epochs, warm = int(recipe["epochs"]), int(recipe["warmup_epochs"])
    lr = _num(recipe["lr"])
    parts = [f"{epochs} epoch{'s' if epochs != 1 else ''} at lr {lr}"]
    if warm > 0:
        span = "the first epoch" if min(warm, epochs) == 1 else f"the first {min(warm, epochs)} epochs"
        parts.append(f"linear warm-up over {span} from ×{_num(recipe['warmup_factor'])}")
    else:
        parts.append("no warm-up")
    if recipe["scheduler"] == "cosine":
        floor = float(recipe.get("min_lr_factor") or 0.0)
        parts.append("then cosine decay to " + (f"×{_num(floor)}" if floor else "0") + " by the last epoch")
    else:
        steps = sorted(int(m) for m in recipe["milestones"] if int(m) < epochs)
        if steps:
            at = " and ".join(str(m) for m in steps) if len(steps) <= 2 else ", ".join(str(m) for m in steps)
            parts.append(f"then step decay: ×{_num(recipe['gamma'])} after epoch{'s' if len(steps) > 1 else ''} {at}")
        else:
            parts.append("then a constant lr" if warm > 0 else "a constant lr")
    return ", ".join(parts)


def describe_augmentation(recipe: Mapping[str, Any]) -> str:
    """The training-time augmentations that are switched on (none: ``"none (resize only)"``)."""
    aug = []
    if float(recipe["flip_p"]) > 0:
        aug.append(f"horizontal flip (p {_num(recipe['flip_p'])})")
    if int(recipe["pad"]) > 0:
        aug.append(f"zero-pad {int(recipe['pad'])} px + random crop back to size")
    if recipe.get("color_jitter"):
        aug.append(f"colour jitter ({_num(recipe['color_jitter'])} on brightness, contrast, saturation, hue)")
    if float(recipe["erasing_p"]) > 0:
        aug.append(f"random erasing (p {_num(recipe['erasing_p'])}, filled with the ImageNet mean)")
    return ", ".join(aug) if aug else "none (resize only)"


def describe_selection(recipe: Mapping[str, Any]) -> str:
    """Which epoch's weights are kept and what they were chosen on."""
    num_val = int(recipe.get("num_val_ids") or 0)
    select = recipe.get("select_on") or ("val" if num_val else "last")
    every = int(recipe["eval_every"])
    cadence = "every epoch" if every == 1 else f"every {every} epochs and after the last"
    score = "mean of rank-1 and mAP"
    if select == "last":
        return ("the last epoch is kept (no model selection); "
                + (f"{num_val} identities are still held out of training" if num_val
                   else "every training identity trains"))
    if select == "val":
        return (f"the epoch with the best {score} on {num_val} identities held out of the training split "
                f"(evaluated {cadence}); the test split is evaluated once, at the end")
    if select == "test":
        return (f"the epoch with the best {score} on the TEST split (evaluated {cadence}), as the paper's code "
                "did: an optimistic number, not a clean estimate")
    raise ValueError(f"select_on must be one of 'val', 'test', 'last' (or None), got {select!r}")


def describe_recipe(train: Mapping[str, Any], *, stage: str = "train", image_size: tuple[int, int] | None = None,
                    model_name: str | None = None, model_label: str | None = None, dataset_label: str | None = None,
                    pretrained: str | None = None, model_kwargs: Mapping[str, Any] | None = None,
                    source_label: str | None = None) -> str:
    """Markdown describing the recipe in ``train`` (a profile's merged ``training`` or ``finetune`` block).

    Args:
        train: the block as the notebook received it; ``transforms`` and ``loss_kwargs`` may be nested in it.
        stage: ``"train"`` (defaults of :class:`TrainConfig`) or ``"finetune"`` (the fine-tuning stage's defaults).
        image_size: ``(height, width)`` in pixels the images are resized to.
        model_name: the registry name (``"mnv3_siamese"`` ...): says what ``paper_code=True`` changes in the loss.
        model_label, dataset_label: names for the heading line (optional).
        pretrained: the weights the model starts from (a path or ``"imagenet"``); None: random init.
        model_kwargs: the model's build options (``paper_code``, ``bnneck``, ``zero_init_residual``, ``metric_feat``
            are described).
        source_label: for fine-tuning, where the model was trained before (e.g. ``"CUHK03-NP"``).

    Returns: a markdown string, a heading sentence and one bullet per part of the recipe.
    """
    recipe = _recipe(train, stage)
    kwargs = dict(model_kwargs or {})
    epochs = int(recipe["epochs"])
    who = model_label or "The model"
    where = f" on {dataset_label}" if dataset_label else ""
    if stage == "finetune":
        head = (f"**{who}**, trained on {source_label or 'the source dataset'}, fine-tuned{where}: its classifier is "
                "rebuilt for the target's identities and trained with this recipe.")
    elif epochs == 0:
        init = _init_words(pretrained)
        return (f"**{who}**{where}: no training. The weights ({init}) are evaluated as they were loaded, "
                "a reference row.")
    else:
        head = f"**{who}** trained{where} with this recipe."
    lines = [head, ""]
    if stage == "train":
        after = kwargs.get("metric_feat") == "after"
        neck = ("a BNNeck (triplet, center and ID losses all after it)" if after
                else "a BNNeck (triplet before it, ID loss after it)")
        identity = "every residual block starting as the identity"
        build = [w for k, w in (("bnneck", neck), ("zero_init_residual", identity)) if kwargs.get(k)]
        if after and not kwargs.get("bnneck"):
            build.append("the triplet and center losses on the features after the BNNeck")
        if kwargs.get("paper_code"):
            build.append("the paper code's architecture (`paper_code=True`)")
        lines.append(f"- **Start**: {_init_words(pretrained)}" + (f"; {', '.join(build)}" if build else ""))
    if image_size is not None:
        size = f"{int(image_size[0])}×{int(image_size[1])} px (height × width)"
    else:
        size = f"{int(recipe['height'])}×{int(recipe['width'])} px (height × width)"
    p, k = int(recipe["batch_size"]) // int(recipe["num_instances"]), int(recipe["num_instances"])
    lines.append(f"- **Batches**: P×K = {p}×{k} ({p * k} images: {k} of each of {p} identities), images at {size}")
    low_res = int(recipe.get("low_res_epochs") or 0)
    if low_res:
        h, w = (int(v) for v in recipe["low_res_size"])
        first = "the first epoch trains" if low_res == 1 else f"the first {low_res} epochs train"
        lines.append(f"- **Low resolution first**: {first} on batches downscaled to {h}×{w} px (progressive "
                     "resizing); later epochs, model selection and the test use the full size")
    sigmoid = bool(kwargs.get("paper_code")) and model_name == "mnv3_siamese"
    lines.append(f"- **Loss**: {describe_loss(recipe, sigmoid_logits=sigmoid)}")
    opt = OPTIMIZER_WORDS.get(str(recipe["optimizer"]).lower(), str(recipe["optimizer"]))
    opt = opt.format(momentum=float(recipe["momentum"]))
    lines.append(f"- **Optimizer**: {opt}, weight decay {_num(recipe['weight_decay'])}")
    lines.append(f"- **Schedule**: {describe_schedule(recipe)}")
    head_only = int(recipe.get("head_only_epochs") or 0)
    if head_only:
        first = "the first epoch trains" if head_only == 1 else f"the first {head_only} epochs train"
        lines.append(f"- **Head first**: {first} only the new classifier and neck; the backbone and its BatchNorm "
                     "statistics stay fixed")
    frozen = list(recipe.get("frozen_layers") or ())
    if frozen:
        lines.append(f"- **Frozen**: {', '.join(f'`{n}`' for n in frozen)} never train")
    lines.append(f"- **Augmentation**: {describe_augmentation(recipe)}")
    lines.append(f"- **Selection**: {describe_selection(recipe)}")
    guard = recipe.get("max_minutes")
    if guard is not None and math.isfinite(float(guard)):
        lines.append(f"- **Time guard**: the run stops early if it would pass {float(guard):g} minutes of wall "
                     "clock (a cut run is flagged in the report)")
    return "\n".join(lines) + "\n"


def _init_words(pretrained: str | None) -> str:
    if not pretrained:
        return "random initialisation"
    if str(pretrained) == "imagenet":
        return "ImageNet weights"
    name = str(pretrained).replace("\\", "/").rsplit("/", 1)[-1]
    return f"the weights in `{name}`"
