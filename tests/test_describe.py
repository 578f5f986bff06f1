"""reidlib.stages.describe: the recipe text of the training and fine-tuning notebooks says what the run did.

Checked on every training and fine-tuning run the shipped profiles plan (the parameters papermill injects), and
on hand-written blocks whose wording is known exactly.
"""
from __future__ import annotations

import pytest

from reidlib.pipeline import list_profiles, load_profile, plan
from reidlib.stages.describe import describe_recipe


def _text(run) -> tuple[dict, str]:
    p = run.parameters
    if run.stage == "10_train":
        block = p["train"]
        text = describe_recipe(block, image_size=p["image_size"], model_name=p["model_name"],
                               model_label=p["model_label"], dataset_label=p["dataset"]["label"],
                               pretrained=p.get("pretrained"), model_kwargs=p.get("model_kwargs"))
    else:
        block = p["finetune"]
        text = describe_recipe(block, stage="finetune", image_size=p["image_size"], model_label=p["model_label"],
                               dataset_label=p["target"]["label"], source_label=p["source_key"])
    return block, text


@pytest.fixture(scope="module")
def shipped_runs() -> list:
    runs = []
    for name in list_profiles():
        runs += [r for r in plan(load_profile(name)) if r.stage in ("10_train", "20_finetune")]
    return runs


def test_every_shipped_training_block_is_described_as_it_runs(shipped_runs):
    profiles = {r.parameters["profile"] for r in shipped_runs}
    assert {"default", "cpu-real", "cpu-full", "paper"} <= profiles
    for run in shipped_runs:
        block, text = _text(run)
        merged = {**block, **(block.get("transforms") or {})}
        loss = block.get("loss_kwargs") or {}
        where = f"{run.parameters['profile']}:{run.id}"
        if int(block.get("epochs", 1)) == 0:
            assert "no training" in text, where
            continue
        erasing = float(merged.get("erasing_p", 0.5)) > 0
        assert ("random erasing" in text) == erasing, where
        cosine = block.get("scheduler") == "cosine"
        assert ("cosine decay" in text) == cosine, where
        if cosine:
            assert "step decay" not in text, where
        if "warmup_epochs" in block:
            assert ("no warm-up" in text) == (int(block["warmup_epochs"]) == 0), where
        select = block.get("select_on")
        if select == "last":
            assert "the last epoch is kept" in text and "held out" not in text.split("Selection")[1], where
        if select == "val":
            assert f"on {int(block['num_val_ids'])} identities held out of the training split" in text, where
        if select == "test":
            assert "on the TEST split" in text, where
        assert ("batch-hard triplet" in text) == (float(loss.get("triplet_weight", 1)) > 0), where
        assert ("center loss" in text) == (float(block.get("center_weight", 5e-4)) > 0), where
        assert ("ramped in" in text) == (int(block.get("metric_warmup_epochs", 0)) > 0
                                         and ("batch-hard triplet" in text or "center loss" in text)), where
        assert ("on cosine distances" in text) == (loss.get("metric") == "cosine"
                                                   and float(loss.get("triplet_weight", 1)) > 0), where
        assert f"{int(block['epochs'])} epoch" in text, where


def test_the_headline_run_reads_as_its_parameters(shipped_runs):
    run = next(r for r in shipped_runs if r.parameters["profile"] == "cpu-real" and r.stage == "10_train"
               and r.parameters["dataset_key"] == "cuhk03" and r.parameters.get("pretrained"))
    _, text = _text(run)
    assert "- **Schedule**: 40 epochs at lr 1.5e-3, no warm-up, then cosine decay to 0 by the last epoch" in text
    assert "- **Optimizer**: Adam with AMSGrad, weight decay 5e-4" in text
    assert "- **Augmentation**: horizontal flip (p 0.5), zero-pad 10 px + random crop back to size" in text
    assert "every training identity trains" in text
    assert "osnet_x0_25_msmt17.pth" in text and "256×128 px" in text


