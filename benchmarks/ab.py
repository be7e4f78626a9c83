"""A/B of jaxgen variants (XLA flags, host devices, dtype) on one model, repeats interleaved.

    .venv/bin/python -m benchmarks.ab --case small --batches 1,8,16 --variant base: \\
        --variant 2dev:host_devices=2 \\
        --variant vw512:xla_flags=--xla_cpu_prefer_vector_width=512

Each variant is its own worker process; the first is the baseline of the ratios. Timings on a
shared machine drift with the load, so variants take turns, and the order rotates per repeat.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

from benchmarks.harness.driver import Worker
from benchmarks.harness.models import model_dir


def parse_variant(text: str) -> tuple[str, dict]:
    label, _, rest = text.partition(":")
    overrides = {}
    for item in filter(None, rest.split(";")):
        key, _, value = item.partition("=")
        overrides[key] = int(value) if value.isdigit() else value
    return label, overrides


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--case", default="small")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=25)
    p.add_argument("--batches", default="1,8")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--variant", action="append", required=True, help="LABEL:key=value;...")
    args = p.parse_args()
    base = {"model": str(model_dir(args.case)), "size": args.size, "steps": args.steps,
            "sampler": "ddim", "guidance": 7.5, "device": "cpu", "dtype": "float32",
            "attention": None, "threads": 2}
    variants = dict(parse_variant(v) for v in args.variant)
    with tempfile.TemporaryDirectory() as tmp:
        workers = {label: Worker("jaxgen", {**base, "cache_dir": f"{tmp}/{label}", **o},
                                 Path(tmp), name=label) for label, o in variants.items()}
        try:
            for batch in (int(b) for b in args.batches.split(",")):
                times: dict[str, list[float]] = {label: [] for label in workers}
                loads = []
                for w in workers.values():
                    w.call("prepare", batch=batch)
                for r in range(args.repeats):
                    labels = list(workers)
                    labels = labels[r % len(labels):] + labels[:r % len(labels)]
                    for label in labels:
                        reply = workers[label].call("time", batch=batch)
                        times[label].append(reply["seconds"])
                        loads.append(reply["loadavg"])
                first = statistics.median(times[next(iter(workers))])
                cells = [f"{label} {batch / statistics.median(t):.3g} img/s "
                         f"(x{first / statistics.median(t):.2f})" for label, t in times.items()]
                print(f"batch {batch}: " + ", ".join(cells)
                      + f"; load {statistics.mean(loads):.1f}", flush=True)
        finally:
            for w in workers.values():
                w.close()


if __name__ == "__main__":
    main()
