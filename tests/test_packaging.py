"""The explicit package list in pyproject.toml must name every subpackage (or a wheel misses it)."""
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_listed_in_pyproject():
    listed = set(tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    on_disk = {
        ".".join(p.parent.relative_to(REPO).parts)
        for p in (REPO / "bioplastic").rglob("__init__.py")
        if "__pycache__" not in p.parts
    } | {"bioplastic.specs"}
    assert on_disk == listed


def test_version_matches_pyproject():
    import bioplastic

    assert bioplastic.__version__ == tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