def test_the_paper_recipe_word_for_word():
    block = {"epochs": 120, "optimizer": "adam", "lr": 3.5e-4, "scheduler": "warmup_multistep", "warmup_epochs": 10,
             "milestones": [40, 70], "num_val_ids": 50, "eval_every": 10, "select_on": "val",
             "transforms": {"flip_p": 0.5, "pad": 10, "color_jitter": 0.1, "erasing_p": 0.5}}
    text = describe_recipe(block, image_size=(256, 128), pretrained="imagenet", model_label="BoT ResNet50")
    assert text.startswith("**BoT ResNet50** trained with this recipe.\n")
    assert ("- **Loss**: label-smoothed cross-entropy (ε 0.1) + batch-hard triplet (margin 0.3) + 5e-4 × center "
            "loss (centres trained by their own SGD, lr 0.5)") in text
    assert ("- **Schedule**: 120 epochs at lr 3.5e-4, linear warm-up over the first 10 epochs from ×0.01, then "
            "step decay: ×0.1 after epochs 40 and 70") in text
    assert ("random erasing (p 0.5" in text and "colour jitter (0.1" in text and "ImageNet weights" in text
            and "P×K = 16×4" in text)
    assert ("the epoch with the best mean of rank-1 and mAP on 50 identities held out of the training split "
            "(evaluated every 10 epochs and after the last)") in text
    assert "Time guard" not in text  # no max_minutes in this block


def test_an_empty_block_is_trainconfig_defaults_and_finetune_its_own():
    text = describe_recipe({})
    assert "120 epochs at lr 3.5e-4, linear warm-up over the first 10 epochs from ×0.01" in text
    assert "×0.1 after epochs 40 and 70" in text and "random erasing (p 0.5" in text
    assert "the last epoch is kept" in text  # no num_val_ids: nothing to select on
    tune = describe_recipe({"epochs": 10, "lr": 3.5e-4}, stage="finetune", source_label="Market-1501",
                           dataset_label="DukeMTMC-reID", model_label="OSNet x0.25")
    assert "trained on Market-1501, fine-tuned on DukeMTMC-reID" in tune
    assert "10 epochs at lr 3.5e-4, no warm-up, a constant lr" in tune and "Head first" not in tune
    tune = describe_recipe({"epochs": 10, "head_only_epochs": 1}, stage="finetune")
    assert "the first epoch trains only the new classifier and neck" in tune
    assert "Low resolution" not in text
    prog = describe_recipe({"epochs": 20, "low_res_epochs": 10, "low_res_size": [192, 96]}, image_size=(256, 128))
    assert ("- **Low resolution first**: the first 10 epochs train on batches downscaled to 192×96 px (progressive "
            "resizing); later epochs, model selection and the test use the full size") in prog


def test_milestones_past_the_last_epoch_and_the_loss_variants():
    text = describe_recipe({"epochs": 30, "warmup_epochs": 0, "milestones": [20, 40, 70], "gamma": 0.5})
    assert "no warm-up, then step decay: ×0.5 after epoch 20" in text
    text = describe_recipe({"epochs": 5, "warmup_epochs": 0, "milestones": []})
    assert "no warm-up, a constant lr" in text
    text = describe_recipe({"epochs": 1, "warmup_epochs": 1, "milestones": [1]})
    assert "1 epoch at lr 3.5e-4, linear warm-up over the first epoch from ×0.01, then a constant lr" in text
    ce_only = describe_recipe({"center_weight": 0.0, "label_smooth": 0.0, "loss_kwargs": {"triplet_weight": 0.0}})
    assert "- **Loss**: cross-entropy\n" in ce_only
    frozen = describe_recipe({"train_centers": False, "optimizer": "sgd", "momentum": 0.9})
    assert "centres frozen at their random start" in frozen and "SGD with momentum 0.9" in frozen
    mnv3 = describe_recipe({}, model_name="mnv3_siamese", model_kwargs={"paper_code": True})
    osnet = describe_recipe({}, model_name="osnet_x0_25", model_kwargs={"paper_code": True, "bnneck": False})
    assert "sigmoid" in mnv3 and "sigmoid" not in osnet and "`paper_code=True`" in osnet
    assert "no augmentation" not in describe_recipe({"transforms": {"flip_p": 0, "pad": 0, "erasing_p": 0}})
    assert "- **Augmentation**: none (resize only)" in describe_recipe(
        {"transforms": {"flip_p": 0, "pad": 0, "erasing_p": 0}})


