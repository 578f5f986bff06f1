"""The profile specs are dataclasses, and their annotations and field rules alone drive validation."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import pytest

from reidlib import pipeline
from reidlib.pipeline import schema, specs
from reidlib.pipeline.schema import Problems, ProfileError, build, resolved, rule

SMOKE = {k: v for k, v in pipeline.profile.read_profile(pipeline.PARAMS_DIR / "smoke.yaml")[0].items() if k != "name"}


@dataclass(kw_only=True)
class Toy:
    """A spec made up for these tests: one field per kind of rule."""

    count: int = rule(3, min=1)
    rate: float = rule(0.5, min=0, max=1)
    step: float = rule(1.0, min=0, min_inclusive=False)
    mode: str = rule("fast", choices=("fast", "slow"), lower=True)
    tags: list[str] = rule(factory=list)
    name: str = rule(doc="required")
    title: str = rule(default_from="name")


def _build(cls, block):
    ck = Problems("toy.yaml")
    spec = build(cls, block, "toy", ck)
    return spec, ck.errors


def test_annotations_type_and_coerce_the_values():
    spec, errors = _build(Toy, {"name": "a", "count": 2.0, "rate": "1e-1", "mode": "SLOW", "tags": ["x"]})
    assert errors == []
    assert (spec.count, spec.rate, spec.mode, spec.tags, spec.title) == (2, 0.1, "slow", ["x"], "a")
    assert isinstance(spec.count, int) and isinstance(spec.rate, float)
    assert spec.step == 1.0 and spec.given_keys == ("name", "count", "rate", "mode", "tags")


def test_every_problem_of_a_block_is_reported_at_once():
    _, errors = _build(Toy, {"count": 0, "rate": 1.5, "step": 0, "mode": "fsat", "tags": "x", "cuont": 1})
    assert errors == [
        "toy: unknown key 'cuont'; did you mean 'count'? (known: count, mode, name, rate, step, tags, title)",
        "toy: lacks the required key 'name' (see params/default.yaml for a complete profile)",
        "toy.count: must be >= 1, got 0",
        "toy.rate: must be between 0 and 1, got 1.5",
        "toy.step: must be > 0, got 0.0",
        "toy.mode: unknown value 'fsat'; did you mean 'fast'? (choose one of fast, slow)",
        "toy.tags: must be a list, got 'x'",
    ]


def test_yaml_ambiguities_are_named():
    _, errors = _build(Toy, {"name": "a", "count": "16", "rate": "fast"})
    assert errors == ["toy.count: must be an integer, got the string '16' (remove the quotes)",
                      "toy.rate: must be a number, got 'fast'"]


def test_adding_a_field_to_a_spec_makes_its_key_accepted_with_its_range():
    block = {"flip": False, "top_k": 5}
    _, errors = _build(specs.EvalSpec, block)
    assert errors[0].startswith("toy: unknown key 'top_k'")

    wider = dataclasses.make_dataclass(
        "WiderEval", [("top_k", int, rule(10, min=0, min_inclusive=False))], bases=(specs.EvalSpec,), kw_only=True)
    spec, errors = _build(wider, block)
    assert errors == [] and spec.top_k == 5 and spec.flip is False
    assert resolved(spec) == {"flip": False, "top_k": 5}  # an evaluation block keeps only what it wrote
    _, errors = _build(wider, {"top_k": -2})
    assert errors == ["toy.top_k: must be > 0, got -2"]


def test_a_new_study_field_is_a_new_top_level_key(monkeypatch):
    with pytest.raises(ProfileError, match=r"profile: unknown key 'budget'"):
        specs.check_profile({**SMOKE, "budget": 3}, "p.yaml")
    study = dataclasses.make_dataclass("BudgetStudy", [("budget", int, rule(1, given_only=True))],
                                       bases=(specs.Study,), kw_only=True)
    monkeypatch.setattr(specs, "Study", study)
    monkeypatch.setattr(specs, "TOP_KEYS", specs.TOP_KEYS | {"budget"})
    assert specs.check_profile({**SMOKE, "budget": 3}, "p.yaml")["budget"] == 3
    with pytest.raises(ProfileError, match=r"budget: must be >= 0, got -1"):
        specs.check_profile({**SMOKE, "budget": -1}, "p.yaml")


def test_the_resolved_profile_fills_the_defaults_the_plan_reads_and_keeps_blocks_as_written():
    cfg = specs.check_profile({**SMOKE, "models": [{"name": "osnet_x0_25"}]}, "p.yaml")
    assert cfg["models"] == [{"name": "osnet_x0_25", "run": "osnet_x0_25", "label": "osnet_x0_25", "kwargs": {},
                              "pretrained": None, "train_on": ["synth-a"], "image_size": [64, 32], "train": {}}]
    assert cfg["datasets"]["synth-a"]["root"] == "smoke-a" and cfg["zero_shot"] == ["synth-b"]
    assert (cfg["seed"], cfg["num_workers"], cfg["real_data"]) == (0, 0, False)
    assert cfg["evaluation"] == SMOKE["evaluation"]      # the stages apply EvalSpec's defaults themselves
    assert cfg["distance_study"] == SMOKE["distance_study"] and "verification" not in cfg["distance_study"]


def test_study_builds_typed_specs():
    study = specs.build_study(SMOKE, "smoke.yaml")
    assert isinstance(study.models[1], specs.ModelSpec) and study.models[1].kwargs == {"bnneck": True}
    assert isinstance(study.datasets["synth-b"], specs.DatasetSpec) and study.datasets["synth-b"].label == "Synthetic B"
    assert isinstance(study.evaluation, specs.EvalSpec) and study.evaluation.max_rank == 20
    assert isinstance(study.finetune, specs.FinetuneSpec) and study.finetune.recipe["head_only_epochs"] == 1


def test_evaluation_defaults_are_the_stages_settings():
    from reidlib.evaluation.embed_rank import EvalSettings

    defaults = specs.spec_defaults(specs.EvalSpec)
    settings = EvalSettings()
    assert defaults == {k: getattr(settings, k) for k in defaults}
    assert set(defaults) == {"flip", "metric", "normalize", "max_rank", "rerank", "batch_size"}
    shown = specs.with_defaults(pipeline.load_profile("smoke"))["evaluation"]
    assert shown == {**defaults, **SMOKE["evaluation"]} and shown["batch_size"] == settings.batch_size


def test_recipe_keys_follow_train_config_and_their_ranges_the_recipe_rules():
    ck = Problems("p")
    recipe = specs.check_recipe({"lr": "2e-4", "optimizer": "SGD", "milestones": [3, -1], "flip_p": 2,
                                 "transforms": {"pad": -1}}, "training", ck)
    assert recipe == {"lr": 2e-4, "optimizer": "sgd", "milestones": [3, -1], "flip_p": 2, "transforms": {"pad": -1}}
    assert ck.errors == ["training.milestones[1]: must be >= 0, got -1",
                         "training.flip_p: must be between 0 and 1, got 2.0",
                         "training.transforms.pad: must be >= 0, got -1"]


def test_the_old_import_path_still_names_the_same_objects():
    assert schema.check_profile is specs.check_profile and schema.with_defaults is specs.with_defaults
    assert pipeline.MODEL_KEYS == {"name", "run", "label", "kwargs", "pretrained", "train_on", "image_size", "train",
                                  "seeds"}


def test_a_recipe_key_that_the_evaluation_block_decides_must_agree_with_it():
    same = {**SMOKE, "training": {**SMOKE["training"], "metric": "euclidean", "test_batch_size": 128}}
    assert specs.check_profile(same, "p.yaml")["training"]["metric"] == "euclidean"
    other = {**SMOKE, "training": {**SMOKE["training"], "eval_flip": False},
             "models": [{**SMOKE["models"][0], "train": {"metric": "cosine"}}]}
    with pytest.raises(ProfileError) as err:
        specs.check_profile(other, "p.yaml")
    text = str(err.value)
    assert "training.eval_flip: is False, but model selection runs under the evaluation block's settings " \
           "(evaluation.flip gives True); remove it here" in text
    assert "models[0].train.metric: is 'cosine'" in text and "(evaluation.metric gives 'euclidean')" in text
