"""Profiles that extend a base, load-time checks, hashes that follow behaviour, data as an input, record formats."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from reidlib import pipeline
from reidlib.pipeline import ProfileError, codehash, load_profile, plan, provenance
from reidlib.pipeline import fingerprint as fp

SMOKE = yaml.safe_load((pipeline.PARAMS_DIR / "smoke.yaml").read_text())


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Results, work folders and the fingerprint cache of each test live in its tmp folder."""
    monkeypatch.setenv("REIDLIB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("REIDLIB_CACHE_DIR", str(tmp_path / "cache"))
    fp.forget_fingerprints()
    yield
    fp.forget_fingerprints()


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _smoke_copy(tmp_path: Path, name: str = "p", **changes) -> Path:
    cfg = {**SMOKE, "work_dir": str(tmp_path / "work" / name), **changes}
    return _write(tmp_path / f"{name}.yaml", yaml.safe_dump({k: v for k, v in cfg.items() if v is not None}))


# ----------------------------------------------------------------------------------------------------------------
# extends:
# ----------------------------------------------------------------------------------------------------------------
def test_a_profile_extending_a_chain_merges_mappings_and_replaces_lists(tmp_path):
    _write(tmp_path / "bases" / "root.yaml", yaml.safe_dump({**SMOKE, "name": "root-name", "work_dir": "w/root"}))
    _write(tmp_path / "bases" / "middle.yaml", "extends: root.yaml\ntraining: {lr: 1.0e-3, transforms: {pad: 2}}\n"
                                               "evaluation: {max_rank: 10}\n")
    child = _write(tmp_path / "child.yaml", "extends: bases/middle.yaml\ntraining: {epochs: 3}\ntrain_on: [synth-b]\n")
    raw, chain = pipeline.profile.read_profile(child)
    assert chain == [child.resolve(), (tmp_path / "bases" / "middle.yaml").resolve(),
                     (tmp_path / "bases" / "root.yaml").resolve(), pipeline.PARAMS_DIR / "_base.yaml"]
    assert "name" not in raw and "work_dir" not in raw  # a base's own places are never inherited
    cfg = load_profile(child)
    smoke = load_profile("smoke")
    assert cfg["name"] == "child"
    train = cfg["training"]
    assert (train["epochs"], train["lr"], train["optimizer"]) == (3, 1e-3, "adam")  # child, middle, root
    assert train["transforms"] == {**smoke["training"]["transforms"], "pad": 2}      # merged key by key
    assert train["milestones"] == smoke["training"]["milestones"]
    assert cfg["train_on"] == ["synth-b"]                                             # a list is replaced
    assert cfg["evaluation"] == {**smoke["evaluation"], "max_rank": 10}
    assert all(m["train"]["epochs"] == 3 for m in cfg["models"])


def test_extends_a_shipped_profile_by_name(tmp_path):
    child = _write(tmp_path / "mine.yaml", "extends: smoke\ntraining: {epochs: 2}\n")
    cfg, smoke = load_profile(child), load_profile("smoke")
    assert cfg["training"] == {**smoke["training"], "epochs": 2}
    assert cfg["datasets"].keys() == smoke["datasets"].keys() and cfg["work_dir"].endswith("work/mine")


def test_an_extends_cycle_is_refused_showing_the_chain(tmp_path):
    _write(tmp_path / "a.yaml", "extends: b.yaml\n")
    _write(tmp_path / "b.yaml", "extends: c.yaml\n")
    _write(tmp_path / "c.yaml", "extends: a.yaml\n")
    with pytest.raises(ProfileError, match=r"cycle \(a\.yaml -> b\.yaml -> c\.yaml -> a\.yaml\)"):
        load_profile(tmp_path / "a.yaml")


def test_a_missing_base_is_named(tmp_path):
    child = _write(tmp_path / "c.yaml", "extends: nowhere.yaml\n")
    with pytest.raises(ProfileError, match=r"extends 'nowhere.yaml', but neither .*nowhere.yaml nor a shipped"):
        load_profile(child)


def test_a_typo_in_an_extending_file_is_named_with_its_base(tmp_path):
    child = _write(tmp_path / "c.yaml", "extends: smoke\ntraining: {epohcs: 2}\n")
    with pytest.raises(ProfileError) as err:
        load_profile(child)
    text = str(err.value)
    assert f"{child} (extends {pipeline.PARAMS_DIR / 'smoke.yaml'}, which extends " in text
    assert "training: unknown key 'epohcs'; did you mean 'epochs'?" in text


def test_shipped_profiles_extend_a_base_that_is_not_listed():
    assert not any(name.startswith("_") for name in pipeline.list_profiles())
    extending = [n for n in pipeline.list_profiles()
                 if len(pipeline.profile.read_profile(pipeline.PARAMS_DIR / f"{n}.yaml")[1]) > 1]
    assert len(extending) >= 2, extending


def test_show_prints_the_resolved_profile_with_every_default(tmp_path, capsys):
    from reidlib.engine.config import TrainConfig

    child = _write(tmp_path / "mine.yaml", "extends: smoke\ntraining: {epochs: 2}\n")
    assert pipeline.main(["show", str(child)]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# {child}\n#   extends {pipeline.PARAMS_DIR / 'smoke.yaml'}\n")
    shown = yaml.safe_load(out)
    assert shown == json.loads(json.dumps(pipeline.schema.with_defaults(load_profile(child))))
    train = shown["models"][0]["train"]
    assert train["epochs"] == 2 and train["momentum"] == TrainConfig.momentum           # a default filled in
    assert train["transforms"]["flip_p"] == 0.5 and shown["evaluation"]["batch_size"] == 128
    assert "&id" not in out


# ----------------------------------------------------------------------------------------------------------------
# load-time checks
# ----------------------------------------------------------------------------------------------------------------
def test_a_key_written_twice_names_the_key_and_both_lines(tmp_path):
    text = (pipeline.PARAMS_DIR / "smoke.yaml").read_text()
    lines = text.splitlines()
    at = lines.index("training:                      # the paper's recipe (the base), shrunk to one epoch")
    lines.insert(at + 2, "  epochs: 0")  # right after "  epochs: 1" (line at + 2)
    path = _write(tmp_path / "dup.yaml", "\n".join(lines) + "\n")
    with pytest.raises(ProfileError, match=rf"key 'epochs' is written twice in one mapping \(lines {at + 2} and "
                                           rf"{at + 3}\)"):
        load_profile(path)
    assert pipeline.main(["run", str(path), "--dry-run"]) == 1


def test_yaml_merge_keys_may_still_be_overridden(tmp_path):
    child = _write(tmp_path / "m.yaml", "extends: smoke\nx: &t {epochs: 2, lr: 1.0e-3}\n")
    assert pipeline.profile.read_yaml(child)["x"] == {"epochs": 2, "lr": 1e-3}
    merged = _write(tmp_path / "n.yaml", "a: &t {epochs: 2}\nb:\n  <<: *t\n  epochs: 3\n")
    assert pipeline.profile.read_yaml(merged)["b"] == {"epochs": 3}


def test_one_instance_per_identity_with_a_triplet_loss_is_refused(tmp_path):
    path = _smoke_copy(tmp_path, training={**SMOKE["training"], "num_instances": 1, "batch_size": 8})
    with pytest.raises(ProfileError) as err:
        load_profile(path)
    assert str(err.value).count("training.num_instances: is 1: ") == 1  # once, not once per model
    assert "no positive pair" in str(err.value) and "triplet_weight: 0.0" in str(err.value)
    ok = _smoke_copy(tmp_path, "ok", training={**SMOKE["training"], "num_instances": 1, "batch_size": 8,
                                               "loss_kwargs": {"triplet_weight": 0.0}})
    assert load_profile(ok)["training"]["num_instances"] == 1


def test_both_spellings_of_the_soft_margin_triplet_load_and_read_as_it(tmp_path):
    from reidlib.stages.describe import describe_recipe

    for name, extra in (("null", {"triplet_margin": None}), ("kw", {"loss_kwargs": {"soft_margin": True}})):
        cfg = load_profile(_smoke_copy(tmp_path, name, training={**SMOKE["training"], **extra}))
        text = describe_recipe(cfg["training"])
        assert "soft-margin batch-hard triplet" in text and "margin 0.3" not in text, name


def test_the_checked_recipe_is_the_one_that_runs_nested_blocks_merged(tmp_path):
    """A model's train.loss_kwargs adds to the shared block's (as load_profile resolves it), so the shared
    triplet_weight 0 still holds when the check asks for positive pairs."""
    models = [{"name": "osnet_x0_25", "run": "osnet", "label": "OSNet", "train": {"loss_kwargs": {"id_weight": 1.0}}}]
    path = _smoke_copy(tmp_path, models=models, train_on=["synth-a"], finetune=None,
                       training={**SMOKE["training"], "num_instances": 1, "batch_size": 8,
                                 "loss_kwargs": {"triplet_weight": 0.0}})
    recipe = load_profile(path)["models"][0]["train"]
    assert recipe["loss_kwargs"] == {"triplet_weight": 0.0, "id_weight": 1.0} and recipe["num_instances"] == 1

def test_an_input_smaller_than_a_model_takes_is_refused_at_dry_run(tmp_path, capsys):
    path = _smoke_copy(tmp_path, image_size=[7, 32])
    assert pipeline.main(["run", str(path), "--dry-run"]) == 1
    err = capsys.readouterr().err
    assert "image_size (used by models[1], osnet_x0_25): 7x32 is smaller than osnet_x0_25 can take" in err
    assert "at least 13x13 pixels" in err
    assert load_profile(_smoke_copy(tmp_path, "ok", image_size=[13, 13]))["image_size"] == [13, 13]


@pytest.mark.parametrize("name", sorted(__import__("reidlib.models", fromlist=["list_models"]).list_models()))
def test_the_minimum_input_table_matches_the_models(name, one_torch_thread):
    from reidlib.models import build_model

    def runs(h: int, w: int) -> bool:
        try:
            with torch.no_grad():
                model(torch.randn(2, 3, h, w))
        except RuntimeError:
            return False
        return True

    model = build_model(name, num_classes=4).train()
    low_h, low_w = pipeline.schema.MIN_INPUT_SIZE.get(name, (1, 1))
    assert runs(low_h, low_w) and runs(low_h + 1, low_w + 1)
    if low_h > 1:
        assert not runs(low_h - 1, 64) and not runs(64, low_w - 1)


# ----------------------------------------------------------------------------------------------------------------
# code hashed as what it does
# ----------------------------------------------------------------------------------------------------------------
CODE = '''"""Module docstring."""
import math


def area(r):
    """Area of a circle of radius r."""
    # pi r squared
    return math.pi * r ** 2
'''


@pytest.mark.parametrize("edit, same", [
    (lambda s: s.replace("# pi r squared", "# a longer comment about the formula"), True),
    (lambda s: s.replace("Area of a circle", "The area of a disc"), True),
    (lambda s: s.replace('"""Module docstring."""', '"""Module docstring,\n\nnow longer."""'), True),
    (lambda s: s.replace("return math.pi * r ** 2", "return (math.pi\n            * r ** 2)"), True),
    (lambda s: s + "\n\n\n", True),
    (lambda s: s.replace("r ** 2", "r ** 3"), False),
    (lambda s: s.replace("def area(r):", "def area(r, unused=0):"), False),
])
def test_normalised_code_ignores_comments_docstrings_and_layout_only(edit, same):
    assert (codehash.normalised_code(edit(CODE)) == codehash.normalised_code(CODE)) is same


def _record_all_current(cfg: dict) -> list:
    """Write every planned run's ``metrics.json`` and a ``run.json`` holding today's inputs (as after a full run)."""
    runs = plan(cfg)
    for run in runs:
        out = pipeline.run_dir(cfg, run.stage, run.name)
        out.mkdir(parents=True, exist_ok=True)
        (out / "metrics.json").write_text("{}")
    def record(run) -> None:
        info = {"input_hash": pipeline.input_hash(run, cfg), "inputs": provenance.input_digests(run, cfg),
                "data": provenance.data_fingerprints(run)}
        out = pipeline.run_dir(cfg, run.stage, run.name)
        (out / "run.json").write_text(json.dumps(info))
        (out / "params.yaml").write_text(yaml.safe_dump(provenance.portable(run.parameters), sort_keys=False))

    for run in runs[:-1]:
        record(run)
    record(pipeline.with_stale_runs(runs, cfg)[-1])  # the report, told that no run is stale
    return runs


def _would_run(path: Path, capsys) -> dict[str, str]:
    capsys.readouterr()
    pipeline.run_study(str(path), dry_run=True)
    lines = [ln.split("] ", 1)[1] for ln in capsys.readouterr().out.splitlines() if ": would run " in ln]
    return {ln.split(":", 1)[0]: ln.split(": would run ", 1)[1] for ln in lines}


def test_dry_run_names_the_input_that_made_a_run_stale(tmp_path, capsys):
    path = _smoke_copy(tmp_path)
    cfg = load_profile(path)
    runs = _record_all_current(cfg)
    fine = next(r for r in runs if r.stage == "20_finetune")
    train = next(r for r in runs if r.id in fine.depends_on and r.stage == "10_train")
    assert _would_run(path, capsys) == {}

    # an upstream run's results: the runs reading them say whose
    (pipeline.run_dir(cfg, train.stage, train.name) / "metrics.json").write_text('{"edited": 1}')
    assert provenance.run_status(fine, cfg) == (False, f"the results of {train.id} changed")
    assert provenance.run_status(train, cfg) == (True, "")

    # a parameter: named with both values
    epochs = SMOKE["training"]["epochs"]
    _smoke_copy(tmp_path, training={**SMOKE["training"], "epochs": epochs + 1})
    cfg = load_profile(path)
    train = next(r for r in plan(cfg) if r.id == train.id)
    assert provenance.run_status(train, cfg) == (False, f"parameters changed: train.epochs {epochs} -> {epochs + 1}")
    assert _would_run(path, capsys)[train.id] == f"10_train.ipynb (parameters changed: train.epochs {epochs} -> " \
                                                 f"{epochs + 1})"


def test_a_run_made_before_its_input_had_results_says_so_and_an_old_record_says_it_cannot_tell(tmp_path):
    cfg = load_profile(_smoke_copy(tmp_path))
    runs = plan(cfg)
    data, train = runs[0], next(r for r in runs if r.stage == "10_train")
    out = pipeline.run_dir(cfg, train.stage, train.name)
    out.mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    (out / "params.yaml").write_text(yaml.safe_dump(provenance.portable(train.parameters)))
    info = {"input_hash": pipeline.input_hash(train, cfg), "inputs": provenance.input_digests(train, cfg)}
    (out / "run.json").write_text(json.dumps(info))
    assert provenance.run_status(train, cfg) == (True, "")  # trained while the data stage had no record
    _write(pipeline.run_dir(cfg, data.stage, data.name) / "metrics.json", "{}")
    assert provenance.run_status(train, cfg) == (False, f"it ran before {data.id} had results")

    # a record from before per-input digests: the parameters still compare, the rest cannot be told apart
    (out / "run.json").write_text(json.dumps({"input_hash": info["input_hash"]}))
    ok, why = provenance.run_status(train, cfg)
    assert not ok and why.startswith("its notebook, library code or upstream results changed; its record predates")
    (pipeline.run_dir(cfg, data.stage, data.name) / "metrics.json").unlink()
    assert provenance.run_status(train, cfg) == (True, "")


def test_the_input_hash_is_the_hash_of_its_pieces_in_order(tmp_path):
    cfg = load_profile(_smoke_copy(tmp_path))
    for run in plan(cfg)[:2]:
        pieces = provenance._input_pieces(run, cfg)
        assert [name for name, _ in pieces][:3] == ["notebook", "parameters", "library"]
        assert pipeline.input_hash(run, cfg) == hashlib.sha256(b"".join(p for _, p in pieces)).hexdigest()
        assert provenance.input_digests(run, cfg) == {n: hashlib.sha256(p).hexdigest()[:16] for n, p in pieces}


def _edited_digest(monkeypatch, target: Path, edit) -> None:
    real = codehash.code_digest

    def digest(path: Path) -> str:
        if path == target:
            return hashlib.sha256(codehash.normalised_code(edit(path.read_text())).encode()).hexdigest()
        return real(path)
    monkeypatch.setattr(codehash, "code_digest", digest)


def test_a_comment_or_docstring_edit_to_the_trainer_reruns_nothing_a_code_edit_its_runs(tmp_path, monkeypatch,
                                                                                          capsys):
    path = _smoke_copy(tmp_path)
    runs = _record_all_current(load_profile(path))
    assert _would_run(path, capsys) == {}
    trainer = pipeline.REPO_ROOT / "reidlib" / "engine" / "trainer.py"
    _edited_digest(monkeypatch, trainer, lambda s: "# a new comment\n" + s.replace('"""', '"""Reworded. ', 1))
    assert _would_run(path, capsys) == {}
    _edited_digest(monkeypatch, trainer, lambda s: s + "\n_A_REAL_CHANGE = 1\n")
    would = _would_run(path, capsys)
    direct = {run for run, why in would.items() if "runs before it" not in why}
    assert direct == {r.id for r in runs if r.stage in ("10_train", "20_finetune", "40_report")}
    assert {why for run, why in would.items() if run.startswith("10_train/")} == {
        "10_train.ipynb (the library code it runs changed)"}
    # the distance study runs no trainer code but reads the retrained runs' results, so it reruns after them
    assert set(would) - direct == {r.id for r in runs if r.stage == "30_distance_study"}


# ----------------------------------------------------------------------------------------------------------------
# data is an input
# ----------------------------------------------------------------------------------------------------------------
def _folder(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        _write(root / rel, "").write_bytes(data)
    return root


def test_folder_fingerprint_follows_contents_not_place_and_hashes_once(tmp_path, monkeypatch):
    files = {"bounding_box_train/0001_c1_000.jpg": b"abc", "query/0002_c2_000.jpg": b"xyz", ".DS_Store": b"junk"}
    one = fp.folder_fingerprint(_folder(tmp_path / "one", files))
    assert one["files"] == 2 and one["bytes"] == 6
    expected = hashlib.sha256()
    for rel, data in sorted(files.items())[1:]:
        expected.update(f"{rel}\0{len(data)}\0{hashlib.sha256(data).hexdigest()}\n".encode())
    assert one["fingerprint"] == expected.hexdigest()
    assert fp.folder_fingerprint(_folder(tmp_path / "two", files)) == one  # a copy elsewhere: the same
    monkeypatch.setattr(fp, "RECENT_NS", 0)  # trust the hashes of files written a moment ago
    fp.forget_fingerprints()
    fp.folder_fingerprint(tmp_path / "one")
    hashed = []
    monkeypatch.setattr(fp, "_file_sha256", lambda p: hashed.append(p) or hashlib.sha256(b"").hexdigest())
    fp.forget_fingerprints()
    assert fp.folder_fingerprint(tmp_path / "one") == one and hashed == []  # from the cache file: nothing re-read
    monkeypatch.undo()
    (tmp_path / "one" / "query" / "0002_c2_000.jpg").write_bytes(b"XYZ")  # same name, same size, new pixels
    fp.forget_fingerprints()
    assert fp.folder_fingerprint(tmp_path / "one")["fingerprint"] != one["fingerprint"]
    assert fp.folder_fingerprint(tmp_path / "gone") == {"fingerprint": "missing", "files": 0, "bytes": 0}


def test_synthetic_datasets_are_fingerprinted_by_their_generation_parameters(tmp_path):
    spec = {"name": "synthetic", "root": str(tmp_path / "not-generated-yet"), "kwargs": {"seed": 0, "num_ids": 8}}
    first = fp.dataset_fingerprint(spec)
    assert first["generated"] and fp.dataset_fingerprint({**spec, "root": "/elsewhere"}) == first
    assert fp.dataset_fingerprint({**spec, "kwargs": {"seed": 1, "num_ids": 8}}) != first


def test_changed_images_make_the_runs_that_read_them_stale_and_dry_run_names_the_dataset(tmp_path, capsys):
    image = {"bounding_box_train/0001_c1_000.jpg": b"abc", "bounding_box_test/0002_c2_000.jpg": b"def"}
    datasets = {"a": {"name": "folder", "root": str(_folder(tmp_path / "a", image))},
                "b": {"name": "folder", "root": str(_folder(tmp_path / "b", image))}}
    path = _smoke_copy(tmp_path, datasets=datasets, train_on=["a"], zero_shot=["b"],
                       models=[{"name": "mnv3_siamese"}], finetune={"pairs": [["a", "b"]], "models": ["mnv3_siamese"]})
    _record_all_current(load_profile(path))
    assert _would_run(path, capsys) == {}
    (tmp_path / "a" / "bounding_box_train" / "0001_c1_000.jpg").write_bytes(b"ABC")  # noise, same name and size
    fp.forget_fingerprints()
    why = f"(dataset a ({tmp_path / 'a'}) changed: 2 files then, 2 now)"
    after = "(10_train/a-mnv3_siamese runs before it and its results are this run's input)"
    assert _would_run(path, capsys) == {"00_data/datasets": f"00_data.ipynb {why}",
                                        "10_train/a-mnv3_siamese": f"10_train.ipynb {why}",
                                        # they read no image of a but the retrained run's results
                                        "20_finetune/a-to-b-mnv3_siamese": f"20_finetune.ipynb {after}",
                                        "30_distance_study/all": f"30_distance_study.ipynb {after}",
                                        # told 2 runs are stale
                                        "40_report/report": "40_report.ipynb (parameters changed: stale_runs)"}


# ----------------------------------------------------------------------------------------------------------------
# checkpoints that cannot be read
# ----------------------------------------------------------------------------------------------------------------
def test_a_run_whose_checkpoint_cannot_be_read_is_not_up_to_date(tmp_path, capsys):
    path = _smoke_copy(tmp_path)
    cfg = load_profile(path)
    run = next(r for r in plan(cfg) if r.stage == "20_finetune")  # nothing downstream reads it: still checked
    ckpt = tmp_path / "work" / "best.pt"
    ckpt.parent.mkdir(parents=True)
    torch.save({"model": {"w": torch.zeros(256)}, "epoch": 3}, ckpt)
    _record_all_current(cfg)
    (pipeline.run_dir(cfg, run.stage, run.name) / "metrics.json").write_text(json.dumps({"checkpoint": str(ckpt)}))
    pipeline.with_stale_runs(plan(cfg), cfg)
    (pipeline.run_dir(cfg, run.stage, run.name) / "run.json").write_text(
        json.dumps({"input_hash": pipeline.input_hash(run, cfg)}))
    assert pipeline.is_up_to_date(run, cfg) and run.id not in _would_run(path, capsys)
    data = ckpt.read_bytes()
    ckpt.write_bytes(data[: len(data) // 2])  # truncate -s 50%
    assert not pipeline.is_up_to_date(run, cfg)
    why = _would_run(path, capsys)[run.id]
    assert why.startswith(f"20_finetune.ipynb (checkpoint {ckpt} (") and "truncated" in why


def test_truncated_stored_features_are_named_too(tmp_path):
    cfg = load_profile(_smoke_copy(tmp_path))
    run = next(r for r in plan(cfg) if r.stage == "10_train")
    feats = tmp_path / "q.npz"
    np.savez(feats, feats=np.zeros((3, 4)))
    out = pipeline.run_dir(cfg, run.stage, run.name)
    out.mkdir(parents=True)
    (out / "metrics.json").write_text(json.dumps({"features": {"test": {"query": str(feats)}}}))
    (out / "run.json").write_text(json.dumps({"input_hash": pipeline.input_hash(run, cfg)}))
    assert provenance.run_status(run, cfg) == (True, "")
    feats.write_bytes(feats.read_bytes()[:40])
    assert provenance.run_status(run, cfg) == (False, f"stored features {feats} are truncated or corrupt (not an .npz)")


# ----------------------------------------------------------------------------------------------------------------
# metrics.json formats
# ----------------------------------------------------------------------------------------------------------------
def test_metrics_records_carry_a_format_and_newer_ones_are_refused_with_the_command(tmp_path):
    from reidlib.stages.common import METRICS_FORMAT, MetricsFormatError, read_metrics, write_metrics

    run = tmp_path / "results" / "smoke" / "10_train" / "synth-a-osnet_x0_25"
    path = write_metrics(run, {"stage": "10_train", "format": "ignored", "evaluations": {}})
    assert METRICS_FORMAT == 1 and json.loads(path.read_text()) == {"format": 1, "stage": "10_train",
                                                                   "evaluations": {}}
    assert read_metrics(path)["format"] == 1
    path.write_text(json.dumps({"stage": "10_train", "checkpoint": "work/x/best.pt"}))  # format 0: no key
    assert read_metrics(path)["checkpoint"] == str(pipeline.REPO_ROOT / "work" / "x" / "best.pt")
    path.write_text(json.dumps({"format": 2, "stage": "10_train"}))
    with pytest.raises(MetricsFormatError, match=r"format 2 record; this reidlib reads formats 0-1\. .*regenerate "
                                                 r"it with this one: \./run_all\.sh smoke --only "
                                                 r"10_train/synth-a-osnet_x0_25 --force"):
        read_metrics(path)
