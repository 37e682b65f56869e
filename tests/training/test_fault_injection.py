"""SIGKILL fault injection into the main job (issue 15, "must hold").

A ``bioplastic compare`` process is killed with SIGKILL (no handler runs, nothing is cleaned up) at random
points: at random times, and on purpose in the middle of writing ``results.nc``, a run file, a model or a
checkpoint (half of the temporary file written, or the whole of it before / after the rename). After every kill
every file in the output folder must be whole (it loads); after the rerun that completes, the output equals an
uninterrupted run's (``results.nc`` except ``wall_time``, and the trained weights) and no temporary file is left.

Two sizes: ``test_sigkill_resume_quick`` (3 kills of one run, forked children of the test process: no import
time) in the default suite, ``test_sigkill_resume_20_kills`` (20 kills of the real ``bioplastic compare`` command
line, two runs) marked slow.
"""
from __future__ import annotations

import multiprocessing
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from bioplastic import io
from bioplastic.testing import assert_results_equal
from bioplastic.training import results as R
from bioplastic.training.checkpoint import load_checkpoint

COMMON = ["compare", "--dataset", "digits", "--epochs", "2", "--device", "cpu", "--threads", "1", "--no-progress",
          "-q"]
ONE_RUN = [*COMMON, "--rules", "bp"]
"""One run of two epochs: 8 atomic writes (results.nc 3x, checkpoints 2x, model, run file, figure)."""
TWO_RUNS = [*COMMON, "--rules", "bp,ldfa", "--ranks", "2", "--feedback-learning", "normative"]
"""Two runs of two epochs: 13 atomic writes (results.nc 4x, checkpoints 4x, models 2x, run files 2x, figure)."""
PHASES = ("during", "before_rename", "after_rename")

# Runs in the child: kill this process at the KILL_AT-th atomic write (counted at its rename), in KILL_PHASE.
_CHILD = r'''
import os, signal, sys
at, phase = int(os.environ.get("KILL_AT", "0")), os.environ.get("KILL_PHASE", "")
if at:
    real_replace, count = os.replace, [0]

    def replace(src, dst, *a, **kw):
        count[0] += 1
        if count[0] == at:
            if phase == "during":  # a half-written temporary file, as if killed inside the writer
                os.truncate(src, os.path.getsize(src) // 2)
            if phase != "after_rename":
                os.kill(os.getpid(), signal.SIGKILL)
            real_replace(src, dst, *a, **kw)
            os.kill(os.getpid(), signal.SIGKILL)
        return real_replace(src, dst, *a, **kw)

    os.replace = replace
'''


def _cli_main(argv: list[str]) -> None:
    """Body of a forked child: the CLI in this (already imported) interpreter."""
    exec(_CHILD, {})
    from bioplastic.cli import main

    os._exit(main(argv))


