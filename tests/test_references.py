"""Published numbers are data: params/_references.yaml read and checked, a profile's report block resolved from it, and
the report run given the cited numbers as parameters (so a changed number makes the report stale)."""
from __future__ import annotations

import shutil

import pytest
import yaml

from reidlib.pipeline import ProfileError, list_profiles, load_profile, plan
from reidlib.pipeline import references as refs

ROW = {"source": "repo, file", "model": "M", "data": "D", "R1": 40.0, "mAP": 30.0}


def test_the_shipped_file_is_not_a_profile_and_every_entry_names_its_source():
    assert "_references" not in list_profiles() and "references" not in list_profiles()
    entries = refs.read_references()
    assert all(entry["source"].strip() for entry in entries.values())
    paper = entries["paper-table-i"]
    assert paper["main_data"] == "Market-1501" and set(paper["models"]) == {"bot_resnet50", "osnet_x0_25",
                                                                            "mnv3_siamese"}
    assert paper["models"]["mnv3_siamese"]["results"]["DukeMTMC-reID"] == [51.4, 31.8]  # the paper's Table I


def test_shipped_profiles_show_what_they_name_and_the_peer_beside_its_run():
    real = load_profile("cpu-real")["report"]
    assert real["reproduces"]["key"] == "paper-table-i"
    peer = real["references"][0]
    assert (peer["key"], peer["R1"], peer["mAP"]) == ("torchreid-peer-cuhk03", 43.0, 41.0)
    assert peer["compare_with"] == "10_train/cuhk03-osnet_x0_25_msmt17"
    assert all("compare_with" not in r for r in real["references"][1:])
    assert load_profile("default")["report"] == {"reproduces": real["reproduces"], "references": []}  # from _base
    # resolving a resolved block changes nothing (a `pipeline show` output stays loadable)
    assert refs.resolve_report(real, "p") == real


def test_an_unknown_key_is_named_with_the_closest_known_one():
    with pytest.raises(ProfileError, match=r"report.references\[0\] names 'bot-readme-markt', which is not a key of "
                                           r"_references.yaml; did you mean 'bot-readme-market'\?"):
        refs.resolve_report({"references": ["bot-readme-markt"]}, "p.yaml")
    with pytest.raises(ProfileError, match="names 'bot-readme-market', which is not a table entry"):
        refs.resolve_report({"reproduces": "bot-readme-market"}, "p.yaml")
    with pytest.raises(ProfileError, match="must name the run id of this profile"):
        refs.resolve_report({"references": [{"bot-readme-market": 3}]}, "p.yaml")


def test_every_problem_of_a_references_file_is_listed_at_once(tmp_path):
    bad = {"ok": ROW, "typo": {**ROW, "hardwre": "GPU"}, "range": {**ROW, "R1": 140.0},
           "short": {k: v for k, v in ROW.items() if k != "mAP"},
           "table": {"source": "s", "setting": {"init": "x"}, "main_data": "D",
                     "models": {"m": {"label": "M", "results": {"E": [1.0, 2.0]}}}}}
    path = tmp_path / "refs.yaml"
    path.write_text(yaml.safe_dump(bad))
    with pytest.raises(ProfileError) as err:
        refs.read_references(path)
    text = str(err.value)
    assert "has 5 problem(s)" in text
    assert "typo: unknown field 'hardwre'; did you mean 'hardware'?" in text
    assert "range.R1: must be a percentage from 0 to 100, got 140.0" in text
    assert "short: lacks the field 'mAP'" in text
    assert "table.setting: must be a mapping of exactly init, epochs, input, hardware, losses" in text
    assert "table.models.m.results: lacks main_data 'D'" in text
    path.write_text("a: {source: s}\na: {source: t}\n")
    with pytest.raises(ProfileError, match="key 'a' is written twice"):
        refs.read_references(path)


def test_a_changed_reference_number_reaches_the_report_run_parameters(tmp_path, monkeypatch):
    def report_parameters() -> dict:
        return next(r for r in plan(load_profile("cpu-real")) if r.stage == "40_report").parameters["report"]

    before = report_parameters()
    assert before["references"][0]["R1"] == 43.0
    copy = tmp_path / "_references.yaml"
    shutil.copy(refs.REFERENCES_FILE, copy)
    data = yaml.safe_load(copy.read_text())
    data["torchreid-peer-cuhk03"]["R1"] = 44.0
    copy.write_text(yaml.safe_dump(data))
    monkeypatch.setattr(refs, "REFERENCES_FILE", copy)
    after = report_parameters()
    assert after["references"][0]["R1"] == 44.0 and after != before


def test_a_reference_set_beside_a_run_the_profile_does_not_run_is_refused(tmp_path):
    profile = tmp_path / "mine.yaml"
    profile.write_text("extends: smoke\nreport:\n  references:\n    - bot-readme-market: 10_train/no-such-run\n")
    with pytest.raises(ProfileError, match=r"report.ranking/variants/references name \['10_train/no-such-run'\]"):
        plan(load_profile(profile))
