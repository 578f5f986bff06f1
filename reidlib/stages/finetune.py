"""Stage ``20_finetune``: a trained model fine-tuned on the other domain, zero-shot reported beside it.

The classifier is rebuilt for the target's identities on the module that runs, the optimizer is built after
that, the new head can train alone first (``head_only_epochs``), and nothing is written to the source run.
"""
from __future__ import annotations

from .common import load_dataset, read_metrics
from .train import (
    Outcome,
    evaluate_split,
    fit_kwargs,
    prepare_work_dir,
    require_full_schedule,
    test_transform,
    train_info,
)


def finetune_and_test(*, source_metrics: str, target: dict, finetune: dict, evaluation: dict, image_size,
                      work_dir: str, seed: int = 0, device: str = "auto", precision: str = "auto",
                      num_workers: int = 0, run_key: str | None = None) -> Outcome:
    """Fine-tune a trained model (found through its ``metrics.json``) on ``target``; report zero-shot beside it."""
    from reidlib.engine import finetune as engine_finetune
    from reidlib.engine import load_model
    from reidlib.runtime import resolve_device, seed_everything

    src = read_metrics(source_metrics)
    if not src.get("checkpoint"):
        raise ValueError(f"{source_metrics} records no checkpoint (a run with epochs: 0 cannot be fine-tuned)")
    work = prepare_work_dir(work_dir, run_key)
    seed_everything(seed)
    dev = resolve_device(device)
    ds = load_dataset(target)
    test_tf = test_transform(image_size)
    source_model = load_model(src["checkpoint"]).eval()
    zero, _ = evaluate_split(source_model, ds, test_tf, evaluation, dev, precision, num_workers, "zero-shot",
                              target.get("label", ds.name), None, "target")
    del source_model
    kwargs = fit_kwargs(finetune, image_size, dev, precision, seed, num_workers, evaluation)
    res = engine_finetune(src["checkpoint"], ds, out_dir=work, head_only_epochs=int(kwargs.pop("head_only_epochs", 0)),
                          **kwargs)
    require_full_schedule(res)
    model = res.model.eval()
    tuned, paths = evaluate_split(model, ds, test_tf, evaluation, dev, precision, num_workers, "fine-tuned",
                                   target.get("label", ds.name), work / "features", "target")
    info = train_info(res, image_size, dev, seed)
    info.update(init=f"fine-tuned from {src.get('model_run')} trained on {src.get('dataset_key')}",
                source_checkpoint=src["checkpoint"])
    return Outcome(src["model_name"], target.get("label", ds.name), res.history,
                   {"zero-shot": zero, "fine-tuned": tuned}, info, str(res.checkpoint), {"target": paths},
                   src.get("complexity", {}))
