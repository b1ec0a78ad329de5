"""Every lesson notebook runs top to bottom through papermill and records the numbers it teaches.

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
    yield
    os.environ["PATH"] = old


@pytest.fixture(scope="session")
def nb_cache(tmp_path_factory) -> Path:
    """One results folder for the whole session: lessons 03-10 reuse SAM and its pseudo-labels."""
    return tmp_path_factory.mktemp("nb_cache")


def run_notebook(name: str, out_dir: Path, cache: Path, **params: Any) -> Dict[str, Any]:
    """Execute ``notebooks/<name>.ipynb`` with papermill; return what it recorded."""
    import papermill as pm

    path = NB_DIR / f"{name}.ipynb"
    if not path.is_file():
        pytest.fail(f"missing notebook {path}")
    record = out_dir / f"{name}.json"
    params = {"preset": "smoke", "cache_dir": str(cache), "record_path": str(record), **params}
    pm.execute_notebook(str(path), str(out_dir / f"{name}.ipynb"), parameters=params, kernel_name="python3",
                        cwd=str(NB_DIR), progress_bar=False, execution_timeout=900)
    assert record.is_file(), f"{name} recorded nothing (record_path={record})"
    return json.loads(record.read_text())


@pytest.fixture()
def run(kernel_env, nb_cache, tmp_path):
    def _run(name: str, **params: Any) -> Dict[str, Any]:
        return run_notebook(name, tmp_path, nb_cache, **params)

    return _run


def test_notebook_inventory():
    names = sorted(p.stem for p in NB_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert names[:2] == ["01_data", "02_stitching"]
    import nbformat

    for name in names:
        nb = nbformat.read(NB_DIR / f"{name}.ipynb", as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, f"{name}: exactly one cell must be tagged 'parameters'"
        assert "colab-badge.svg" in nb.cells[0].source, f"{name}: the first cell must carry the Open in Colab badge"
        assert "google.colab" in nb.cells[1].source, f"{name}: the second cell must be the Colab-only install"
        assert "record_path = None" in tagged[0].source and "cache_dir" in tagged[0].source
        assert any("hide-input" in c.metadata.get("tags", []) for c in nb.cells), f"{name}: hidden solution missing"
        assert not any(o.get("output_type") == "error" for c in nb.cells for o in c.get("outputs", [])), \
            f"{name}: the committed notebook holds an error output"


def test_01_data(run):
    rec = run("01_data")
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
