"""reidlib.plots: CMC figure, ranked-list grids, atomic saving, markdown tables."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from reidlib.plots import plot_cmc, plot_ranked_list, ranked_lists_for, save_figure, to_markdown


def _png_ok(path):
    with Image.open(path) as img:
        return img.format == "PNG" and img.size[0] > 50 and img.size[1] > 50


def test_plot_cmc_several_models(tmp_path):
    results = {"baseline": {"cmc": np.linspace(0.894, 0.994, 50), "mAP": 0.755},
               "osnet": {"cmc": np.linspace(0.773, 0.95, 50), "mAP": 0.563},
               "short": {"cmc": [0.5, 0.7, 0.9]}}
    fig = plot_cmc(results, title="CMC plot for models trained on Market-1501")
    ax = fig.axes[0]
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels == ["baseline (R1 89.4%, mAP 75.5%)", "osnet (R1 77.3%, mAP 56.3%)", "short (R1 50.0%)"]
    assert ax.get_xlabel() == "Rank" and ax.get_ylabel() == "Identification accuracy (%)"
    assert ax.lines[0].get_ydata()[0] == pytest.approx(89.4)
    out = save_figure(fig, tmp_path / "figs" / "cmc.png")
    assert _png_ok(out) and sorted(p.name for p in out.parent.iterdir()) == ["cmc.png"]  # no temp file left
    with pytest.raises(KeyError, match="no 'cmc'"):
        plot_cmc({"x": {"mAP": 0.1}})
    with pytest.raises(ValueError):
        plot_cmc({})


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    paths = []
    for i in range(6):
        p = tmp_path / "img" / f"{i // 2:04d}_c{i % 2 + 1}_f{i}.png"
        p.parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 255, (32, 16, 3), dtype=np.uint8)).save(p)
        paths.append(p)
    return paths


def test_plot_ranked_list_borders(images, tmp_path):
    fig = plot_ranked_list(images[0], images[1:4], [True, False, False], out_path=tmp_path / "r.png",
                           distances=[0.1, 0.2, 0.3])
    assert _png_ok(tmp_path / "r.png") and len(fig.axes) == 4
    tile = fig.axes[1].get_images()[0].get_array()
    assert tuple(tile[0, 0]) == (0, 170, 0) and tuple(fig.axes[2].get_images()[0].get_array()[0, 0]) == (220, 0, 0)
    with pytest.raises(ValueError, match="same length"):
        plot_ranked_list(images[0], images[1:3], [True])


def test_ranked_lists_for_writes_one_grid_per_query(images, tmp_path):
    items = [(str(p), i // 2, i % 2) for i, p in enumerate(images)]
    query, gallery = items[:2], items
    d = np.random.default_rng(1).random((2, 6)).astype(np.float32)
    written = ranked_lists_for({"distmat": d}, query, gallery, topk=3, num_queries=5, out_dir=tmp_path / "rl")
    assert len(written) == 2 and all(_png_ok(p) for p in written)
    with pytest.raises(ValueError, match="does not match"):
        ranked_lists_for(d[:, :5], query, gallery, out_dir=tmp_path / "rl")


def test_to_markdown():
    df = pd.DataFrame({"model": ["a|b", "c"], "R1": [89.44, np.nan], "n": [3, 4], "ok": [True, False]})
    assert to_markdown(df).splitlines() == [
        "| model | R1 | n | ok |",
        "|---|---:|---:|---|",
        "| a\\|b | 89.4 | 3 | True |",
        "| c |  | 4 | False |",
    ]


def test_to_markdown_index_and_records():
    df = pd.DataFrame({"mAP": [75.5]}, index=pd.Index(["baseline"], name="model"))
    assert to_markdown(df, index=True, floatfmt=".2f").splitlines()[2] == "| baseline | 75.50 |"
    assert to_markdown([{"x": 1, "y": "z"}]).splitlines()[0] == "| x | y |"


def test_save_figure_closes_the_figure_so_notebooks_do_not_embed_it(tmp_path):
    import matplotlib.pyplot as plt

    from reidlib.plots import save_figure

    fig, ax = plt.subplots()
    ax.plot([0, 1], [0, 1])
    out = save_figure(fig, tmp_path / "f.png")
    assert out.is_file() and out.stat().st_size > 0
    assert fig.number not in plt.get_fignums()


# ---------------------------------------------------------------------------------------------------------------
# one look for every figure: a colour per model, legends off the data, human titles, no empty panels
# ---------------------------------------------------------------------------------------------------------------
def _draw(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return canvas.get_renderer()


def _legends_clear_of_data(fig) -> None:
    renderer = _draw(fig)
    legends = list(fig.legends) + [ax.get_legend() for ax in fig.axes if ax.get_legend() is not None]
    assert legends, "the figure has no legend"
    for legend in legends:
        box = legend.get_window_extent(renderer)
        for ax in fig.axes:
            assert not box.overlaps(ax.get_window_extent(renderer)), f"legend covers the axes {ax.get_title()!r}"


def _titles(fig) -> list[str]:
    titles = [ax.get_title() for ax in fig.axes]
    return titles + ([fig._suptitle.get_text()] if fig._suptitle is not None else [])


def test_model_style_is_fixed_per_model_and_dashes_the_paper_code_variant():
    from reidlib.figure_style import FAMILY_COLOURS, OKABE_ITO, model_run_of, model_style

    assert model_style("bot_resnet50") == {"color": OKABE_ITO["blue"], "linestyle": "-"}
    assert model_style("mnv3_siamese_paper_code") == {"color": FAMILY_COLOURS["mnv3_siamese"], "linestyle": "--"}
    # a run id names the same model run: same style wherever it is drawn
    assert model_run_of("10_train/synth-a-osnet_x0_25_msmt17") == "osnet_x0_25_msmt17"
    for run_id in ("10_train/cuhk03-osnet_x0_25@lr-low", "10_train/cuhk03-osnet_x0_25-seed2",
                   "10_train/cuhk03-osnet_x0_25@cos12-lr3e-3-seed1"):  # a variant's and a seed's ids too
        assert model_run_of(run_id) == "osnet_x0_25"
    assert model_style("20_finetune/cuhk03-to-cuhk01-osnet_x0_25_msmt17") == model_style("osnet_x0_25_msmt17")
    # a variant of a family (other weights) gets its own colour, none of the three paper models' colours
    variant = model_style("osnet_x0_25_msmt17")["color"]
    assert variant not in FAMILY_COLOURS.values() and variant != model_style("osnet_x0_25_market_ref")["color"]


def test_plot_cmc_puts_the_legend_off_the_data_in_both_layouts():
    import matplotlib.pyplot as plt

    results = {f"model {i}": {"cmc": np.linspace(0.1 * i, 0.9, 50)} for i in range(1, 5)}
    _legends_clear_of_data(plot_cmc(results))
    fig, ax = plt.subplots(figsize=(5, 4))
    plot_cmc(results, ax=ax)
    _legends_clear_of_data(fig)
    plt.close(fig)


def test_cmc_grid_one_panel_per_split_shared_legend_and_model_colours():
    from reidlib.figure_style import model_style
    from reidlib.plots import plot_cmc_grid

    res = {"cmc": np.linspace(0.2, 0.9, 50)}
    styles = {"BoT": model_style("bot_resnet50"), "OSNet": model_style("osnet_x0_25")}
    short = {"cmc": np.linspace(0.2, 0.9, 20)}  # a small gallery: 20 ranks
    fig = plot_cmc_grid({"CUHK03-NP": {"BoT": res, "OSNet": res}, "VIPeR": {"OSNet": short}, "empty": {}},
                        styles=styles, title="CMC")
    assert fig.axes[0].get_xlim() == (1, 50) and fig.axes[1].get_xlim() == (1, 20)  # no blank ranks
    assert [ax.get_title() for ax in fig.axes] == ["CUHK03-NP", "VIPeR"]  # the empty panel is not drawn
    assert [ln.get_color() for ln in fig.axes[0].lines] == [styles["BoT"]["color"], styles["OSNet"]["color"]]
    assert fig.axes[1].lines[0].get_color() == styles["OSNet"]["color"]
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["BoT", "OSNet"]
    assert fig.axes[0].lines[0].get_ydata()[-1] == pytest.approx(90.0)  # percent
    _legends_clear_of_data(fig)
    with pytest.raises(ValueError, match="at least one panel"):
        plot_cmc_grid({"empty": {}})


def test_histories_draw_one_panel_per_loss_term_and_no_empty_panel():
    from reidlib.learning_curves import plot_histories

    id_only = [{"epoch": e, "loss": 6.0 - e, "loss_id": 6.0 - e, "loss_triplet": 0.0, "train_acc": 0.1 * e}
               for e in (1, 2, 3)]
    full = [{"epoch": e, "loss": 9.0 - e, "loss_id": 5.0 - e, "loss_triplet": 1.0 / e, "train_acc": 0.2 * e,
             "val_rank1": 0.125 * e if e > 1 else None} for e in (1, 2, 3)]
    fig = plot_histories({"ID only": id_only, "ID + triplet": full}, margins={"ID + triplet": 0.3})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["ID loss (label-smoothed CE)", "triplet loss (batch-hard)", "train accuracy (%)",
                      "held-out rank-1 (%)"]  # no summed "loss" panel, no center-loss panel nobody recorded
    id_ax, tri_ax, _, r1_ax = fig.axes
    assert len(id_ax.lines) == 2 and len([ln for ln in tri_ax.lines if ln.get_label() != "_m"]) == 1
    assert list(r1_ax.lines[0].get_ydata()) == pytest.approx([25.0, 37.5])  # percent, evaluated epochs only
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["ID only", "ID + triplet", "triplet margin 0.3"]
    _legends_clear_of_data(fig)
    # without held-out evaluations there is no held-out panel at all (not an empty 0-1 axis)
    fig = plot_histories({"ID only": id_only})
    assert "held-out rank-1 (%)" not in [ax.get_title() for ax in fig.axes] and len(fig.axes) == 2
    # a run that never trained: a sentence, not empty axes
    fig = plot_histories({"reference": []})
    assert fig.axes == [] and "No training" in fig.texts[0].get_text()


def test_histories_plot_the_collapse_diagnostics_where_recorded():
    from reidlib.learning_curves import plot_histories

    healthy = [{"epoch": e, "loss_id": 5.0 - e, "feat_norm": 10.0 + e, "dist_ap": 4.0, "dist_an": 4.0 + e}
               for e in (1, 2, 3)]
    collapsing = [{"epoch": e, "loss_id": 5.0 - e, "feat_norm": 8.0 / e, "dist_ap": 1.0 / e, "dist_an": 0.9 / e}
                  for e in (1, 2, 3)]
    fig = plot_histories({"healthy": healthy, "collapsing": collapsing})
    titles = [ax.get_title() for ax in fig.axes]
    assert titles == ["ID loss (label-smoothed CE)", "mean feature norm (triplet input)",
                      "hardest-positive distance (mean, euclidean)", "hardest-negative distance (mean, euclidean)"]
    _, norm_ax, ap_ax, an_ax = fig.axes
    assert list(norm_ax.lines[1].get_ydata()) == pytest.approx([8.0, 4.0, 8.0 / 3])
    assert list(ap_ax.lines[0].get_ydata()) == pytest.approx([4.0, 4.0, 4.0])
    assert list(an_ax.lines[1].get_ydata()) == pytest.approx([0.9, 0.45, 0.3])
    assert all(ax.get_ylim()[0] == 0.0 for ax in (norm_ax, ap_ax, an_ax))  # a fall towards 0 stays visible
    _legends_clear_of_data(fig)
    fig = plot_histories({"healthy": healthy, "collapsing": collapsing}, metrics={"healthy": "cosine"})
    assert fig.axes[2].get_title() == "hardest-positive distance (mean, each run's triplet metric)"
    fig = plot_histories({"healthy": healthy}, metrics={"healthy": "cosine"})
    assert fig.axes[3].get_title() == "hardest-negative distance (mean, cosine)"
    # histories from before the diagnostics were recorded get no such panels
    fig = plot_histories({"old": [{"epoch": 1, "loss_id": 5.0}, {"epoch": 2, "loss_id": 4.0}]})
    assert [ax.get_title() for ax in fig.axes] == ["ID loss (label-smoothed CE)"]


def _run(model_run: str, label: str, data_key: str, data_label: str, **extra) -> dict:
    cmc = list(np.linspace(0.3, 0.9, 50))
    hist = [{"epoch": e, "loss_id": 6.0 - e, "loss_triplet": 0.5 / e, "train_acc": 0.2 * e,
             "val_rank1": 0.1 * e} for e in (1, 2, 3)]
    return {"model_run": model_run, "model_name": model_run.replace("_paper_code", ""), "model_label": label,
            "dataset_key": data_key, "dataset_label": data_label, "history": hist,
            "train": {"recipe": {"triplet_margin": 0.3}},
            "evaluations": {"test": {"label": data_label, "role": "test", "R1": 30.0, "mAP": 20.0, "cmc": cmc},
                            "viper": {"label": "VIPeR", "role": "zero-shot", "R1": 10.0, "mAP": 8.0, "cmc": cmc}},
            **extra}


@pytest.fixture()
def study_runs() -> dict:
    cmc = list(np.linspace(0.5, 0.95, 50))
    far = list(np.logspace(-4, 0, 20))
    return {
        "10_train/cuhk03-bot_resnet50": _run("bot_resnet50", "BoT ResNet50", "cuhk03", "CUHK03-NP (detected)"),
        "10_train/cuhk03-osnet_x0_25": _run("osnet_x0_25", "OSNet x0.25", "cuhk03", "CUHK03-NP (detected)"),
        "10_train/cuhk03-mnv3_siamese_paper_code": _run("mnv3_siamese_paper_code", "MobileNetV3 (paper code)",
                                                        "cuhk03", "CUHK03-NP (detected)"),
        "20_finetune/cuhk03-to-cuhk01-osnet_x0_25": {
            **_run("osnet_x0_25", "OSNet x0.25", "cuhk01", "CUHK01"), "source_key": "cuhk03",
            "evaluations": {"fine-tuned": {"label": "CUHK01", "role": "fine-tuned", "R1": 60.0, "mAP": 50.0,
                                           "cmc": cmc}}},
        "30_distance_study/all": {"roc": {
            "cuhk03-osnet_x0_25": {"model": "OSNet x0.25", "dataset": "CUHK03-NP (detected)", "far": far,
                                   "tar": {"cosine": list(np.linspace(0.1, 1.0, 20))}},
            "cuhk03-bot_resnet50": {"model": "BoT ResNet50", "dataset": "CUHK03-NP (detected)", "far": far,
                                    "tar": {"cosine": list(np.linspace(0.2, 1.0, 20))}}}},
    }


def test_report_figures_keep_one_colour_per_model_human_titles_and_captions(study_runs, tmp_path):
    from PIL import Image

    from reidlib.figure_style import model_style
    from reidlib.plots import plot_cmc_grid
    from reidlib.stages.distance import plot_roc_by_dataset
    from reidlib.stages.records import as_runs
    from reidlib.stages.report_figures import cmc_panels, figure_caption, plot_learning_curves, report_figures

    osnet = model_style("osnet_x0_25")["color"]
    runs = as_runs(study_runs)
    panels, styles = cmc_panels(runs)
    assert list(panels) == ["CUHK03-NP (detected)", "VIPeR\nzero-shot from CUHK03-NP (detected)",
                            "CUHK01\nfine-tuned from CUHK03-NP (detected)"]
    cmc = plot_cmc_grid(panels, styles=styles)
    curves = plot_learning_curves({k: v for k, v in runs.items() if k.startswith("10_train/")})
    roc = plot_roc_by_dataset(study_runs["30_distance_study/all"]["roc"])

    def colour_of(fig, label: str) -> set:
        legend = fig.legends[0]
        return {h.get_color() for h, t in zip(legend.legend_handles, legend.get_texts()) if t.get_text() == label}

    for fig in (cmc, curves, roc):  # OSNet is the same colour in every figure, and never a slug in a title
        assert colour_of(fig, "OSNet x0.25") == {osnet}
        assert not any("_" in title for title in _titles(fig))
        _legends_clear_of_data(fig)
    # the paper-code variant: its model's colour, dashed
    legend = curves.legends[0]
    paper = [h for h, t in zip(legend.legend_handles, legend.get_texts()) if "paper code" in t.get_text()][0]
    assert paper.get_color() == model_style("mnv3_siamese")["color"] and paper.get_linestyle() == "--"

    written = report_figures(runs, tmp_path / "figures")
    assert [p.name for p in written] == ["cmc.png", "roc.png", "learning_curves_cuhk03_np__detected.png",
                                         "learning_curves_ft_cuhk01_from_cuhk03_np__detected.png"]
    assert figure_caption(written[-1]) == "Learning curves: Fine-tuning on CUHK01 from CUHK03-NP (detected)"
    own = report_figures(runs, tmp_path / "own", own_recipe_only=True)
    assert figure_caption(own[2]) == "Learning curves: Training on CUHK03-NP (detected) (the profile's own recipe)"
    Image.new("RGB", (4, 4)).save(tmp_path / "cmc_by_distance.png")  # a PNG without a caption: its name in words
    assert figure_caption(tmp_path / "cmc_by_distance.png") == "Cmc by distance"


def test_stage_figures_use_the_model_colour_and_one_grid(study_runs):
    import pandas as pd

    from reidlib.figure_style import model_style
    from reidlib.stages.distance import plot_distance_cmc, plot_roc_by_dataset
    from reidlib.stages.train import Outcome, plot_history, plot_outcome_cmc

    m = study_runs["10_train/cuhk03-osnet_x0_25"]
    colour = model_style("osnet_x0_25")["color"]
    fig = plot_history(m["history"], title="OSNet x0.25 on CUHK03-NP", model_run="osnet_x0_25", label="OSNet x0.25")
    assert {ln.get_color() for ax in fig.axes for ln in ax.lines if ln.get_label() != "_m"} == {colour}
    # the training block gives the margin line (none for the soft margin) and the distance panels' metric
    diagnosed = [{**h, "loss_triplet": 0.5, "dist_ap": 0.2, "dist_an": 0.4} for h in m["history"]]
    for train, margins, metric in (({"triplet_margin": 0.5, "loss_kwargs": {"metric": "cosine"}}, [0.5], "cosine"),
                                   ({"loss_kwargs": {"soft_margin": True}}, [], "euclidean")):
        fig = plot_history(diagnosed, title="t", train=train, model_run="osnet_x0_25")
        triplet_ax = next(ax for ax in fig.axes if ax.get_title().startswith("triplet"))
        assert [ln.get_ydata()[0] for ln in triplet_ax.lines if ln.get_label() == "_m"] == margins
        assert f"(mean, {metric})" in next(ax.get_title() for ax in fig.axes if ax.get_title().startswith("hardest-n"))
    out = Outcome("osnet_x0_25", "CUHK03-NP (detected)", m["history"], m["evaluations"], {}, None)
    fig = plot_outcome_cmc(out, label="OSNet x0.25", model_run="osnet_x0_25")
    assert [t.get_text().split(" (R1")[0] for t in fig.legends[0].get_texts()] == [
        "CUHK03-NP (detected), test split", "VIPeR, zero-shot"]
    assert {ln.get_color() for ln in fig.axes[0].lines} == {colour}
    _legends_clear_of_data(fig)
    res = {"cmc": np.linspace(0.2, 0.9, 50)}
    curves = {"cuhk03-osnet_x0_25": {"euclidean": res, "cosine": res}, "cuhk03-bot_resnet50": {"euclidean": res}}
    table = pd.DataFrame([{"run": r, "model": lbl, "dataset": "CUHK03-NP (detected)"}
                          for r, lbl in (("cuhk03-osnet_x0_25", "OSNet x0.25"), ("cuhk03-bot_resnet50", "BoT"))])
    fig = plot_distance_cmc(curves, table)  # one figure, a panel per model in its colour, a legend of metrics
    assert [ax.get_title() for ax in fig.axes] == ["OSNet x0.25", "BoT"]
    assert {ln.get_color() for ln in fig.axes[0].lines} == {colour}
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["euclidean", "cosine"]
    assert "CUHK03-NP (detected)" in fig._suptitle.get_text()
    assert plot_roc_by_dataset({}) is None


def test_ranked_list_tiles_show_16_bit_images_at_their_real_brightness(tmp_path):
    """A 16-bit grey PNG of mid value is drawn mid grey, not clipped to white as PIL's convert("RGB") does."""
    from PIL import Image

    from reidlib.plots import _bordered

    path = tmp_path / "0001_c1_000001.png"
    Image.fromarray(np.full((16, 8), 32768, dtype=np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I;16")
    tile = _bordered(path, (0, 255, 0), width=8, height=16, border=2)
    assert tile.shape == (20, 12, 3)
    assert abs(int(tile[10, 6, 0]) - 128) <= 1  # the image itself, inside the green border
    assert tuple(tile[0, 0]) == (0, 255, 0)
