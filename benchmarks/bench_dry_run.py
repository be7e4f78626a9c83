"""Dry run (validate + plan, no generation) over a 1,000,000-row JSONL: rows/s and peak RSS.

    .venv/bin/python -m benchmarks.bench_dry_run [--rows 1000000] [--runner-mode in_memory]

The manifest has an id on every row (the duplicate-id pass then has the most to do) and
a bad row every 1,000 rows (so rejects are written too). Peak RSS is ru_maxrss of this
process plus that of its largest child (multi_processing workers), from getrusage.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import tempfile
import time
from pathlib import Path

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig


def write_manifest(path: Path, rows: int) -> None:
    samplers = ["ddim", "dpmpp_2m", "euler"]
    with open(path, "w") as f:
        for i in range(rows):
            if i % 1000 == 999:
                f.write('{"prompt": "bad steps", "steps": 0}\n')
                continue
            row = {
                "id": f"row-{i}",
                "prompt": f"a photo of a red circle number {i} on a blue background",
                "steps": 20 + i % 10,
                "sampler": samplers[i % 3],
                "height": 64,
                "width": 64,
                "metadata": {"group": i % 7},
            }
            f.write(json.dumps(row) + "\n")


def peak_rss_mb() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return (own + children) / 1024  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runner-mode", default="in_memory")
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "manifest.jsonl"
        t0 = time.perf_counter()
        write_manifest(manifest, args.rows)
        made = time.perf_counter() - t0
        size_mb = os.path.getsize(manifest) / 2**20
        print(f"manifest: {args.rows} rows, {size_mb:.0f} MiB, written in {made:.1f} s")
        print(f"RSS before the pipeline: {peak_rss_mb():.0f} MiB")
        config = JobConfig(manifest=str(manifest), output=str(Path(tmp) / "out"), dry_run=True)
        options = [
            "--runner=FnApiRunner",
            f"--direct_running_mode={args.runner_mode}",
            f"--direct_num_workers={args.workers}",
        ]
        t0 = time.perf_counter()
        report = run_pipeline(config, options=options)
        seconds = time.perf_counter() - t0
    counts = report["counts"]
    assert counts["rows_read"] == args.rows, counts
    print(
        f"dry run: {counts['rows_read']} rows ({counts['rows_rejected']} rejected, "
        f"{counts['shards']} shards) in {seconds:.1f} s = {args.rows / seconds:,.0f} rows/s; "
        f"peak RSS {peak_rss_mb():.0f} MiB (self + largest child)"
    )


if __name__ == "__main__":
    main()
