"""The whole pipeline at the smoke preset: results folder, reuse of stages, SFR+ and the CLI."""
import json

import numpy as np
import pytest

from sfr_teach.cli import main
from sfr_teach.config import get_config
from sfr_teach.pipeline import load_data, run_pipeline


@pytest.fixture(scope="module")
def sfr_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("smoke_sfr")
    cfg = get_config("smoke", {"out_dir": str(out), "retrain.sfr": True, "retrain.method": "mean_teacher"})
    return cfg, run_pipeline(cfg)


def test_smoke_data_split_is_disjoint():
    cfg = get_config("smoke")
    data = load_data(cfg)
    names = data.names()
    assert len(names["labeled"]) == cfg.data.labeled
    assert len(names["test"]) == cfg.data.val
    assert len(names["unlabeled"]) == cfg.data.synthetic_cases - cfg.data.labeled - cfg.data.val
    flat = sum(names.values(), [])
    assert len(set(flat)) == len(flat)


def test_results_folder_is_complete(sfr_run):
    cfg, res = sfr_run
    out = cfg.out_dir
    import pathlib

    out = pathlib.Path(out)
    for f in ("config.json", "provenance.json", "metrics.csv", "metrics.json"):
        assert (out / f).is_file(), f
    assert (out / "sam" / "final.pt").is_file()
    assert (out / "pseudo_labels" / "summary.json").is_file()
    m = json.loads((out / "metrics.json").read_text())
    assert m["summary"]["variant"] == "SFR"
    assert "offline tiny SAM" in m["summary"]["sam"]
    assert len(m["cases"]) == cfg.data.val
    dice = m["summary"]["metrics"]["dice"]["mean"] if isinstance(m["summary"]["metrics"]["dice"], dict) else m["summary"]["metrics"]["dice"]
    assert 0.0 <= dice <= 1.0
    # every unlabelled volume got a pseudo-label of its exact shape
    data = res["data"]
    assert [p.name for p in res["pseudo_labels"]] == [v.name for v in data.unlabeled]
    for p, v in zip(res["pseudo_labels"], data.unlabeled):
        assert p.label.shape == v.image.shape
        assert 0.0 < p.confidence <= 1.0


def test_stages_are_reused_by_a_later_run(sfr_run, tmp_path):
    cfg, res = sfr_run
    cfg2 = get_config("smoke", {"out_dir": str(tmp_path / "b"), "sam_from": cfg.out_dir,
                                "retrain.sfr": True, "retrain.method": "self_training"})
    res2 = run_pipeline(cfg2)
    assert not (tmp_path / "b" / "sam").exists()  # SAM came from the first run
    for a, b in zip(res["pseudo_labels"], res2["pseudo_labels"]):
        np.testing.assert_array_equal(a.label, b.label)


def test_cli_run_sfr_plus(tmp_path, capsys):
    out = tmp_path / "plus"
    rc = main(["run", "--preset", "smoke", "--sfr-plus", "--method", "supervised", "--out", str(out),
               "--set", "sam.tau=0.5", "--set", "sam.sfr_plus_steps=5", "--set", "retrain.steps=10"])
    assert rc == 0
    prov = json.loads((out / "metrics.json").read_text())["summary"]
    assert prov["variant"] == "SFR+"
    sel = json.loads((out / "sfr_plus" / "selection.json").read_text())
    assert set(sel["high"]) | set(sel["low"]) == set(json.loads((out / "provenance.json").read_text())["names"]["unlabeled"])


def test_online_pseudo_labels_run_sam_on_every_crop(sfr_run, tmp_path):
    """--pseudo-labels online: the trainer calls SAM on each unlabelled crop; the SFR term is logged."""
    import csv

    cfg, _ = sfr_run
    out = tmp_path / "online"
    cfg2 = get_config("smoke", {"out_dir": str(out), "sam_from": cfg.out_dir, "retrain.sfr": True,
                                "retrain.pseudo_labels": "online", "retrain.steps": 6, "retrain.log_every": 1})
    res = run_pipeline(cfg2)
    assert res["summary"]["pseudo_labels"] == "online"
    rows = list(csv.DictReader(open(out / "retrain" / "log.csv")))
    assert len(rows) == 6 and all(float(r["loss_sfr"]) > 0 for r in rows)


def test_write_figures_draws_the_run_pngs(sfr_run, tmp_path):
    from sfr_teach.pipeline import write_figures

    cfg, res = sfr_run
    history = [{"iter": i, "loss": 1.0 / (i + 1), "loss_sfr": 0.5, "lr": 0.01} for i in range(5)]
    paths = write_figures(tmp_path / "figures", history, res["table"].rows, res["pseudo_labels"], res["data"],
                          cfg.sam.tau)
    assert sorted(p.name for p in paths) == ["curves.png", "dice_per_case.png", "dice_vs_confidence.png",
                                              "pseudo_label_overlay.png"]
    assert all(p.parent == tmp_path / "figures" and p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    # a baseline run (no pseudo-labels) gets the curves and the per-case bars only
    paths = write_figures(tmp_path / "base", history, res["table"].rows, None, res["data"], cfg.sam.tau)
    assert sorted(p.name for p in paths) == ["curves.png", "dice_per_case.png"]


def test_data_dir_is_stored_relative_never_absolute(tmp_path, monkeypatch):
    from sfr_teach.pipeline import data_dir

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SFR_LA_DIR", raising=False)
    cfg = get_config("classroom")
    assert cfg.data.data_dir is None and data_dir(cfg) == "data/LA"  # the resolver's default
    monkeypatch.setenv("SFR_LA_DIR", str(tmp_path.parent / "shared" / "LA"))
    assert data_dir(cfg) == "../shared/LA"  # absolute, made relative to the working directory
    cfg.data.data_dir = "my/LA"
    assert data_dir(cfg) == "my/LA"  # as given
    cfg.data.dataset = "nifti"
    cfg.data.data_dir = None
    with pytest.raises(ValueError, match="needs data.data_dir"):
        data_dir(cfg)
    assert data_dir(get_config("smoke")) is None
