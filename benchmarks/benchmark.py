"""jaxgen against diffusers on the same weights, and against the machine's matmul peak.

    .venv/bin/python -m benchmarks.benchmark                 # CPU: small + sd15 (~5-10 min)
    .venv/bin/python -m benchmarks.benchmark --quick         # CPU: small only (~1 min)
    .venv/bin/python -m benchmarks.benchmark --device gpu    # SD 1.5 512x512, 50 steps, bf16/fp16
    .venv/bin/python -m benchmarks.benchmark --device gpu --dry-run-on-cpu   # the GPU path, tiny

Each system runs in its own process (peak RSS is its own); their timed repeats interleave
(the idle one waits on its stdin), after a warm-up call at each batch size. Writes a JSON
file and prints markdown tables; see docs/benchmarks.md for the figures and how to read them.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.harness.driver import Worker, run_once
from benchmarks.harness.models import model_dir
from benchmarks.harness.report import environment, markdown, plot

# case -> settings; the same scheduler, steps, guidance, size and batch go to both systems.
CPU_CASES = {
    "small": dict(size=64, steps=25, batches=[1, 4, 16], repeats=4),
    "sd15": dict(size=128, steps=8, batches=[1], repeats=3),
}
QUICK_CASES = {"small": dict(size=64, steps=10, batches=[1, 8], repeats=3)}
GPU_CASES = {"sd15": dict(size=512, steps=50, batches=[1, 8, 32], repeats=3)}
DRY_RUN_CASES = {"tiny": dict(size=32, steps=2, batches=[1, 2], repeats=2)}


def plan(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    if args.device == "gpu":
        cases = DRY_RUN_CASES if args.dry_run_on_cpu else GPU_CASES
    elif args.quick:
        cases = QUICK_CASES
    else:
        cases = CPU_CASES
    if args.cases:
        pool = {**CPU_CASES, **DRY_RUN_CASES, **cases}
        cases = {name: pool[name] for name in args.cases.split(",")}
    out = {}
    for name, case in cases.items():
        case = dict(case, sampler=args.sampler, guidance=args.guidance)
        for key in ("size", "steps", "repeats"):
            if getattr(args, key) is not None:
                case[key] = getattr(args, key)
        if args.batches:
            case["batches"] = [int(b) for b in args.batches.split(",")]
        out[name] = case
    return out


def system_config(args: argparse.Namespace, case: dict[str, Any], model: Path,
                  cache_dir: str) -> dict[str, Any]:
    gpu = args.device == "gpu"
    return {"model": str(model), "size": case["size"], "steps": case["steps"],
            "sampler": case["sampler"], "guidance": case["guidance"],
            # the GPU path on a CPU: same code, devices it can run on
            "device": "cpu" if args.dry_run_on_cpu else args.device,
            "dtype": "bfloat16" if gpu else "float32",
            "torch_dtype": args.torch_dtype or (
                ("bfloat16" if args.dry_run_on_cpu else "float16") if gpu else "float32"),
            "attention": "cudnn" if gpu else None, "threads": args.threads,
            "cache_dir": cache_dir, "host_devices": args.host_devices}


def systems(args: argparse.Namespace) -> list[str]:
    """jaxgen, diffusers at --threads, and on a multi-core CPU diffusers on one thread too:
    with other processes on the cores, torch's OpenMP threads wait on each other at every
    op's barrier (measured here: a 2-thread UNet call 3-30x slower than a 1-thread one)."""
    names = ["jaxgen", "diffusers"]
    if args.device == "cpu" and args.threads > 1 and not args.no_one_thread:
        names.append("diffusers_1t")
    return names


def run_case(name: str, case: dict[str, Any], args: argparse.Namespace,
             log_dir: Path) -> dict[str, Any]:
    model = model_dir(name)
    cache_dir = tempfile.mkdtemp(prefix=f"jaxgen-bench-{name}-xla-")  # cold: a new, empty cache
    config = system_config(args, case, model, cache_dir)
    workers = {s: Worker(s, config, log_dir) for s in systems(args)}
    result: dict[str, Any] = {"settings": {**case, **{k: config[k] for k in (
        "dtype", "torch_dtype", "attention", "host_devices")}}, "model_dir": str(model),
        "load": {s: w.ready for s, w in workers.items()}, "batches": {}}
    try:
        for batch in case["batches"]:
            row: dict[str, Any] = {}
            for system, worker in workers.items():
                row[system] = {"prepare": worker.call("prepare", batch=batch), "runs": []}
            for r in range(case["repeats"]):  # interleaved, alternating who goes first
                order = list(workers) if r % 2 == 0 else list(reversed(workers))
                for system in order:
                    row[system]["runs"].append(workers[system].call("time", batch=batch))
            for system, worker in workers.items():
                row[system]["unet"] = worker.call("unet", batch=batch,
                                                  repeats=max(3, case["repeats"]))
                row[system]["summary"] = summarise(row[system]["runs"], batch)
            result["batches"][str(batch)] = row
            print(f"  {name} batch {batch}: " + ", ".join(
                f"{s} {row[s]['summary']['images_per_s']:.3g} img/s" for s in workers),
                flush=True)
        result["torch_matmul"] = workers["diffusers"].call("matmul", repeats=5,
                                                           side=args.peak_side)
        result["peak_rss_mb"] = {s: w.call("stats")["peak_rss_mb"] for s, w in workers.items()}
    finally:
        for worker in workers.values():
            worker.close()
    result["warm_start"] = run_once("warmstart", config, log_dir)
    return result