def test_the_from_scratch_options_are_named():
    text = describe_recipe({"metric_warmup_epochs": 4, "loss_kwargs": {"metric": "cosine"}})
    assert ("- **Loss**: label-smoothed cross-entropy (ε 0.1) + batch-hard triplet (margin 0.3) on cosine distances "
            "(1 - cos of the features) + 5e-4 × center loss (centres trained by their own SGD, lr 0.5); the triplet "
            "and center terms ramped in: off for the first 4 epochs, then raised linearly to full weight over 4 "
            "epochs more\n") in text
    soft = describe_recipe({"triplet_margin": None, "center_weight": 0.0, "metric_warmup_epochs": 1})
    assert ("soft-margin batch-hard triplet; the triplet term ramped in: off for the first epoch, then raised "
            "linearly to full weight over 1 epoch more") in soft
    ce_only = describe_recipe({"center_weight": 0.0, "metric_warmup_epochs": 5, "loss_kwargs": {"triplet_weight": 0}})
    assert "ramped" not in ce_only and "cosine distances" not in ce_only
    centre_only = describe_recipe({"metric_warmup_epochs": 2, "loss_kwargs": {"triplet_weight": 0}})
    assert "; the center term ramped in: off for the first 2 epochs" in centre_only
    after = describe_recipe({}, model_kwargs={"bnneck": True, "metric_feat": "after"})
    assert "- **Start**: random initialisation; a BNNeck (triplet, center and ID losses all after it)\n" in after
    mnv3 = describe_recipe({}, model_kwargs={"metric_feat": "after"})
    assert "random initialisation; the triplet and center losses on the features after the BNNeck\n" in mnv3
    assert "(triplet before it, ID loss after it)" in describe_recipe({}, model_kwargs={"bnneck": True})


def test_a_reference_row_and_bad_blocks():
    text = describe_recipe({"epochs": 0}, pretrained="/w/osnet_x0_25_market1501.pth", model_label="OSNet")
    assert "no training" in text and "`osnet_x0_25_market1501.pth`" in text and "Schedule" not in text
    with pytest.raises(ValueError, match="no loss term"):
        describe_recipe({"center_weight": 0, "loss_kwargs": {"id_weight": 0, "triplet_weight": 0}})
    with pytest.raises(ValueError, match="stage must be one of"):
        describe_recipe({}, stage="20_finetune")
    with pytest.raises(TypeError, match="got list"):
        describe_recipe([("epochs", 3)])
    with pytest.raises(ValueError, match="select_on must be one of"):
        describe_recipe({"select_on": "best"})


def test_the_epoch_log_line_gives_percentages_with_one_decimal():
    from reidlib.engine.trainer import _summary

    row = {"epoch": 3, "lr": 1.5e-3, "loss": 2.5, "loss_id": 2.0, "train_acc": 0.9876, "images_per_s": 120.0,
           "epoch_seconds": 50.0, "val_rank1": 0.44, "val_mAP": 0.40737, "select_score": 0.42}
    assert _summary(row) == ("epoch 3 | lr 1.50e-03 | loss 2.5000 | id 2.0000 | train acc 98.8% | 120.0 img/s | "
                             "50.0 s | held-out R1 44.0% | held-out mAP 40.7%")
    row = {**{k: v for k, v in row.items() if not k.startswith("val_")}, "test_rank1": 0.0123}
    assert _summary(row).endswith("| 50.0 s | test R1 1.2%")


def test_no_notebook_cell_ends_in_a_value_nobody_asked_to_see():
    """A cell whose last statement writes a file or shows a figure would print its return value (``Out[4]: Path``)."""
    import ast
    import json

    from reidlib.paths import NOTEBOOKS_DIR

    quiet = {"write_metrics", "show_figure", "write_json"}
    for path in sorted(NOTEBOOKS_DIR.glob("*.ipynb")):
        for cell in json.loads(path.read_text())["cells"]:
            src = "".join(cell["source"]).rstrip()
            if cell["cell_type"] != "code" or not src:
                continue
            last = ast.parse(src).body[-1]
            if isinstance(last, ast.Expr) and isinstance(last.value, ast.Call):
                func = last.value.func
                name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
                assert name not in quiet or src.endswith(";"), f"{path.name} cell {cell.get('id')}: end it with ';'"
    describe_cells = [c for nb in ("10_train", "20_finetune")
                      for c in json.loads((NOTEBOOKS_DIR / f"{nb}.ipynb").read_text())["cells"]
                      if "describe.describe_recipe(" in "".join(c["source"])]
    assert len(describe_cells) == 2
