"""Figures that display themselves in Jupyter without pyplot.

The package's plotting functions build bare :class:`matplotlib.figure.Figure` objects: nothing is registered
with pyplot, so scripts and the CLI keep no global figure state and nothing opens a window. Jupyter shows a
figure as a picture only through a formatter that matplotlib's inline backend installs when pyplot is
imported; before that, a bare figure as a cell's last value prints ``<Figure size 1500x420 with 3 Axes>``.
:class:`NotebookFigure` adds ``_repr_png_``, which IPython calls when no figure formatter is installed (where
the inline backend is active, its own formatter takes precedence and shows the figure once, as usual).
Every plotting function of the package creates its figure with :func:`new_figure`.
"""
from __future__ import annotations

import io

from matplotlib.figure import Figure

REPR_DPI = 100
"""Resolution of the PNG a notebook shows (dots per inch): a 15 x 4.2 inch figure is 1500 x 420 pixels."""


class NotebookFigure(Figure):
    """A :class:`matplotlib.figure.Figure` that Jupyter displays as a PNG image (``_repr_png_``)."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", dpi=REPR_DPI, bbox_inches="tight")
        return buffer.getvalue()


def new_figure(**kwargs) -> NotebookFigure:
    """A bare figure (not registered with pyplot) that displays as a picture in Jupyter.

    Parameters
    ----------
    **kwargs
        Passed to :class:`matplotlib.figure.Figure` (``figsize`` in inches, ``layout``, ...).

    Returns
    -------
    NotebookFigure
    """
    return NotebookFigure(**kwargs)