class Launcher:
    """Starts ``bioplastic compare`` into ``out``: ``"fork"`` (a forked child of this process) or ``"cli"``
    (a fresh ``python -m bioplastic.cli``)."""

    def __init__(self, kind: str, args: list[str], n_writes: int):
        self.kind, self.args, self.n_writes = kind, args, n_writes
        if kind == "fork":  # what a child would import lazily, imported once here
            import matplotlib.backends.backend_agg  # noqa: F401
            import torch._dynamo  # noqa: F401 (imported by the optimisers)
            import tqdm.auto  # noqa: F401

            import bioplastic.training.plots  # noqa: F401
            import bioplastic.training.trainer  # noqa: F401
            from bioplastic.data import load_dataset

            load_dataset("digits")

    def start(self, out: Path, kill_at: int = 0, phase: str = ""):
        argv = [*self.args, "--out", str(out)]
        env = {"KILL_AT": str(kill_at), "KILL_PHASE": phase}
        if self.kind == "cli":
            code = _CHILD + "\nfrom bioplastic.cli import main\nsys.exit(main(sys.argv[1:]))\n"
            return subprocess.Popen([sys.executable, "-c", code, *argv], env={**os.environ, **env},
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        os.environ.update(env)
        try:
            proc = multiprocessing.get_context("fork").Process(target=_cli_main, args=(argv,))
            proc.start()
        finally:
            for key in env:
                os.environ.pop(key, None)
        return proc

    @staticmethod
    def poll(proc):
        return proc.poll() if isinstance(proc, subprocess.Popen) else proc.exitcode

    @staticmethod
    def wait(proc, timeout=600):
        if isinstance(proc, subprocess.Popen):
            proc.wait(timeout)
            return proc.returncode
        proc.join(timeout)
        return proc.exitcode

    def run(self, out: Path) -> None:
        code = self.wait(self.start(out))
        assert code == 0, f"compare into {out} exited with {code}"


def _killed(code) -> bool:
    return code in (-signal.SIGKILL, 128 + signal.SIGKILL)


def _assert_every_file_whole(out: Path) -> None:
    """Each file that is not a hidden temporary loads completely."""
    for path in out.rglob("*"):
        if not path.is_file() or io._TEMPORARY.match(path.name) or path.name == io.LOCK_FILE:
            continue
        if path.suffix == ".nc":
            io.load(path)
        elif path.name == "checkpoint.pt":
            assert load_checkpoint(path) is not None
        elif path.suffix == ".pt":
            torch.load(path, weights_only=True)
        elif path.suffix == ".png":
            from matplotlib.image import imread

            assert imread(path).ndim == 3
        else:
            raise AssertionError(f"unexpected file {path}")


def _assert_same_as_reference(out: Path, ref: Path) -> None:
    got, want = R.load_results(out), R.load_results(ref)
    assert_results_equal(got, want)
    names = sorted(p.name for p in (ref / "models").glob("*.pt"))
    assert sorted(p.name for p in (out / "models").glob("*.pt")) == names
    for name in names:
        a = torch.load(out / "models" / name, weights_only=True)["state_dict"]
        b = torch.load(ref / "models" / name, weights_only=True)["state_dict"]
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file()) == \
        sorted(p.relative_to(ref).as_posix() for p in ref.rglob("*") if p.is_file())  # no temporaries, no lock


def _kill_once(launcher: Launcher, out: Path, rng: random.Random, duration: float, log: list) -> None:
    """Start compare into ``out`` and SIGKILL it (at a random time, or inside a random atomic write); retried
    until a kill lands (a resumed run has fewer writes left, or may finish before the random time)."""
    for attempt in range(12):
        if rng.random() < 0.5:
            delay = rng.uniform(0.0, duration)
            proc = launcher.start(out)
            deadline = time.monotonic() + delay
            while time.monotonic() < deadline and launcher.poll(proc) is None:
                time.sleep(0.005)
            if launcher.poll(proc) is None:
                os.kill(proc.pid, signal.SIGKILL)
            code = launcher.wait(proc)
            what = f"at {delay:.2f} s"
        else:
            at, phase = rng.randint(1, max(1, launcher.n_writes // (1 + attempt))), rng.choice(PHASES)
            code = launcher.wait(launcher.start(out, at, phase))
            what = f"in write {at} ({phase})"
        if _killed(code):
            log.append(what)
            return
        assert code == 0, f"compare exited with {code} ({what})"
    raise AssertionError(f"no kill landed in 12 tries into {out}")


def _fault_injection(tmp_path: Path, launcher: Launcher, n_kills: int, kills_per_episode: int, seed: int):
    ref = tmp_path / "ref"
    t0 = time.monotonic()
    launcher.run(ref)
    duration = time.monotonic() - t0
    rng = random.Random(seed)
    log: list[str] = []
    episode = 0
    while len(log) < n_kills:
        out = tmp_path / f"out{episode}"
        for _ in range(min(kills_per_episode, n_kills - len(log))):
            _kill_once(launcher, out, rng, duration, log)
            _assert_every_file_whole(out)
        launcher.run(out)  # the rerun completes ...
        _assert_same_as_reference(out, ref)  # ... to the uninterrupted result
        episode += 1
    assert len(log) == n_kills
    return log


def test_sigkill_resume_quick(tmp_path):
    log = _fault_injection(tmp_path, Launcher("fork", ONE_RUN, 8), n_kills=3, kills_per_episode=3, seed=1)
    assert len(log) == 3


@pytest.mark.slow
def test_sigkill_resume_20_kills(tmp_path):
    log = _fault_injection(tmp_path, Launcher("cli", TWO_RUNS, 13), n_kills=20, kills_per_episode=2, seed=2026)
    assert len(log) == 20
    print("kills:", "; ".join(log))
