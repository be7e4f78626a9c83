"""Time to the first image in a fresh process, with a cold and then a warm compile cache.

    python -m benchmarks.bench_compile_cache [--model DIR] [--size 64] [--steps 25]

Runs the same generation in two child processes that share a new, empty cache directory:
the first compiles and fills it, the second should load the program from it.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time

CHILD = r"""
import json, sys, time
t0 = time.perf_counter()
from jaxgen.engine.generator import Generator
from jaxgen.requests import GenerationRequest
args = json.loads(sys.argv[1])
gen = Generator.from_pretrained(args["model"], compilation_cache=args["cache"])
t_load = time.perf_counter()
req = GenerationRequest("a red circle", seed=0, height=args["size"], width=args["size"],
                        steps=args["steps"])
next(iter(gen.generate([req])))
t_first = time.perf_counter()
print(json.dumps({"import_and_load_s": t_load - t0, "first_image_s": t_first - t_load,
                  "total_s": t_first - t0}))
"""


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", help="diffusers-format directory (default: a tiny random model)")
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--steps", type=int, default=25)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model = args.model or _tiny_model(tmp)
        runs = []
        for label in ("cold cache", "warm cache"):
            payload = json.dumps({"model": model, "cache": f"{tmp}/xla", "size": args.size,
                                  "steps": args.steps})
            start = time.perf_counter()
            out = subprocess.run([sys.executable, "-c", CHILD, payload], check=True,
                                 capture_output=True, text=True).stdout
            result = json.loads(out.strip().splitlines()[-1])
            result["process_wall_s"] = time.perf_counter() - start
            runs.append(result)
            print(f"{label}: " + ", ".join(f"{k}={v:.2f}" for k, v in result.items()))
        print(f"first image speed-up from the cache: "
              f"{runs[0]['first_image_s'] / runs[1]['first_image_s']:.1f}x")


def _tiny_model(tmp: str) -> str:
    from jaxgen.weights.random_model import write_random_model

    return str(write_random_model(f"{tmp}/model"))


if __name__ == "__main__":
    main()
