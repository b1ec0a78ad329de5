"""Every lesson runs top to bottom through papermill and records the numbers it teaches.

A lesson's source is ``notebooks/NN_name.md`` (MyST, paired with its executed ``.ipynb``; the pairing is
tested in ``test_lessons_paired.py``): the tests execute the ``.md`` itself, converted by jupytext.

CI (marker ``notebooks``): preset ``smoke`` on synthetic phantoms; lessons 03-10 share one cache
folder, so SAM is fine-tuned once per test session. Each test asserts on the values the
notebook recorded (``record_path``), e.g. stitching error 0, loss going down, Dice above a floor.

GPU (marker ``gpu``): the same notebooks at the ``classroom`` preset on the real LA data with
larger budgets, run on CUDA, with Dice floors; skipped (with the reason) without CUDA or LA data.
    python -m pytest tests/test_notebooks.py -m gpu

The kernel is ``python3``; make sure it is this interpreter's
(``python -m ipykernel install --sys-prefix --name python3``, as .ci/run does).
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Dict

import pytest

REPO = Path(__file__).resolve().parents[1]
NB_DIR = REPO / "notebooks"

pytestmark = pytest.mark.notebooks


@pytest.fixture(scope="session")
def kernel_env():
    """Put this interpreter first on PATH so the ``python3`` kernel (argv ``python``) is the same environment."""
    old = os.environ.get("PATH", "")
    os.environ["PATH"] = str(Path(sys.executable).parent) + os.pathsep + old
    os.environ.setdefault("OMP_NUM_THREADS", os.environ.get("SFR_TEST_THREADS", "2"))
    os.environ.setdefault("SFR_NO_FIGURES", "1")
    os.environ["TQDM_DISABLE"] = "1"  # no progress-bar widgets in the kernel's outputs
    yield
    os.environ["PATH"] = old


@pytest.fixture(scope="session")
def nb_cache(tmp_path_factory) -> Path:
    """One results folder for the whole session: lessons 03-10 reuse SAM and its pseudo-labels."""
    return tmp_path_factory.mktemp("nb_cache")


def run_notebook(name: str, out_dir: Path, cache: Path, **params: Any) -> Dict[str, Any]:
    """Execute the lesson source ``notebooks/<name>.md`` with papermill; return what it recorded."""
    import jupytext
    import papermill as pm

    path = NB_DIR / f"{name}.md"
    if not path.is_file():
        pytest.fail(f"missing lesson source {path}")
    source = out_dir / f"{name}.source.ipynb"
    jupytext.write(jupytext.read(path), source, fmt="ipynb")
    record = out_dir / f"{name}.json"
    # seed 1337: the seed the smoke assertions were set with (a committed page may show another seed)
    params = {"preset": "smoke", "seed": 1337, "cache_dir": str(cache), "record_path": str(record), **params}
    pm.execute_notebook(str(source), str(out_dir / f"{name}.ipynb"), parameters=params, kernel_name="python3",
                        cwd=str(NB_DIR), progress_bar=False, execution_timeout=900)
    assert record.is_file(), f"{name} recorded nothing (record_path={record})"
    return json.loads(record.read_text())


@pytest.fixture()
def run(kernel_env, nb_cache, tmp_path):
    def _run(name: str, **params: Any) -> Dict[str, Any]:
        return run_notebook(name, tmp_path, nb_cache, **params)

    return _run


LESSONS = ["01_data", "02_stitching", "03_sam_lora", "04_pseudo_labels", "05_self_training", "06_mean_teacher",
           "07_ua_mt", "08_ac_mt", "09_magicnet", "10_sfr_plus", "11_results"]


def test_lesson_sources_share_the_package_setup():
    """Each .md: badge, the Colab install of sfr_teach.lesson, ONE parameters cell, then lesson.setup(...)."""
    import jupytext

    from sfr_teach.lesson import COLAB_INSTALL

    assert sorted(p.stem for p in NB_DIR.glob("[0-9][0-9]_*.md")) == LESSONS
    for name in LESSONS:
        nb = jupytext.read(NB_DIR / f"{name}.md")
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name}: exactly one cell must be tagged 'parameters'"
        assert "colab-badge.svg" in nb.cells[0].source, f"{name}: the first cell must carry the Open in Colab badge"
        assert nb.cells[1].source.strip() == COLAB_INSTALL, f"{name}: the second cell must be lesson.COLAB_INSTALL"
        assert nb.cells[2] is tagged[0], f"{name}: the parameters cell comes third"
        assert "record_path = None" in tagged[0].source and "cache_dir" in tagged[0].source
        assert "lesson.setup(preset" in nb.cells[3].source, f"{name}: the fourth cell must call lesson.setup"
        code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
        for copied in ("get_config(", "resolve_device(", "seed_everything(", "def record"):
            assert copied not in code, f"{name}: {copied!r} belongs to sfr_teach.lesson.setup, not the lesson"
        assert any("hide-input" in c.metadata.get("tags", []) for c in nb.cells), f"{name}: hidden solution missing"


def test_committed_notebooks_show_outputs_and_name_their_setup():
    import nbformat

    assert sorted(p.stem for p in NB_DIR.glob("[0-9][0-9]_*.ipynb")) == LESSONS
    for name in LESSONS:
        nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
        outputs = [o for c in nb.cells for o in c.get("outputs", [])]
        assert not any(o.get("output_type") == "error" for o in outputs), f"{name}: the committed notebook holds an error"
        assert not any("injected-parameters" in c.metadata.get("tags", []) for c in nb.cells), \
            f"{name}: papermill's injected cell was left in; re-run it with scripts/run_notebooks.py"
        assert not any("application/vnd.jupyter.widget-view+json" in o.get("data", {}) for o in outputs), \
            f"{name}: widget outputs cannot render in the book; re-run it with scripts/run_notebooks.py"
        assert any("image/png" in o.get("data", {}) for o in outputs), f"{name}: the committed notebook has no figure"
        first = next(o for o in outputs if o.get("output_type") == "stream")
        for fact in ("This page was executed with preset", "SAM:", "device:", "seed"):
            assert fact in first["text"], f"{name}: the first output must name {fact!r}; got {first['text'][:300]!r}"


def test_01_data(run):
    rec = run("01_data")
    setup = rec["lesson"]  # what the page's first output says
    assert setup["preset"] == "smoke" and setup["seed"] == 1337 and setup["data"].startswith("synthetic")
    assert "tiny SAM" in setup["sam"] and (setup["device"].startswith("CPU") or _cuda())
    assert setup["split"] == {"labeled": 1, "unlabeled": 4, "test": 3, "test_source": "validation"}
    assert rec["n_labeled"] == 1 and rec["n_unlabeled"] == 4
    assert rec["image_shape"] == [48, 48, 32]
    assert rec["label_values"] == [0, 1]
    assert rec["solution_ok"] is True


def test_02_stitching(run):
    rec = run("02_stitching")
    assert rec["stitch_label_error"] == 0 and rec["stitch_image_error"] == 0.0
    assert 0 < rec["full_volume_label_changed_fraction"] < 0.01  # resized whole volume: near-exact
    dice = rec["strategy_roundtrip_dice"]
    assert dice["grid (SFR)"] == 1.0 and dice["upsample"] == 1.0 and dice["downsample"] < 0.99
    assert rec["solution_ok_stitch"] is True and rec["solution_ok_unstitch"] is True


def test_03_sam_lora(run):
    rec = run("03_sam_lora")
    assert rec["lora_params"] == rec["lora_params_expected"] == 2 * 4 * (64 + 192)  # smoke tiny SAM: 2 blocks, dim 64
    assert rec["sam_loss_last"] < 0.7 * rec["sam_loss_first"]
    assert rec["solution_ok"] is True


def test_04_pseudo_labels(run):
    rec = run("04_pseudo_labels")
    assert rec["n_pseudo"] == 4
    assert all(0.5 <= c <= 1.0 for c in rec["pseudo_confidence"])
    assert sum(rec["pseudo_dice"]) / 4 > 0.5  # measured 0.81 on the phantoms
    assert rec["solution_ok"] is True


def _check_retrain(rec: Dict[str, Any], floor: float = 0.4) -> None:
    for tag in ("baseline", "sfr"):
        assert rec[f"{tag}_loss_last"] < rec[f"{tag}_loss_first"], f"{tag}: the training loss did not go down"
        assert rec[f"{tag}_dice"] > floor, f"{tag}: test Dice {rec[f'{tag}_dice']:.3f} below the floor {floor}"
        assert rec[f"{tag}_cases"] == 3
    assert rec["solution_ok"] is True


@pytest.mark.parametrize("name", ["05_self_training", "06_mean_teacher", "09_magicnet"])
def test_retraining_lessons(run, name):
    rec = run(name)
    _check_retrain(rec)
    if name == "06_mean_teacher":
        assert rec["solution_ok_rampup"] is True


def test_07_ua_mt(run):
    rec = run("07_ua_mt")
    _check_retrain(rec)
    assert 0 < rec["uncertainty_max"] <= 0.6932


def test_08_ac_mt(run):
    rec = run("08_ac_mt")
    _check_retrain(rec)
    assert 0 < rec["ambiguous_fraction_075"] < 0.5


def test_10_sfr_plus(run):
    rec = run("10_sfr_plus")
    assert rec["n_high"] >= 1 and rec["n_high"] + rec["n_low"] == 4
    assert rec["pseudo_dice_sfr_plus"] > 0.5
    assert rec["mt_sfr_plus_dice"] > 0.4
    assert rec["solution_ok"] is True


def test_11_results(run, nb_cache):
    expected = len(list((nb_cache / "smoke").glob("*/metrics.csv")))  # runs made by earlier lessons this session
    rec = run("11_results")
    assert rec["session_runs"] == expected
    assert rec["solution_ok"] is True


def test_11_results_shows_the_committed_seeds_and_classroom_tables(run, tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    (res / "la_classroom.csv").write_text(
        "method,variant,dice_mean,dice_std\nmean_teacher,baseline,0.5,0.1\nmean_teacher,SFR,0.7,0.05\n")
    (res / "la_classroom.md").write_text("| method | variant | Dice % |\n|---|---|---|\n| mean_teacher | SFR | 70.0 |\n")
    (res / "la_seeds.csv").write_text("row,method,variant,seed,fold,dice\nmt,mean_teacher,baseline,1,4,0.4\n"
                                      "mt,mean_teacher,baseline,2,4,0.5\nmt_sfr,mean_teacher,SFR,1,4,0.6\n")
    (res / "la_seeds.md").write_text("| row | seeds |\n|---|---|\n| mt | 2 |\n| mt_sfr | 1 |\n")
    rec = run("11_results", results_dir=str(res))
    assert rec["classroom_rows"] == 2 and rec["seeds_runs"] == 3


# ----------------------------------------------------------------------------- GPU: real LA, larger budgets
def _cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return False


@pytest.mark.gpu
@pytest.mark.skipif(not _cuda(), reason="needs CUDA: runs the lessons on real LA at the classroom preset with larger budgets")
@pytest.mark.parametrize("name,floor", [("04_pseudo_labels", 0.3), ("06_mean_teacher", 0.5), ("10_sfr_plus", 0.5)])
def test_gpu_lessons_on_real_la(kernel_env, la_dir, tmp_path_factory, name, floor):
    cache = tmp_path_factory.getbasetemp() / "gpu_cache"
    cache.mkdir(exist_ok=True)
    out = tmp_path_factory.mktemp(name)
    rec = run_notebook(name, out, cache, preset="classroom", data_dir=str(la_dir), labeled=4,
                       sam_steps=600, retrain_steps=1500)
    if name == "04_pseudo_labels":
        assert sum(rec["pseudo_dice"]) / len(rec["pseudo_dice"]) > floor
    elif name == "06_mean_teacher":
        assert rec["sfr_dice"] > floor and rec["baseline_dice"] > floor - 0.2
        assert rec["sfr_loss_last"] < rec["sfr_loss_first"]
    else:
        assert rec["mt_sfr_plus_dice"] > floor
