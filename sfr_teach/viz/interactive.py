"""Interactive viewers: an ipywidgets slice slider (live kernels) and a JavaScript animation (static pages).

:func:`slice_viewer` returns an ipywidgets widget that only runs in a live kernel;
:func:`animate_slices` returns a self-contained JavaScript animation (frames embedded as PNGs) that
also plays in the built book. Both draw with :func:`sfr_teach.viz.figures.overlay` (ground truth
green, prediction red); volumes are ``(H, W, D)`` with the slicing axis last.
"""
from __future__ import annotations

import sys
from typing import Any, Optional

import numpy as np

from .figures import GT_COLOR, PRED_COLOR, _check_volume, _contours, _np, _plt, overlay

__all__ = ["slice_viewer", "animate_slices"]


def slice_viewer(image: Any, label: Any = None, pred: Any = None, start: Optional[int] = None):
    """Interactive viewer for a live kernel: an ``IntSlider`` over the slices and the overlay below.

    Returns an ``ipywidgets.VBox`` (slider, output). In a static page (the built book) widgets do
    not run; use :func:`animate_slices` or :func:`montage` there.
    """
    import ipywidgets as widgets

    plt = _plt()
    img = _check_volume(image, "slice_viewer: image")
    depth = img.shape[2]
    slider = widgets.IntSlider(
        value=depth // 2 if start is None else int(start), min=0, max=depth - 1, step=1, description="slice",
        continuous_update=False,
    )
    out = widgets.Output()

    def draw(k: int) -> None:
        out.clear_output(wait=True)
        with out:
            fig = overlay(
                img[:, :, k],
                None if label is None else _np(label)[:, :, k],
                None if pred is None else _np(pred)[:, :, k],
                title=f"slice {k} / {depth - 1}",
            )
            if "ipykernel" in sys.modules:
                from IPython.display import display

                display(fig)
            plt.close(fig)

    slider.observe(lambda change: draw(change["new"]), names="value")
    draw(slider.value)
    box = widgets.VBox([slider, out])
    box.slider, box.output = slider, out  # handy for tests and students
    return box


def animate_slices(
    image: Any,
    label: Any = None,
    pred: Any = None,
    step: int = 1,
    interval: int = 150,
    max_frames: int = 40,
):
    """A JavaScript animation through the slices (play / pause / scrub), static-HTML safe.

    Uses matplotlib's ``FuncAnimation(...).to_jshtml()``: the frames are embedded as PNGs, so
    it plays in the built book without a kernel. With a ``label`` (else ``pred``) it plays through
    the slices that contain the structure. At most ``max_frames`` frames (``step`` is raised when
    needed). Returns an ``IPython.display.HTML`` object (``.data`` is the HTML;
    ``.frames`` the slice indices shown).
    """
    plt = _plt()
    from IPython.display import HTML
    from matplotlib.animation import FuncAnimation

    img = _check_volume(image, "animate_slices: image")
    depth = img.shape[2]
    lo, hi = 0, depth - 1
    mask = label if label is not None else pred
    if mask is not None:  # play through the slices that hold the structure
        fg = np.flatnonzero(_np(mask).reshape(-1, depth).any(axis=0))
        if fg.size:
            lo, hi = int(fg[0]), int(fg[-1])
    step = max(int(step), int(np.ceil((hi - lo + 1) / max_frames)))
    frames = list(range(lo, hi + 1, step))
    fig = overlay(
        img[:, :, frames[0]],
        None if label is None else _np(label)[:, :, frames[0]],
        None if pred is None else _np(pred)[:, :, frames[0]],
        title=f"slice {frames[0]}",
    )
    ax = fig.axes[0]
    fig.set_size_inches(3.6, 3.6)

    def update(k: int):
        for coll in list(ax.collections):
            coll.remove()
        ax.images[0].set_data(img[:, :, k])
        for mask, color, style in ((label, GT_COLOR, "-"), (pred, PRED_COLOR, "--")):
            if mask is not None:
                _contours(ax, _np(mask)[:, :, k], color, style=style)
        ax.set_title(f"slice {k}", fontsize=9)
        return ax.images

    anim = FuncAnimation(fig, update, frames=frames, interval=interval, blit=False)
    html = HTML(anim.to_jshtml(default_mode="loop"))
    plt.close(fig)
    html.frames = frames
    return html
