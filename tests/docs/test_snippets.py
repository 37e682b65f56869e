"""Every code snippet of README.md and docs/*.md runs as written.

Fenced blocks marked ``python`` or ``bash`` are executed, each on its own (a fresh namespace in this process,
or a fresh shell, so every snippet must be complete: a reader can paste any one of them), in a scratch folder
laid out like a checkout: ``analyses/``, ``benchmarks/``, ``models/`` and ``notebooks/`` link to the repository's, and
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
import runpy
import signal
import subprocess
import sys
import time
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
def test_snippet_runs(snippet: Snippet, scratch: Path, tmp_path: Path, monkeypatch):
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
    env = dict(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", MPLBACKEND="Agg", BIOPLASTIC_SHARED_DATA=str(SHARED_DATA))
    if snippet.language == "python":
        # In this process (torch and bioplastic are imported once for all snippets), in a fresh namespace.
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        monkeypatch.chdir(cwd)
        try:
            runpy.run_path(str(script), run_name="__main__")
        except Exception as exc:
            raise AssertionError(f"{snippet.id} raised {type(exc).__name__}: {exc}\n{snippet.code}") from exc
        return
    env = dict(os.environ, **env, PATH=os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]))
    code, stdout, stderr = run_shell(script, cwd, env, TIMEOUT[snippet.mode])
    assert code == 0, (
        f"{snippet.id} ({snippet.language}) exited with {code}:\n{snippet.code}\n"
        f"--- stdout (end)\n{stdout[-3000:]}\n--- stderr (end)\n{stderr[-3000:]}")


def run_shell(script: Path, cwd: Path, env: dict, timeout: float) -> tuple[int, str, str]:
    """Run a bash script in its own process group; on a timeout (or Ctrl-C) kill the group, so that the
    commands the shell started (a training run) stop too, then re-raise."""
    shell = subprocess.Popen(["bash", "-euo", "pipefail", str(script)], cwd=cwd, env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        stdout, stderr = shell.communicate(timeout=timeout)
    except BaseException:
        os.killpg(shell.pid, signal.SIGKILL)
        shell.communicate()
        raise
    return shell.returncode, stdout, stderr


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"  # a killed child not yet reaped is a zombie: not running


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads /proc (Linux)")
def test_a_timed_out_snippet_leaves_no_process(tmp_path):
    script = tmp_path / "snippet.sh"
    pid_file = tmp_path / "pid"
    script.write_text(f"{sys.executable} -c 'import os, time; open(\"{pid_file}\", \"w\").write(str(os.getpid())); "
                      f"time.sleep(60)' > /dev/null 2>&1\n")  # no pipe held open: only the kill stops it
    with pytest.raises(subprocess.TimeoutExpired):
        run_shell(script, tmp_path, dict(os.environ), timeout=3)
    pid = int(pid_file.read_text())
    for _ in range(50):
        if not _alive(pid):
            break
        time.sleep(0.1)
    assert not _alive(pid), "the command started by the timed-out snippet is still running"
