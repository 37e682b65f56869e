"""Repository-wide pytest set-up (tests/ and the doctests of bioplastic/, see pyproject.toml)."""
from __future__ import annotations

import pytest
from _pytest import doctest as _pytest_doctest

_DOCTEST_MODULE = _pytest_doctest.DoctestModule


@pytest.hookimpl(tryfirst=True)
def pytest_collect_file(file_path, parent):
    # Importing brian2 (the rate tests do) replaces pytest's DoctestModule by brian2's subclass, which fails
    # on a package's __init__.py; bioplastic's doctests are collected with pytest's own class.
    _pytest_doctest.DoctestModule = _DOCTEST_MODULE
