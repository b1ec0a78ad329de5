"""Where the data lives: the one rule for the LA folder, and paths that travel between machines.

* :func:`resolve_la_dir` -- the LA folder: the path given, else ``$SFR_LA_DIR``, else ``data/LA``
  (relative paths are relative to the working directory, normally the repository root). Every
  entry point (pipeline, benchmarks, scripts, tests, lessons) asks this function; none keeps its
  own default.
* :func:`portable_path` -- a path as it may be written into a results file: relative paths stay
  exactly as given (``data/LA``), absolute ones become relative to the working directory
  (``<home>/shared/data/LA`` seen from ``<home>/repo`` -> ``../shared/data/LA``), so no
  results file carries the absolute path of the machine that made it.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Optional, Union

LA_ENV = "SFR_LA_DIR"
LA_DEFAULT = "data/LA"

PathLike = Union[str, Path]


def resolve_la_dir(given: Optional[PathLike] = None) -> Path:
    """The LA data folder (the one holding ``train.list``): ``given``, else ``$SFR_LA_DIR``, else ``data/LA``.

    The path is returned as given (never made absolute) and is not checked here:
    :class:`~sfr_teach.data.LADataset` raises a :class:`~sfr_teach.data.MissingDataError` naming
    the folder and the download command when it is not there.
    """
    if given is not None and str(given) != "":
        return Path(given)
    env = os.environ.get(LA_ENV, "")
    return Path(env) if env else Path(LA_DEFAULT)


def portable_path(path: PathLike, start: Optional[PathLike] = None) -> str:
    """``path`` as a string fit for a results file: relative paths unchanged, absolute ones relative to ``start``.

    ``start`` defaults to the working directory. Written with ``/`` on every system. An absolute
    path that has no relative form (another Windows drive) is returned unchanged.
    """
    p = Path(path)
    if p.is_absolute():
        try:
            p = Path(os.path.relpath(p, Path(start) if start is not None else Path.cwd()))
        except ValueError:  # another drive: no relative path exists
            return str(path)
    return str(PurePosixPath(*p.parts)) if p.parts else "."
