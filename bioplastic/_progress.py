"""Progress bars that suit the terminal and Jupyter alike.

In a Jupyter kernel with ``ipywidgets`` installed (the ``notebooks`` extra: ``pip install -e ".[notebooks]"``)
a bar is a widget that updates in place (``tqdm.auto``); everywhere else it is tqdm's text bar. Without
``ipywidgets`` the text bar is used directly: importing ``tqdm.auto`` in a kernel would warn
``TqdmWarning: IProgress not found`` on every import of the package.
"""
from __future__ import annotations

import functools


@functools.cache
def _tqdm_class():
    try:
        import ipywidgets  # noqa: F401  (tqdm.notebook draws its bars with ipywidgets)
    except ImportError:
        from tqdm.std import tqdm
    else:
        from tqdm.auto import tqdm  # the widget bar in a Jupyter kernel, the text bar elsewhere
    return tqdm


def progress_bar(*args, **kwargs):
    """A tqdm progress bar: a widget in Jupyter (with ``ipywidgets``), text elsewhere.

    Parameters
    ----------
    *args, **kwargs
        Passed to ``tqdm`` (``total``, ``desc``, ``disable``, ``leave``, ...).

    Returns
    -------
    tqdm.std.tqdm
        ``tqdm.notebook.tqdm`` (a subclass) in a Jupyter kernel with ``ipywidgets``.
    """
    return _tqdm_class()(*args, **kwargs)
