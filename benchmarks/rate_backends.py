"""Speed of the two rate-network backends: simulated seconds per wall-clock second.

Usage::

    python benchmarks/rate_backends.py [--sizes 100 600 370 10] [--rank 10] [--short 0.05] [--long 0.25]
                                       [--repeats 2] [--targets numpy cython] [--out DIR]

The default network has 1,000 simulated rate units (hidden 600 + 370, output 10, error 10, feedback 10; the
100 input units are clamped to the stimulus) and about 290,000 plastic synapses, learning on (direct
wiring, Oja feedback learning), ``dt`` = 0.5 ms, one trial. Each backend runs a short and a long simulation,
alternated ``--repeats`` times in one process; the steady-state speed is
``(long - short) / (wall_long - wall_short)`` simulated seconds per wall second, which removes the
per-run cost (building brian2 objects, code generation / compilation); the per-run overhead is reported
separately. Ratios are computed within the same run so that machine load affects both alike (still: on a
shared machine, repeat and report the spread).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

from bioplastic import rules
from bioplastic.rate import RateNetwork

log = logging.getLogger("rate_backends_benchmark")


def _network(sizes: list[int], rank: int, dtype: torch.dtype, device: str) -> RateNetwork:
    return RateNetwork.from_sizes(sizes, rule=rules.make("direct_ldfa", rank=rank, feedback_learning="oja",
                                                         feedback_weight_decay=0.0),
                                  activation="relu", output_activation="sigmoid", tau=0.01, tau_error=0.005,
                                  feedback_tau=0.005, learning_rate=0.5, feedback_learning_rate=0.5,
                                  dtype=dtype, device=device)


def _wall(net: RateNetwork, duration: float, dt: float, backend: str, target: str) -> float:
    presentation = 0.05 if duration >= 0.05 else duration
    n = max(1, int(round(duration / presentation)))
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(n, net.input.size, generator=gen, dtype=torch.float64)
    y = torch.randint(0, net.output.size, (n,), generator=gen)
    if net.device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    net.copy().run(x, y, backend=backend, presentation=presentation, dt=dt, record=(), codegen_target=target)
    if net.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


def benchmark(sizes: list[int], rank: int = 10, dt: float = 0.0005, short: float = 0.05, long: float = 0.25,
              repeats: int = 2, targets: tuple[str, ...] = ("numpy",), devices: tuple[str, ...] = ("cpu",),
              ) -> dict:
    """Measure every (backend, target/device) alternately; return a JSON-able summary."""
    configs = [("torch", "numpy", d, torch.float32) for d in devices] + \
              [("torch", "numpy", d, torch.float64) for d in devices] + \
              [("brian2", t, "cpu", torch.float64) for t in targets]
    nets = {c: _network(sizes, rank, c[3], c[2]) for c in configs}
    n_units = next(iter(nets.values())).n_neurons
    n_syn = sum(v.numel() for k, v in next(iter(nets.values())).weights.items() if not k.startswith("b_"))
    # warm-up (brian2 code generation / cython compilation, torch kernels)
    for c, net in nets.items():
        _wall(net, short, dt, c[0], c[1])
    times: dict = {c: {"short": [], "long": []} for c in configs}
    for _ in range(repeats):
        for c, net in nets.items():  # alternate backends within each repeat
            times[c]["short"].append(_wall(net, short, dt, c[0], c[1]))
            times[c]["long"].append(_wall(net, long, dt, c[0], c[1]))
    rows = {}
    for c in configs:
        ws, wl = statistics.median(times[c]["short"]), statistics.median(times[c]["long"])
        speed = (long - short) / max(wl - ws, 1e-9)
        name = f"{c[0]}[{c[2]},{str(c[3]).replace('torch.', '')}]" if c[0] == "torch" else f"brian2[{c[1]}]"
        rows[name] = {"sim_s_per_wall_s": speed, "overhead_per_run_s": max(0.0, ws - short / speed),
                      "wall_short_s": times[c]["short"], "wall_long_s": times[c]["long"]}
        log.info("%-24s %8.3f simulated s / wall s   (per-run overhead %.2f s)", name, speed,
                 rows[name]["overhead_per_run_s"])
    ref = "torch[cpu,float64]"
    ratios = {f"{ref} / {k}": rows[ref]["sim_s_per_wall_s"] / v["sim_s_per_wall_s"] for k, v in rows.items()
              if k != ref}
    for k, v in ratios.items():
        log.info("speed ratio %s = %.1f", k, v)
    return {"sizes": sizes, "rank": rank, "simulated_units": n_units, "synapses": n_syn, "dt": dt,
            "short_s": short, "long_s": long, "repeats": repeats, "results": rows, "ratios": ratios,
            "torch_threads": torch.get_num_threads(), "machine_note": "shared machine; load affects absolute numbers"}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 600, 370, 10])
    parser.add_argument("--rank", type=int, default=10)
    parser.add_argument("--dt", type=float, default=0.0005)
    parser.add_argument("--short", type=float, default=0.05, help="short run, simulated seconds")
    parser.add_argument("--long", type=float, default=0.25, help="long run, simulated seconds")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--targets", nargs="+", default=["numpy"], choices=["numpy", "cython"])
    parser.add_argument("--out", type=Path, default=None, help="folder for rate_backends_benchmark.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    devices = ("cpu", "cuda") if torch.cuda.is_available() else ("cpu",)
    result = benchmark(args.sizes, args.rank, args.dt, args.short, args.long, args.repeats, tuple(args.targets),
                       devices)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "rate_backends_benchmark.json"
        path.write_text(json.dumps(result, indent=2, default=float))
        log.info("wrote %s", path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
