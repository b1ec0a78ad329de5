"""Figures show what they claim: the right slices, grid, legends, widget and animation frames."""
from __future__ import annotations

import sys

import numpy as np
import pytest

from sfr_teach import viz
from sfr_teach.stitching import make_layout, stitch


@pytest.fixture()
def vol(rng):
    img = rng.random((20, 24, 10)).astype(np.float32)
    lab = np.zeros(img.shape, np.uint8)
    lab[5:15, 6:18, 2:8] = 1
    return img, lab


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")


def test_viz_is_headless_and_compute_modules_do_not_import_matplotlib():
    import matplotlib

    assert matplotlib.get_backend().lower() == "agg"
    import sfr_teach.stitching as st

    assert "matplotlib" not in open(st.__file__).read()


def test_show_slices_shows_exactly_the_requested_slices(vol):
    img, _ = vol
    fig = viz.show_slices(img, [0, 3, 9])
    assert len(fig.axes) == 3
    for ax, k in zip(fig.axes, [0, 3, 9]):
        np.testing.assert_array_equal(ax.images[0].get_array(), img[:, :, k])
        assert ax.get_title() == f"slice {k}"
    with pytest.raises(IndexError, match="outside a volume of depth 10"):
        viz.show_slices(img, [10])
    fig = viz.show_slices(img, [2, 2], titles=["original", "shuffled"])
    assert [ax.get_title() for ax in fig.axes] == ["original", "shuffled"]
    with pytest.raises(ValueError, match="1 titles for 2 slices"):
        viz.show_slices(img, [2, 2], titles=["original"])


def test_montage_spreads_slices_over_the_label(vol):
    img, lab = vol
    fig = viz.montage(img, n=4)
    assert [ax.get_title() for ax in fig.axes] == ["slice 0", "slice 3", "slice 6", "slice 9"]
    fig = viz.montage(img, n=3, label=lab)  # foreground in slices 2..7
    assert [ax.get_title() for ax in fig.axes] == ["slice 2", "slice 4", "slice 7"]
    with pytest.raises(ValueError, match="3D"):
        viz.montage(img[:, :, 0])


def test_show_mosaic_draws_grid_numbers_and_hatches_empty_cells(vol):
    img, lab = vol  # 10 slices -> 4x4 grid, 6 empty cells
    layout = make_layout(img.shape, out_size=128)
    mos = stitch(img, layout)
    fig = viz.show_mosaic(mos, layout, label=stitch(lab, layout, is_label=True))
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), mos)
    assert len(ax.lines) == 2 * (layout.grid + 1)
    assert sorted(int(t.get_text()) for t in ax.texts) == list(range(10))
    assert len(ax.patches) == 16 - 10
    assert "4x4 grid" in ax.get_title()


def test_overlay_legend_and_image(vol):
    img, lab = vol
    pred = np.roll(lab, 2, axis=0)
    fig = viz.overlay(img[:, :, 4], lab[:, :, 4], pred[:, :, 4])
    ax = fig.axes[0]
    np.testing.assert_array_equal(ax.images[0].get_array(), img[:, :, 4])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["ground truth", "prediction"]
    fig = viz.overlay(img[:, :, 4], label=lab[:, :, 4])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["ground truth"]
    with pytest.raises(ValueError, match="differs"):
        viz.overlay(img[:, :, 4], lab[:5, :, 4])


def test_plot_volume_overlays_one_panel_per_slice(vol):
    img, lab = vol
    fig = viz.plot_volume_overlays(img, lab, lab, slices=[2, 5])
    assert len(fig.axes) == 2
    np.testing.assert_array_equal(fig.axes[1].images[0].get_array(), img[:, :, 5])
    assert fig.axes[0].get_legend() is not None and fig.axes[1].get_legend() is None


def test_confidence_map_shows_max_probability(vol):
    _, lab = vol
    fg = np.where(lab > 0, 0.9, 0.2).astype(np.float32)
    prob = np.stack([1 - fg, fg])
    fig = viz.plot_confidence_map(prob, slices=[3, 4])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 2
    np.testing.assert_allclose(panels[0].images[0].get_array(), prob.max(0)[:, :, 3])
    assert f"{prob.max(0).mean():.4f}" in fig._suptitle.get_text()


def test_dice_vs_confidence_counts_tau_split():
    fig = viz.plot_dice_vs_confidence([0.99, 0.98, 0.985, 0.9], [0.8, 0.7, 0.75, 0.4], tau=0.985)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "high confidence (>= tau): 2" in labels and "low confidence (< tau): 2" in labels
    assert "tau = 0.985" in labels


