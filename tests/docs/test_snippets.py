"""Every code snippet of README.md and docs/*.md runs as written.

Fenced blocks marked ``python`` or ``bash`` are executed, each on its own (a fresh interpreter or shell, so
every snippet must be complete: a reader can paste any one of them), in a scratch folder laid out like a
checkout: ``analyses/``, ``benchmarks/``, ``models/`` and ``notebooks/`` link to the repository's, and
``../shared/data`` to the real data (``BIOPLASTIC_SHARED_DATA``). One torch thread; matplotlib's Agg backend.

A marker on the line just above a block says how it is run (the default: in the fast tier)::

    <!-- docs-test: slow -->             the slow tier (python -m pytest -m slow)
    <!-- docs-test: skip: REASON -->     never, for the reason given (set-up lines, GPU-only commands)

A block that reads ``../shared/data`` is skipped with a reason where that folder is absent. Blocks of any other
language (``text``, ``toml``) are not run, and every fence must name its language.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPO, SHARED_DATA

PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.S | re.M)
MARKER = re.compile(r"<!--\s*docs-test:\s*(slow|skip:\s*(?P<reason>.+?))\s*-->\s*$")
RUN = {"python", "bash"}
TIMEOUT = {"fast": 180, "slow": 3600}  # seconds; the docs say how long the long ones take
LINKED = ("analyses", "benchmarks", "models", "notebooks")


@dataclass(frozen=True)
class Snippet:
    page: Path
    line: int  # of the opening fence, counted from 1
    language: str
    code: str
    mode: str  # "fast", "slow" or "skip"
    reason: str = ""

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"


def find_snippets(page: Path) -> list[Snippet]:
    """The fenced code blocks of one markdown page, with their markers."""
    text = page.read_text()
    found = []
    for match in FENCE.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        language = match.group(1).strip().split(" ")[0]
        before = text[:match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        marker = MARKER.search(before)
        mode, reason = "fast", ""
        if marker:
            mode, reason = ("skip", marker.group("reason")) if marker.group("reason") else ("slow", "")
        elif "docs-test" in before:
            raise ValueError(f"{page.name}:{line - 1}: unreadable marker {before!r}")
        found.append(Snippet(page, line, language, match.group(2), mode, reason))
    return found


SNIPPETS = [s for page in PAGES for s in find_snippets(page)]
RUNNABLE = [s for s in SNIPPETS if s.language in RUN]


def test_every_fence_names_its_language():
    unnamed = [s.id for s in SNIPPETS if not s.language]
    assert not unnamed, f"fenced blocks without a language (python, bash, text, toml, ...): {unnamed}"


def test_finder_reads_markers(tmp_path):
    page = tmp_path / "page.md"
    page.write_text("a\n<!-- docs-test: slow -->\n```python\nx = 1\n```\n\n<!-- docs-test: skip: needs a GPU -->\n"
                    "```bash\nnvidia-smi\n```\n```text\nnot code\n```\n")
    found = find_snippets(page)
    assert [(s.line, s.language, s.mode, s.reason, s.code) for s in found] == [
        (3, "python", "slow", "", "x = 1\n"), (8, "bash", "skip", "needs a GPU", "nvidia-smi\n"),
        (11, "text", "fast", "", "not code\n")]


def _params():
    for s in RUNNABLE:
        marks = [pytest.mark.slow] if s.mode == "slow" else []
        yield pytest.param(s, id=s.id, marks=marks)


@pytest.fixture(scope="module")
def scratch(tmp_path_factory) -> Path:
    """A scratch folder whose ``shared/data`` links to the real data; each snippet runs in a subfolder."""
    root = tmp_path_factory.mktemp("docs")
    (root / "shared").mkdir()
    if SHARED_DATA.is_dir():
        (root / "shared" / "data").symlink_to(SHARED_DATA, target_is_directory=True)
    return root


@pytest.mark.parametrize("snippet", list(_params()))
def test_snippet_runs(snippet: Snippet, scratch: Path, tmp_path: Path):
    if snippet.mode == "skip":
        pytest.skip(snippet.reason)
    if "shared/data" in snippet.code or "BIOPLASTIC_SHARED_DATA" in snippet.code:
        if not SHARED_DATA.is_dir():
            pytest.skip(f"{snippet.id} reads the real data in {SHARED_DATA}, which is absent")
    cwd = scratch / f"{snippet.page.stem}-{snippet.line}"  # a checkout-like folder: ../shared/data resolves
    cwd.mkdir()
    for name in LINKED:
        (cwd / name).symlink_to(REPO / name, target_is_directory=True)
    script = tmp_path / ("snippet.py" if snippet.language == "python" else "snippet.sh")
    script.write_text(snippet.code)
    command = [sys.executable, str(script)] if snippet.language == "python" else ["bash", "-euo", "pipefail", str(script)]
    env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg",
               BIOPLASTIC_SHARED_DATA=str(SHARED_DATA),
               PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT[snippet.mode])
    assert done.returncode == 0, (
        f"{snippet.id} ({snippet.language}) exited with {done.returncode}:\n{snippet.code}\n"
        f"--- stdout (end)\n{done.stdout[-3000:]}\n--- stderr (end)\n{done.stderr[-3000:]}")
