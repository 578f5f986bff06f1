"""The report's variants table: a variant that repeats a whole model entry of the profile is named by its label."""
from __future__ import annotations


def test_a_variant_repeating_a_whole_model_entry_is_named_by_its_label_in_the_variants_table():
    from reidlib.stages.seeds import _changes

    entry = {"name": "osnet_x0_25", "run": "osnet_x0_25_msmt17", "label": "OSNet x0.25 (MSMT17 init)",
             "pretrained": "/shared/weights/osnet_x0_25_msmt17.pth", "train_on": ["cuhk03"], "seeds": [0],
             "train": {"epochs": 40, "warmup_epochs": 0, "num_val_ids": 0, "select_on": "last", "max_minutes": 150}}
    assert _changes({"precision": "fp32", "models": [entry], "finetune": None}) == (
        'precision: "fp32"; models: [OSNet x0.25 (MSMT17 init)] (in full in the profile); finetune: null')
    short = {"models": [{"name": "bot_resnet50", "run": "bot_resnet50", "kwargs": {"zero_init_residual": True}}]}
    assert _changes(short) == ('models: [{"name": "bot_resnet50", "run": "bot_resnet50", "kwargs": '
                               '{"zero_init_residual": true}}]')