def summarise(runs: list[dict[str, Any]], batch: int) -> dict[str, float]:
    seconds = sorted(r["seconds"] for r in runs)
    median = statistics.median(seconds)
    return {"median_s": median, "min_s": seconds[0], "max_s": seconds[-1],
            "images_per_s": batch / median, "images_per_s_best": batch / seconds[0],
            "loadavg": statistics.mean(r["loadavg"] for r in runs)}


def peak(args: argparse.Namespace, log_dir: Path) -> dict[str, Any]:
    config = {"device": "cpu" if args.dry_run_on_cpu else args.device,
              "dtype": "bfloat16" if args.device == "gpu" else "float32",
              "host_devices": 1}
    worker = Worker("peak", config, log_dir)
    try:
        return worker.call("matmul", repeats=args.peak_repeats, side=args.peak_side)
    finally:
        worker.close()


def main(argv: list[str] | None = None) -> dict[str, Any]:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", choices=("cpu", "gpu"), default="cpu")
    p.add_argument("--dry-run-on-cpu", action="store_true",
                   help="with --device gpu: run the GPU code path on the CPU with a tiny model")
    p.add_argument("--quick", action="store_true", help="small case only, fewer steps/repeats")
    p.add_argument("--cases", help="comma-separated: small, sd15, tiny")
    p.add_argument("--batches", help="comma-separated batch sizes (default: per case)")
    p.add_argument("--size", type=int)
    p.add_argument("--steps", type=int)
    p.add_argument("--repeats", type=int)
    p.add_argument("--sampler", choices=("ddim", "dpmpp_2m"), default="ddim")
    p.add_argument("--guidance", type=float, default=7.5)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="torch.set_num_threads for diffusers on CPU")
    p.add_argument("--no-one-thread", action="store_true",
                   help="skip the extra one-thread diffusers run on CPU")
    p.add_argument("--host-devices", type=int,
                   help="jaxgen on CPU: split the batch over this many XLA host devices "
                        "(default: one per core; 1 on GPU)")
    p.add_argument("--torch-dtype", choices=("float32", "bfloat16", "float16"),
                   help="diffusers' dtype (default: float32 on CPU, float16 on GPU); on a CPU "
                        "with AMX, bfloat16 runs its matmuls and convolutions on the tile unit")
    p.add_argument("--peak-repeats", type=int, default=10, help="best of N matmuls")
    p.add_argument("--peak-side", type=int, default=None,
                   help="largest square matmul side timed (default: 2048 on CPU, 8192 on GPU)")
    p.add_argument("--out", default="benchmark.json")
    p.add_argument("--plot", help="write the images/s vs batch size PNG here")
    args = p.parse_args(argv)
    if args.dry_run_on_cpu and args.device != "gpu":
        p.error("--dry-run-on-cpu goes with --device gpu")
    if args.host_devices is None:  # one XLA device per core: measured 1.4x at batch >= 8
        args.host_devices = 1 if args.device == "gpu" else args.threads
    started = time.time()
    report: dict[str, Any] = {"command": " ".join([Path(sys.executable).name, *sys.argv]),
                              "environment": environment(), "systems": systems(args),
                              "cases": {}}
    with tempfile.TemporaryDirectory() as tmp:
        log_dir = Path(tmp)
        report["peak_before"] = peak(args, log_dir)
        for name, case in plan(args).items():
            print(f"case {name}: {case}", flush=True)
            report["cases"][name] = run_case(name, case, args, log_dir)
        report["peak_after"] = peak(args, log_dir)
    report["peak_flops_per_s"] = max(report["peak_before"]["flops_per_s"],
                                     report["peak_after"]["flops_per_s"])
    report["gpu_figures_measured"] = args.device == "gpu" and not args.dry_run_on_cpu
    report["wall_s"] = time.time() - started
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(markdown(report))
    if args.plot:
        plot(report, args.plot)
    return report


if __name__ == "__main__":
    main()