def test_plot_curves_from_dicts_and_csv(tmp_path):
    hist = [{"step": s, "loss": 1.0 / (s + 1)} for s in range(5)]
    hist[4]["dice"] = 0.5
    fig = viz.plot_curves(hist, ["loss", "dice"])
    assert [ax.get_title() for ax in fig.axes] == ["loss", "dice"]
    np.testing.assert_allclose(fig.axes[0].lines[0].get_ydata(), [1.0 / (s + 1) for s in range(5)])
    assert list(fig.axes[1].lines[0].get_xdata()) == [4]
    csv_path = tmp_path / "h.csv"
    csv_path.write_text("step,loss\n0,2.0\n10,1.0\n")
    fig = viz.plot_curves(csv_path)
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [0, 10])
    with pytest.raises(KeyError, match="available"):
        viz.plot_curves(hist, ["acc"])


def test_plot_curves_compare_one_line_per_run():
    a = [{"iter": i, "loss": 1.0 - 0.1 * i} for i in range(5)]
    b = [{"iter": i, "loss": 0.8 - 0.1 * i, "loss_sfr": 0.3} for i in range(5)]
    fig = viz.plot_curves_compare({"baseline": a, "+SFR": b}, ["loss", "loss_sfr"])
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["baseline", "+SFR"]
    np.testing.assert_allclose(fig.axes[0].lines[1].get_ydata(), [0.8 - 0.1 * i for i in range(5)])
    assert [t.get_text() for t in fig.axes[1].get_legend().get_texts()] == ["+SFR"]
    # +SFR keeps its colour on the panel where it is the only run
    assert fig.axes[1].lines[0].get_color() == fig.axes[0].lines[1].get_color() != fig.axes[0].lines[0].get_color()


def test_case_bars_heights_and_groups():
    rows = [{"name": f"c{i}", "dice": d} for i, d in enumerate([0.5, 0.7, 0.9])]
    fig = viz.plot_case_bars(rows, "dice")
    ax = fig.axes[0]
    np.testing.assert_allclose([p.get_height() for p in ax.patches], [0.5, 0.7, 0.9])
    assert ax.get_legend().get_texts()[0].get_text() == "mean 0.700"
    rows2 = [dict(r, method="A") for r in rows] + [dict(r, method="B", dice=1.0) for r in rows]
    fig = viz.plot_case_bars(rows2, "dice", group_key="method")
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == ["A: mean 0.700", "B: mean 1.000"]
    counts = [{"name": "encoder", "parameters": 800_000}, {"name": "prompt", "parameters": 6_000}]
    fig = viz.plot_case_bars(counts, "parameters", mean=False, log=True)
    assert fig.axes[0].get_legend() is None and not fig.axes[0].lines and fig.axes[0].get_yscale() == "log"


def test_case_bars_one_bar_per_case_for_disjoint_groups_and_no_names_when_crowded():
    rows = [{"name": f"v{i:02d}", "fg": float(i), "role": "labeled" if i == 0 else "unlabeled" if i < 70 else "test"}
            for i in range(80)]
    fig = viz.plot_case_bars(rows, "fg", group_key="role")
    ax = fig.axes[0]
    bars = [p for p in ax.patches if np.isfinite(p.get_height())]
    assert len(bars) == 80  # one bar per volume, not one slot per (volume, role)
    np.testing.assert_allclose(sorted(p.get_x() + p.get_width() / 2 for p in bars), np.arange(80), atol=1e-9)
    assert all(abs(p.get_width() - 0.8) < 1e-9 for p in bars)
    assert fig.get_size_inches()[0] <= 12.0
    assert ax.get_xticklabels() == [] and ax.get_xlabel() == "80 cases (names left out)"
    assert [t.get_text() for t in ax.get_legend().get_texts()] == [
        "labeled: mean 0.000", "unlabeled: mean 35.000", "test: mean 74.500"]
    few = viz.plot_case_bars(rows[:5], "fg")
    assert [t.get_text() for t in few.axes[0].get_xticklabels()] == [f"v{i:02d}" for i in range(5)]


def test_slice_viewer_is_an_intslider_widget(vol):
    import ipywidgets

    img, lab = vol
    w = viz.slice_viewer(img, lab)
    assert isinstance(w, ipywidgets.VBox)
    assert isinstance(w.children[0], ipywidgets.IntSlider)
    assert (w.slider.min, w.slider.max, w.slider.value) == (0, 9, 5)
    w.slider.value = 7  # redraw does not fail


