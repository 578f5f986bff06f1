"""One evaluation setting and one embed-then-rank path for model selection, the stages' tests and retrieval.

Hand-computed rankings on tiny two-colour images; a one-epoch fit whose selection numbers must equal the stage's
test evaluation of the same model under the same settings.
"""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision import transforms

from reidlib.data import build_dataset
from reidlib.engine import TrainConfig, fit, load_checkpoint
from reidlib.engine.checkpoint import save_checkpoint
from reidlib.engine.evaluate import evaluate_model
from reidlib.evaluation import EvalSettings, embed_and_rank
from reidlib.evaluation.retrieval import embed_images
from reidlib.stages import train as train_stage

# the profiles' evaluation block as the shipped base states it
BASE_EVALUATION = {"flip": True, "metric": "euclidean", "normalize": True, "max_rank": 50, "rerank": False}


pytestmark = pytest.mark.usefixtures("one_torch_thread")  # small models on a shared 2-core machine


class LeftHalfRed(torch.nn.Module):
    """Embedding = (mean red of the left half, 0): a mirror image sees the right half instead."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        red = x[:, 0, :, : x.shape[3] // 2].mean(dim=(1, 2))
        return torch.stack([red, torch.zeros_like(red)], dim=1)


def _two_tone(path: Path, left: int, right: int) -> str:
    img = np.zeros((8, 4, 3), dtype=np.uint8)
    img[:, :2, 0], img[:, 2:, 0] = left, right
    Image.fromarray(img).save(path)
    return str(path)


@pytest.fixture()
def two_tone(tmp_path):
    """Query: red 200 | 0 (pid 1). Gallery: 0 | red 200 (pid 1, its mirror) and a flat red 120 (pid 2)."""
    query = [(_two_tone(tmp_path / "q1.png", 200, 0), 1, 0)]
    gallery = [(_two_tone(tmp_path / "g1.png", 0, 200), 1, 1), (_two_tone(tmp_path / "g2.png", 120, 120), 2, 1)]
    return query, gallery


def test_settings_decide_the_ranking_by_hand(two_tone):
    # no flip: q = 200/255, true match 0, impostor 120/255 -> the impostor first: R1 0, AP 1/2
    # flip: q = true match = 100/255, impostor 120/255 -> the true match first: R1 1, AP 1
    query, gallery = two_tone
    tf = transforms.ToTensor()
    plain = embed_and_rank(LeftHalfRed(), query, gallery, EvalSettings(flip=False, normalize=False, batch_size=1),
                           transform=tf, keep_features=True)
    assert plain.query.feats[0, 0].item() == pytest.approx(200 / 255, abs=1e-6)
    assert plain.gallery.feats[:, 0].tolist() == pytest.approx([0.0, 120 / 255], abs=1e-6)
    assert (plain.result["cmc"][0], plain.result["mAP"]) == (0.0, pytest.approx(0.5))
    assert plain.num_images == 3
    flipped = embed_and_rank(LeftHalfRed(), query, gallery, {"flip": True, "normalize": False}, transform=tf)
    assert (flipped.result["cmc"][0], flipped.result["mAP"]) == (1.0, pytest.approx(1.0))
    assert flipped.query is None and flipped.gallery is None
    assert flipped.result["metric"] == "euclidean" and flipped.result["normalize"] is False
    # the model-selection summary goes through the same path
    summary = evaluate_model(LeftHalfRed(), query, gallery, EvalSettings(flip=False, normalize=False, max_rank=2),
                             transform=tf, device="cpu")
    assert (summary["rank1"], summary["mAP"], summary["cmc"]) == (0.0, pytest.approx(0.5), [0.0, 1.0])
    assert "rank5" not in summary
    # retrieval embeds through the same code
    feats = embed_images(LeftHalfRed(), [p for p, _, _ in gallery], transform=tf, flip=False, device="cpu")
    assert torch.equal(feats.feats, plain.gallery.feats)


def test_settings_from_a_profile_block_and_their_errors():
    base = EvalSettings.from_mapping(BASE_EVALUATION)
    assert base == EvalSettings() == TrainConfig().evaluation  # shipped profiles: selection = test = the old default
    assert base.rerank is None
    assert EvalSettings(rerank=True).rerank == {"method": "k-reciprocal"}
    assert EvalSettings(rerank="aqe").rerank == {"method": "aqe"}
    assert EvalSettings(rerank={"k1": 10}).rerank == {"method": "k-reciprocal", "k1": 10}
    assert EvalSettings(rerank={}).rerank is None
    assert EvalSettings.from_mapping(base, ci=0.9).ci == 0.9
    with pytest.raises(ValueError, match=r"unknown evaluation setting\(s\) \['flipp', 'metrik'\]"):
        EvalSettings.from_mapping({"flipp": True, "metrik": "cosine"})
    with pytest.raises(ValueError, match="unknown metric 'cosin'"):
        EvalSettings(metric="cosin")
    with pytest.raises(ValueError, match="batch_size must be an integer >= 1, got 0"):
        EvalSettings(batch_size=0)
    with pytest.raises(ValueError, match="flip must be true or false, got 'yes'"):
        EvalSettings(flip="yes")
    with pytest.raises(ValueError, match="rerank method"):
        EvalSettings(rerank="kreciprocal")
    with pytest.raises(ValueError, match="ci must be a confidence level"):
        EvalSettings(ci=95)


def test_trainer_takes_the_settings_and_refuses_two_answers():
    cfg = TrainConfig.from_kwargs(evaluation={"metric": "cosine", "flip": False, "rerank": "aqe", "batch_size": 7})
    assert (cfg.metric, cfg.eval_flip, cfg.eval_rerank, cfg.test_batch_size) == ("cosine", False, {"method": "aqe"}, 7)
    assert cfg.evaluation == EvalSettings(metric="cosine", flip=False, rerank="aqe", batch_size=7)
    with pytest.raises(ValueError, match=r"evaluation= and the option\(s\) \['metric'\] disagree"):
        TrainConfig.from_kwargs(metric="euclidean", evaluation={"metric": "cosine"})
    with pytest.raises(ValueError, match="unknown metric"):
        TrainConfig(metric="cosin")
    with pytest.raises(ValueError, match=r"the training block sets \['eval_flip'\], which the evaluation block"):
        train_stage.fit_kwargs({"epochs": 1, "eval_flip": True}, (64, 32), "cpu", "fp32", 0, 0, {"flip": False})


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    return build_dataset("synthetic", tmp_path_factory.mktemp("data") / "s", num_ids=16, domain=0, seed=0,
                         num_cams=2, images_per_id_per_cam=2, height=64, width=32)


TRAIN = {"epochs": 1, "batch_size": 16, "num_instances": 4, "warmup_epochs": 0, "milestones": [1],
         "select_on": "test", "eval_every": 1, "progress": False}


def _fit(ds, out: Path, evaluation: dict):
    kwargs = train_stage.fit_kwargs(TRAIN, (64, 32), "cpu", "fp32", 0, 0, evaluation)
    return fit("osnet_x0_25", ds, out_dir=out, model_kwargs={"feature_dim": 32}, **kwargs)


@pytest.mark.parametrize("evaluation", [
    BASE_EVALUATION,
    {"metric": "cosine", "flip": False, "normalize": False, "max_rank": 10, "batch_size": 5},
], ids=["profile-default", "cosine-no-flip"])
def test_selection_and_the_stage_test_compute_the_same_numbers(synth, tmp_path, evaluation):
    res = _fit(synth, tmp_path / "run", evaluation)
    settings = EvalSettings.from_mapping(evaluation)
    assert TrainConfig(**res.config).evaluation == settings
    row = res.history[0]  # selection on the test split, epoch 1 = the selected model
    record, _ = train_stage.evaluate_split(res.model, synth, train_stage.test_transform((64, 32)), evaluation,
                                           torch.device("cpu"), "fp32", 0, "test", "S", None, "test")
    assert row["test_rank1"] * 100 == record["R1"] and row["test_mAP"] * 100 == record["mAP"]
    assert row["test_mINP"] * 100 == record["mINP"]
    assert (record["metric"], record["flip"], record["normalize"]) == (settings.metric, settings.flip,
                                                                        settings.normalize)
    if evaluation is not BASE_EVALUATION:  # the non-default setting really reached selection
        other = evaluate_model(res.model, synth.query, synth.gallery, height=64, width=32, device="cpu",
                               precision="fp32")
        assert other["mAP"] != row["test_mAP"]


def test_a_checkpoint_from_before_the_evaluation_fields_resumes(synth, tmp_path):
    res = _fit(synth, tmp_path / "run", BASE_EVALUATION)
    last = tmp_path / "run" / "last.pt"
    state = load_checkpoint(last)
    for key in ("eval_normalize", "eval_max_rank", "eval_rerank"):
        del state["config"][key]
    save_checkpoint(state, last)
    again = _fit(synth, tmp_path / "run", BASE_EVALUATION)  # resumes at epoch 1 of 1: nothing left to train
    assert again.history[0]["test_mAP"] == res.history[0]["test_mAP"]


def test_fine_tune_selection_runs_under_the_profiles_evaluation_block(tmp_path, monkeypatch):
    """The fine-tune stage hands its ``evaluation:`` block to the trainer, as the training stage does."""
    import reidlib.engine
    from reidlib.stages import finetune as stage

    seen = {}

    class Stop(Exception):
        pass

    def fake_finetune(checkpoint, ds, **kwargs):
        seen.update(kwargs)
        raise Stop

    monkeypatch.setattr(stage, "read_metrics", lambda path: {"checkpoint": "src.pt", "model_name": "m"})
    monkeypatch.setattr(stage, "load_dataset", lambda spec: SimpleNamespace(name="target"))
    monkeypatch.setattr(stage, "evaluate_split", lambda *a, **k: ({}, {}))
    monkeypatch.setattr(reidlib.engine, "load_model", lambda path: torch.nn.Identity())
    monkeypatch.setattr(reidlib.engine, "finetune", fake_finetune)
    evaluation = {"metric": "cosine", "normalize": False, "flip": False, "max_rank": 10, "batch_size": 5}
    with pytest.raises(Stop):
        stage.finetune_and_test(source_metrics="m.json", target={"label": "T"}, finetune={"epochs": 1},
                                evaluation=evaluation, image_size=[32, 16], work_dir=str(tmp_path / "w"))
    assert (seen["metric"], seen["eval_normalize"], seen["eval_flip"]) == ("cosine", False, False)
    assert (seen["eval_max_rank"], seen["test_batch_size"]) == (10, 5)
