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
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
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
