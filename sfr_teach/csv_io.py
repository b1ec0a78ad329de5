"""One CSV writer for every table the package writes (logs, per-case metrics, pseudo-label summaries).

``write_csv(path, rows)`` writes a header and one line per row dict; the columns are the keys in
the order they first appear over all rows (a key missing from a row is left empty).
``write_csv(path, rows, append=True)`` adds rows to an existing file (the header only when the
file is new), as training logs do; the existing header's columns are kept then.
"""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Union

__all__ = ["write_csv"]


def _columns(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    cols: List[str] = []
    for r in rows:
        cols += [k for k in r if k not in cols]
    return cols


def write_csv(path: Union[str, Path], rows: Iterable[Mapping[str, Any]], columns: Optional[Sequence[str]] = None,
              append: bool = False) -> Path:
    """Write (or with ``append`` add) ``rows`` to ``path``; returns the path. ``columns``: the
    header (default: every key, in first-seen order); keys outside it are dropped."""
    path = Path(path)
    rows = list(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    new = not (append and path.is_file() and path.stat().st_size > 0)
    if columns is None:
        if new:
            columns = _columns(rows)
        else:
            with path.open(newline="") as f:
                columns = next(csv.reader(f))
    with path.open("w" if new else "a", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(columns), extrasaction="ignore")
        if new:
            w.writeheader()
        w.writerows(rows)
    return path
