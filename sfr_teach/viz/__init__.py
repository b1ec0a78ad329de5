"""Figures for the lessons and the results folder; the only part of ``sfr_teach`` that imports matplotlib.

* :mod:`sfr_teach.viz.figures` -- static figures (slices, mosaics, overlays, confidence, curves,
  per-case bars), each returned as a matplotlib Figure; :func:`save_figure` writes a PNG;
* :mod:`sfr_teach.viz.interactive` -- :func:`slice_viewer` (ipywidgets, live kernels) and
  :func:`animate_slices` (a JavaScript animation that also plays in the built book).

Every public name of both is re-exported here (``from sfr_teach import viz; viz.overlay(...)``).
matplotlib, ipywidgets and IPython are imported inside the functions, so importing ``viz`` is cheap.
"""
from . import figures, interactive
from .figures import *  # noqa: F401,F403  (the names listed in figures.__all__)
from .figures import GT_COLOR, PRED_COLOR  # noqa: F401  (the colours lessons draw with)
from .interactive import *  # noqa: F401,F403

__all__ = [*figures.__all__, *interactive.__all__]
