"""No absolute path of any machine in the repository: tracked files and everything under results/.

A results file, lesson output or doc example that names the folder of the machine that made it
(a Unix home / root / work / temp folder, a Windows drive) breaks on every other machine and leaks
where it was made. Data paths are stored as given relative to the repository (``data/LA``,
``../shared/data/LA``): see :func:`sfr_teach.data.portable_path`.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

#: an absolute Unix path into a machine's own folders, not inside a longer path, URL or base64 run;
#: a Windows drive path with at least one folder (``C:\Users\...``, JSON-escaped or not)
MACHINE_PATH = re.compile(
    r"(?<![\w+/.~-])/(?:work|root|home|tmp|Users)/"
    r"|(?<![\w])[A-Z]:(?:\\\\|\\)[A-Za-z][\w.-]*(?:\\\\|\\)"
)


def machine_paths(text: str) -> list:
    """``(line number, line)`` of every line of ``text`` holding an absolute machine path."""
    return [(i, line.strip()[:160]) for i, line in enumerate(text.splitlines(), 1) if MACHINE_PATH.search(line)]


def _text(path: Path):
    """The file as text, or None for binary files (images, checkpoints)."""
    data = path.read_bytes()
    if b"\0" in data[:8192]:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _offenders(paths) -> dict:
    found = {}
    for p in paths:
        text = _text(p) if p.is_file() else None
        hits = machine_paths(text) if text is not None else []
        if hits:
            found[str(p.relative_to(REPO))] = hits[:3]
    return found


def test_the_pattern_finds_machine_paths_and_ignores_lookalikes():
    for bad in ('"data": "LA h5 from /work/shared/data/LA"', "--out /tmp/shots", "cd /home/me/repo",
                "ckpt at /root/x.pt", r'"C:\\Users\\me\\LA"', r"D:\data\LA", "/Users/me/LA"):
        assert machine_paths(bad), bad
    for ok in ("data/LA", "../shared/data/LA", "https://example.org/home/page", "runs/tmp/x",
               "iVBORw0KGgo/tmp/Abc+/home/x", r'"    if not d:\n",', "~/work/LA", "a C: drive"):
        assert not machine_paths(ok), ok


def test_tracked_files_hold_no_machine_path():
    try:
        out = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout: the tracked files cannot be listed (results/ is checked on its own)")
    this = Path(__file__).resolve()  # holds the examples the pattern is tested on
    found = _offenders(REPO / name for name in out.decode().split("\0") if name and (REPO / name).resolve() != this)
    assert not found, (
        f"absolute machine paths in tracked files: {found}; write paths relative to the repository "
        "(e.g. data/LA, ../shared/data/LA; sfr_teach.data.portable_path)"
    )


def test_results_hold_no_machine_path():
    files = sorted(p for p in (REPO / "results").rglob("*") if p.is_file())
    assert files, "results/ is empty: the committed results table is missing"
    found = _offenders(files)
    assert not found, (
        f"absolute machine paths in results/: {found}; re-collect with data paths relative to the "
        "repository (the pipeline stores them so since sfr_teach.data.portable_path)"
    )
