"""One rule for the LA folder (argument, else $SFR_LA_DIR, else data/LA) and paths fit for results files."""
from pathlib import Path

import pytest

from sfr_teach.data import MissingDataError, LADataset, portable_path, resolve_la_dir


def test_resolve_la_dir_prefers_argument_then_environment_then_default(monkeypatch):
    monkeypatch.delenv("SFR_LA_DIR", raising=False)
    assert resolve_la_dir() == Path("data/LA")
    assert resolve_la_dir("") == Path("data/LA")
    monkeypatch.setenv("SFR_LA_DIR", "elsewhere/LA")
    assert resolve_la_dir() == Path("elsewhere/LA")
    assert resolve_la_dir("given/LA") == Path("given/LA")
    assert not resolve_la_dir().is_absolute()  # never made absolute


def test_a_missing_resolved_folder_names_itself_and_the_download(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SFR_LA_DIR", raising=False)
    with pytest.raises(MissingDataError, match=r"data/LA: LA data folder not found.*sfr-teach data download la"):
        LADataset(resolve_la_dir())


def test_portable_path_keeps_relative_paths_and_relativises_absolute_ones(tmp_path):
    assert portable_path("data/LA") == "data/LA"
    assert portable_path(Path("../shared/data/LA")) == "../shared/data/LA"
    repo = tmp_path / "repo"
    assert portable_path(tmp_path / "shared" / "data" / "LA", start=repo) == "../shared/data/LA"
    assert portable_path(repo / "data" / "LA", start=repo) == "data/LA"
    assert portable_path(repo, start=repo) == "."