def test_animate_slices_embeds_one_frame_per_slice(vol):
    img, lab = vol
    html = viz.animate_slices(img, lab, step=2)  # foreground in slices 2..7
    assert html.frames == [2, 4, 6]
    assert html.data.count("data:image/png;base64") == 3
    assert viz.animate_slices(img, step=3).frames == [0, 3, 6, 9]
    html = viz.animate_slices(img, max_frames=4)
    assert len(html.frames) <= 4


def test_save_figure_writes_a_png_of_the_figure_size_and_closes_it(tmp_path):
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 3))
    ax.imshow(np.zeros((8, 8)))
    path = viz.save_figure(fig, tmp_path / "sub" / "a.png", dpi=50)
    assert path == tmp_path / "sub" / "a.png"
    head = path.read_bytes()[:24]
    assert head[:4] == b"\x89PNG"
    width, height = int.from_bytes(head[16:20], "big"), int.from_bytes(head[20:24], "big")
    assert 0 < width <= 4 * 50 and 0 < height <= 3 * 50  # tight bounding box: at most the figure
    assert fig.number not in plt.get_fignums()


def test_viz_splits_static_figures_from_interactive_viewers():
    from sfr_teach.viz import figures, interactive

    assert viz.slice_viewer is interactive.slice_viewer and viz.animate_slices is interactive.animate_slices
    assert viz.overlay is figures.overlay and viz.plot_curves is figures.plot_curves
    assert not hasattr(viz, "save_run_figures")  # the pipeline writes its own figures
    assert set(viz.__all__) == set(figures.__all__) | set(interactive.__all__)
    src = open(figures.__file__).read()
    assert "ipywidgets" not in src and "IPython" not in src


def test_many_curves_wrap_to_rows():
    hist = [{"step": i, **{f"k{j}": float(i * j) for j in range(5)}} for i in range(3)]
    fig = viz.plot_curves(hist, [f"k{j}" for j in range(5)])
    assert len(fig.axes) == 5
    assert len({round(ax.get_position().y0, 3) for ax in fig.axes}) == 2  # two rows of at most 3


def test_sfr_comparison_draws_seed_means_and_paired_points():
    rows = [{"method": "mean_teacher", "baseline": [0.40, 0.44, 0.42], "sfr": [0.50, 0.52, 0.54],
             "diffs": [0.1, 0.2, -0.05, 0.15], "p": 0.01, "pseudo_label_dice": 0.55},
            {"method": "self_training", "baseline": [0.30], "sfr": [0.36], "diffs": [0.06, 0.06]},
            {"method": "ua_mt", "baseline": [0.3], "sfr": []}]  # no +SFR run: left out
    fig = viz.plot_sfr_comparison(rows)
    a, b = fig.axes
    assert [t.get_text() for t in a.get_yticklabels()] == ["mean_teacher", "self_training"]
    means = sorted(round(float(line.get_xydata()[0][0]), 6) for line in a.lines if line.get_marker() == "o")
    assert means == [30.0, 36.0, 42.0, 52.0]
    assert [c.get_offsets().shape[0] for c in b.collections] == [4, 2]  # one point per case
    diamonds = sorted(round(float(line.get_xdata()[0]), 6) for line in b.lines if line.get_marker() == "D")
    assert diamonds == [6.0, 10.0]
    assert any("p=0.01" in t.get_text() for t in b.texts)
    with pytest.raises(ValueError, match="both a baseline and a \\+SFR run"):
        viz.plot_sfr_comparison([{"method": "x", "baseline": [0.1], "sfr": []}])


def test_gain_vs_pseudo_label_plots_one_point_per_case():
    fig = viz.plot_gain_vs_pseudo_label([0.6, 0.2, 0.9], [0.3, 0.5, 0.8], [0.2, -0.1, 0.0])
    ax = fig.axes[0]
    assert np.allclose(ax.collections[0].get_offsets(), [[60, 30], [20, 50], [90, 80]])


def test_before_after_plots_each_case_once_per_group():
    before = {"a": 0.5, "b": 0.4, "c": 0.8}
    after = {"a": 0.5, "b": 0.6, "c": 0.7, "d": 0.9}  # d has no before: skipped
    fig = viz.plot_before_after(before, after, {"a": "high", "b": "low", "c": "low"}, labels=("SFR", "SFR+"))
    ax = fig.axes[0]
    assert np.allclose(ax.collections[0].get_offsets(), [[50, 50]])
    assert np.allclose(ax.collections[1].get_offsets(), [[40, 60], [80, 70]])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["high: 1 cases, mean change +0.0",
                                                                    "low: 2 cases, mean change +5.0"]
    assert ax.get_xlabel() == "SFR (Dice %)"
    with pytest.raises(ValueError, match="no case has both"):
        viz.plot_before_after({"a": 0.1}, {"b": 0.2})
