"""Training speed: jaxgen's stage-2 train step against diffusers' on the same weights.

    .venv/bin/python -m benchmarks.bench_train                  # default model, batch 32 (~5 min)
    .venv/bin/python -m benchmarks.bench_train --rounds 2 --steps 3      # a quick look
    .venv/bin/python -m benchmarks.bench_train --host-devices 1 2        # jaxgen on 1 and 2 devices
    .venv/bin/python -m benchmarks.bench_train --precision float32 bfloat16   # and in bfloat16

Each system runs in its own process (benchmarks/harness/train_systems.py: the UNet of --model
trained on, its VAE and text encoder frozen, AdamW + clipping + EMA), on the same batches;
their timed rounds interleave. `--precision bfloat16` adds each system in bfloat16 compute
with float32 weights (jaxgen's `precision: bfloat16`, diffusers under `torch.autocast`, as its
example's `--mixed_precision bf16` runs). Reported: seconds per step, images/s, the FLOP rate
(XLA's count of jaxgen's step, which is the same arithmetic in both) against the machine's
square-matmul peak in that precision (the better of jax's and torch's, measured in the same
run), and peak RSS. Writes a JSON file and prints a markdown table; docs/benchmarks.md
("Training") holds the figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness.driver import Worker
from benchmarks.harness.report import environment
from benchmarks.harness.train_systems import stage2_train_config
from jaxgen.engine.sharding import cpu_device_count
from jaxgen.train.config import PRECISIONS as TRAIN_PRECISIONS

# jaxgen's explicit compute precisions (its "auto" is float32 on a CPU)
PRECISIONS = tuple(p for p in TRAIN_PRECISIONS if p != "auto")


def run(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    from jaxgen.default_model import default_model_path

    model = str(Path(args.model) if args.model else default_model_path())
    config = {"model": model, "batch": args.batch, "distinct": args.distinct,
              "threads": args.threads}
    threads = f"{args.threads} thread{'s' * (args.threads > 1)}"
    systems = {}
    for precision in args.precision:
        cfg = {**config, "precision": precision}
        tag, label = ("", "") if precision == "float32" else ("_bf16", ", bfloat16")
        # jaxgen once per XLA device count (the data-parallel step splits the batch over them)
        for n in args.host_devices:
            systems[f"train_jaxgen_{n}dev{tag}"] = (
                "train_jaxgen", {**cfg, "host_devices": n},
                f"jaxgen, {n} XLA device{'s' * (n > 1)}{label}")
        systems[f"train_diffusers{tag}"] = ("train_diffusers", cfg,
                                            f"diffusers, torch {threads}{label}")
    workers = {name: Worker(system, cfg, log_dir, name=name)
               for name, (system, cfg, _) in systems.items()}
    first_jaxgen = next(iter(workers))
    out: dict[str, Any] = {"model": model, "settings": {
        **config, "host_devices": args.host_devices, "precision": args.precision},
        "systems": {}}
    peak = {"repeats": args.peak_repeats, "side": args.peak_side}
    try:
        for name, w in workers.items():
            out["systems"][name] = {"label": systems[name][2], "load": w.ready,
                                    "prepare": w.call("prepare"), "runs": []}
        out["peak_before"] = {p: workers[first_jaxgen].call("matmul", **peak, dtype=p)
                              for p in PRECISIONS}
        for r in range(args.rounds):  # interleaved, alternating who goes first
            order = list(workers) if r % 2 == 0 else list(reversed(workers))
            for name in order:
                out["systems"][name]["runs"].append(workers[name].call("time", steps=args.steps))
            print(f"  round {r + 1}/{args.rounds}: " + ", ".join(
                f"{n} {out['systems'][n]['runs'][-1]['seconds'] / args.steps:.3f} s/step"
                for n in workers), flush=True)
        # Peak RSS of training, read before the FLOP count's recompile and the matmuls
        for name, w in workers.items():
            out["systems"][name]["peak_rss_mb"] = w.call("stats")["peak_rss_mb"]
        out["flops_per_step"] = workers[first_jaxgen].call("flops")["flops_per_step"]
        torch_worker = next(w for w in workers.values() if w.system == "train_diffusers")
        out["torch_matmul"] = {p: torch_worker.call("matmul", **peak, dtype=p)
                               for p in PRECISIONS}
        out["peak_after"] = {p: workers[first_jaxgen].call("matmul", **peak, dtype=p)
                             for p in PRECISIONS}
    finally:
        for w in workers.values():
            w.close()
    out["stage2_steps"] = steps = stage2_train_config().steps  # what a step's time scales to
    # the machine's peak in each precision: the best square matmul either framework reached
    out["peak_flops_per_s"] = {p: max(out[k][p]["flops_per_s"] for k in (
        "peak_before", "peak_after", "torch_matmul")) for p in PRECISIONS}
    for name, system in out["systems"].items():
        per_step = sorted(r["seconds"] / r["steps"] for r in system["runs"])
        median = statistics.median(per_step)
        rate = out["flops_per_step"] / median
        system["summary"] = {
            "median_s_per_step": median, "best_s_per_step": per_step[0],
            "worst_s_per_step": per_step[-1], "images_per_s": args.batch / median,
            "flops_per_s": rate,
            "of_peak": rate / out["peak_flops_per_s"][systems[name][1]["precision"]],
            "stage2_minutes": steps * median / 60}
    return out


def markdown(report: dict[str, Any]) -> str:
    env, s = report["environment"], report["settings"]

    def gflops(p: str, *keys: str) -> float:
        return max(report[k][p]["flops_per_s"] for k in keys) / 1e9

    peaks = "; ".join(f"{p} {gflops(p, 'peak_before', 'peak_after'):.0f} (jax), "
                      f"{gflops(p, 'torch_matmul'):.0f} (torch)" for p in PRECISIONS)
    lines = [f"{env['date']}, {env['cpu']}, {env['cores']} cores; batch "
             f"{s['batch']}, {report['rounds']} rounds of {report['steps']} steps; "
             f"{report['flops_per_step'] / 1e9:.1f} GFLOP a step (XLA's count); square "
             f"matmul GFLOP/s: {peaks}", "",
             "| system | s/step (median; best-worst) | img/s | GFLOP/s | of peak | stage 2 "
             f"({report['stage2_steps']:,} steps) | peak RSS |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for system in report["systems"].values():
        m = system["summary"]
        lines.append(
            f"| {system['label']} | {m['median_s_per_step']:.3f} "
            f"({m['best_s_per_step']:.3f}-{m['worst_s_per_step']:.3f}) | "
            f"{m['images_per_s']:.1f} | {m['flops_per_s'] / 1e9:.0f} | {m['of_peak']:.0%} | "
            f"{m['stage2_minutes']:.0f} min | {system['peak_rss_mb']:.0f} MB |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="a diffusers-format directory (default: the default model)")
    p.add_argument("--batch", type=int, default=32, help="images a step (stage 2's is 32)")
    p.add_argument("--steps", type=int, default=10, help="steps in each timed round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--distinct", type=int, default=4, help="distinct batches, cycled")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch.set_num_threads for diffusers")
    p.add_argument("--host-devices", type=int, nargs="+",
                   help="XLA CPU device counts to time jaxgen's data-parallel step at, each in "
                        "its own worker (default: `jaxgen train`'s, one per core)")
    p.add_argument("--precision", nargs="+", default=["float32"], choices=PRECISIONS,
                   help="compute precisions to time each system in (weights stay float32)")
    p.add_argument("--peak-repeats", type=int, default=10, help="best of N matmuls")
    p.add_argument("--peak-side", type=int, default=None,
                   help="largest square matmul side timed for the peak (default: 2048 on CPU)")
    p.add_argument("--out", default="bench-train.json")
    args = p.parse_args(argv)
    for flag in ("batch", "steps", "rounds", "distinct", "threads"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag} {getattr(args, flag)}: must be >= 1")
    # `jaxgen train` splits a CPU into one device per core, as many as divide the batch
    args.host_devices = args.host_devices or [math.gcd(args.batch, cpu_device_count())]
    for n in args.host_devices:
        if n < 1 or args.batch % n:
            p.error(f"--host-devices {n}: must be >= 1 and divide --batch {args.batch}")
    started = time.time()
    report: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "environment": environment(), "steps": args.steps,
                              "rounds": args.rounds}
    with tempfile.TemporaryDirectory() as tmp:
        report.update(run(args, Path(tmp)))
    report["wall_s"] = time.time() - started
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    return report


if __name__ == "__main__":
    main()
