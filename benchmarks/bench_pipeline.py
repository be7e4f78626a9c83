"""Pipeline throughput vs the bare Generator, same model, requests and batch.

    python -m benchmarks.bench_pipeline [--model DIR] [--rows 64] [--steps 10] [--shard-size 16]

The bare run times Generator.generate over all requests (after a warm-up batch, so no
compile inside). The pipeline run is `jaxgen generate` (FnApiRunner, in-process) on a
manifest of the same requests; it reports both the wall time (Beam start-up, model load
and a compile served from the persistent cache included) and the steady state: the sum
of the shards' own durations (generate + encode PNG + write tar/parquet), which is what
grows with the dataset.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")
    p.add_argument("--rows", type=int, default=64)
    p.add_argument("--steps", type=int, default=10)
    p.add_argument("--shard-size", type=int, default=16)
    p.add_argument("--batch-size", type=int)
    args = p.parse_args()

    from jaxgen.default_model import default_model_path
    from jaxgen.engine.generator import Generator
    from jaxgen.engine.spec import GeneratorSpec
    from jaxgen.requests import GenerationRequest

    model = args.model or str(default_model_path())
    spec = GeneratorSpec(model, batch_size=args.batch_size)
    side = spec.native_size()
    rows = [{"id": f"r{i}", "prompt": f"a red circle number {i}", "seed": i}
            for i in range(args.rows)]
    requests = [GenerationRequest(r["prompt"], seed=r["seed"], id=r["id"], height=side,
                                  width=side, steps=args.steps) for r in rows]

    gen = spec.build()
    assert isinstance(gen, Generator)
    list(gen.generate(requests[: gen.batch_size]))  # compile outside the timing
    t0 = time.perf_counter()
    n_bare = sum(1 for _ in gen.generate(requests))
    bare_s = time.perf_counter() - t0
    batch_size = gen.batch_size
    del gen

    with tempfile.TemporaryDirectory() as tmp:
        manifest = Path(tmp) / "rows.jsonl"
        manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
        from jaxgen.cli import main as cli

        argv = ["generate", "--manifest", str(manifest), "--out", f"{tmp}/ds", "--model", model,
                "--steps", str(args.steps), "--shard-size", str(args.shard_size),
                "--no-progress"]
        if args.batch_size:
            argv += ["--batch-size", str(args.batch_size)]
        t0 = time.perf_counter()
        assert cli(argv) == 0
        wall_s = time.perf_counter() - t0
        stats = sorted((json.loads(f.read_text()) for f in Path(f"{tmp}/ds").glob("*_stats.json")),
                       key=lambda s: s["start_time"])
    shard_s = sum(s["duration_s"] for s in stats)
    images = sum(s["images"] for s in stats)
    # The first shard a worker writes also loads the program (persistent cache) and warms up.
    later = stats[1:]
    later_rate = (sum(s["images"] for s in later) / sum(s["duration_s"] for s in later)
                  if later else None)
    assert images == n_bare, (images, n_bare)
    result = {
        "images": images, "steps": args.steps, "size": side, "batch_size": batch_size,
        "bare_images_per_s": round(n_bare / bare_s, 3),
        "pipeline_steady_images_per_s": round(images / shard_s, 3),
        "pipeline_after_first_shard_images_per_s": later_rate and round(later_rate, 3),
        "pipeline_wall_images_per_s": round(images / wall_s, 3),
        "steady_overhead_pct": round(100 * (shard_s / bare_s - 1), 1),
        "after_first_shard_overhead_pct": later_rate and round(
            100 * (n_bare / bare_s / later_rate - 1), 1),
        "wall_overhead_s": round(wall_s - bare_s, 2),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
