"""Each lesson's MyST source ``notebooks/NN_name.md`` and its executed ``.ipynb`` hold the same cells.

The comparison (:func:`sfr_teach.lesson.pairing_problems`) reads both with jupytext and compares cell
types, sources and tags; outputs and other metadata do not count. The tests below also show it catches
what it should (an edited source, a lost tag, a missing cell) and ignores what it should (outputs).
"""
from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import nbformat
import pytest

from sfr_teach.lesson import PAIRED_FORMATS, pairing_problems

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"
SOURCES = sorted(NB_DIR.glob("[0-9][0-9]_*.md"))


def test_every_lesson_is_a_pair():
    assert len(SOURCES) == 11
    assert sorted(p.stem for p in NB_DIR.glob("[0-9][0-9]_*.ipynb")) == [p.stem for p in SOURCES]


@pytest.mark.parametrize("md", SOURCES, ids=[p.stem for p in SOURCES])
def test_md_and_ipynb_agree(md):
    problems = pairing_problems(md)
    assert not problems, "\n".join(problems)
    assert f"formats: {PAIRED_FORMATS}" in md.read_text()


@pytest.mark.parametrize("md", SOURCES, ids=[p.stem for p in SOURCES])
def test_no_machine_path_in_a_lesson(md):
    machine = str(REPO.parent)
    for path in (md, md.with_suffix(".ipynb")):
        assert machine not in path.read_text(), f"{path} holds the absolute path {machine}"


@pytest.fixture()
def pair(tmp_path):
    md = SOURCES[0]
    for p in (md, md.with_suffix(".ipynb")):
        shutil.copy(p, tmp_path / p.name)
    return tmp_path / md.name, tmp_path / md.with_suffix(".ipynb").name


def _edit(ipynb: Path, fn) -> None:
    nb = nbformat.read(ipynb, as_version=4)
    fn(nb)
    nbformat.write(nb, ipynb)


def test_pairing_ignores_outputs_and_metadata(pair):
    md, ipynb = pair

    def strip(nb):
        for c in nb.cells:
            if c.cell_type == "code":
                c.outputs, c.execution_count = [], None
            c.metadata["collapsed"] = True
        nb.metadata["language_info"] = {"name": "python", "version": "3.99"}

    _edit(ipynb, strip)
    assert pairing_problems(md) == []


@pytest.mark.parametrize("change,what", [
    (lambda nb: setattr(nb.cells[5], "source", nb.cells[5].source + "\nprint('edited in Jupyter')"), "cell 5 (source"),
    (lambda nb: nb.cells[2].metadata.update(tags=[]), "cell 2 (tags"),
    (lambda nb: nb.cells.pop(), "(missing"),
    (lambda nb: nb.metadata["jupytext"].update(formats="ipynb,py:percent"), "jupytext formats"),
])
def test_pairing_reports_each_disagreement(pair, change, what):
    md, ipynb = pair
    _edit(ipynb, change)
    problems = pairing_problems(md)
    assert any(what in p for p in problems), problems


def test_run_notebooks_folds_values_but_never_paths():
    spec = importlib.util.spec_from_file_location("run_notebooks", REPO / "scripts" / "run_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    src = 'preset = "smoke"  # which preset\ndata_dir = None  # LA root\nseed = 1337\nrecord_path = None'
    folded = mod.fold_source(src, {"preset": "classroom", "data_dir": "/abs/LA", "seed": 7, "record_path": "/x.json"})
    assert folded == 'preset = "classroom"  # which preset\ndata_dir = None  # LA root\nseed = 7\nrecord_path = None'


def test_reuse_runs_copies_each_stage_to_the_folder_its_lesson_reads(tmp_path):
    spec = importlib.util.spec_from_file_location("run_notebooks", REPO / "scripts" / "run_notebooks.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    import json

    runs, cache = tmp_path / "la_seeds", tmp_path / "cache"
    for row, stages in {"uamt": ["retrain"], "uamt_sfr": ["sam", "pseudo_labels", "retrain"],
                        "mt_sfrplus": ["sam", "pseudo_labels", "sfr_plus", "retrain"], "st": ["retrain"]}.items():
        run = runs / row / "s1_f4"
        for stage in stages:
            (run / stage).mkdir(parents=True)
            (run / stage / "marker.txt").write_text(f"{row}/{stage}")
        (run / "config.json").write_text(json.dumps({"preset": "classroom", "seed": 1, "data": {"fold": "4"},
                                                     "sam": {"tau": 0.96}}))
        if row != "st":  # an unfinished run (no metrics.json) is not reused
            (run / "metrics.json").write_text("{}")
    (cache / "sam").mkdir(parents=True)  # what the cache holds is kept
    copied = mod.reuse_runs(runs, 1, cache, "classroom")
    assert len(copied) == 5  # uamt, uamt_sfr (pseudo-labels, retrain), mt_sfrplus (sfr_plus, retrain)
    assert (cache / "ua_mt_baseline/retrain/marker.txt").read_text() == "uamt/retrain"
    assert (cache / "ua_mt_sfr/retrain/marker.txt").read_text() == "uamt_sfr/retrain"
    assert (cache / "pseudo_labels/marker.txt").read_text() == "uamt_sfr/pseudo_labels"
    assert (cache / "sfr_plus_tau0.9600/sfr_plus/marker.txt").read_text() == "mt_sfrplus/sfr_plus"
    assert (cache / "mean_teacher_sfr_plus/retrain/marker.txt").read_text() == "mt_sfrplus/retrain"
    assert not (cache / "sam/marker.txt").exists() and not (cache / "self_training_baseline").exists()
    with pytest.raises(SystemExit, match="pass the seed the runs used"):
        mod.reuse_runs(runs, 1, tmp_path / "other", "paper")
