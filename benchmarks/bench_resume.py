"""The cost of verified resume: hashing a finished 10,000-image dataset when a run starts.

    .venv/bin/python -m benchmarks.bench_resume [--images 10000] [--size 64] [--format all]

Builds the dataset once per format with fast numpy images (noise, so PNGs have the size of
real 64x64 images, not of flat colours; no model), then times, on the finished output:
the hash check a run starts with (resume.verify_shards), the size check it replaced
(resume.complete_shards), and a whole rerun of the finished job (run_pipeline: job check,
hash check, Beam start, nothing generated). The page cache is warm (the files were just
written): a cold cache adds the disk's read time for the bytes shown.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset import resume
from jaxgen.dataset.config import JobConfig
from jaxgen.engine.types import GeneratedImage
from jaxgen.requests import GenerationRequest


class NoiseGenerator:
    model_name = "noise"
    model_hash = "noise"

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[GeneratedImage]:
        for request in requests:
            for index in range(request.num_images):
                rng = np.random.default_rng([request.seed, index])
                shape = (request.height, request.width, 3)
                yield GeneratedImage(request, index, rng.integers(0, 256, shape, np.uint8))


@dataclasses.dataclass(frozen=True)
class NoiseSpec:
    def build(self) -> NoiseGenerator:
        return NoiseGenerator()

    def job_record(self) -> dict[str, str]:
        return {"model_sha256": "noise"}


def _timed(fn, *args):
    t0 = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - t0


def measure(tmp: Path, fmt: str, images: int, size: int) -> dict[str, float]:
    manifest = tmp / "m.jsonl"
    manifest.write_text("".join(json.dumps({"prompt": f"p {i}"}) + "\n" for i in range(images)))
    config = JobConfig(manifest=str(manifest), output=str(tmp / fmt), output_format=fmt,
                       shard_size=1000, defaults={"height": size, "width": size, "steps": 1})
    _, build_s = _timed(run_pipeline, config, NoiseSpec())
    num = -(-images // config.shard_size)
    data_mb = sum(p.stat().st_size for p in Path(config.output).rglob("*") if p.is_file()) / 2**20
    damaged, hash_s = _timed(resume.verify_shards, config)
    assert not damaged, damaged
    done, size_s = _timed(resume.complete_shards, config.output, num)
    assert len(done) == num
    summary, rerun_s = _timed(run_pipeline, config, NoiseSpec())
    assert summary["counts"]["shards_skipped"] == num
    return {"build_s": build_s, "data_mb": data_mb, "hash_s": hash_s, "size_s": size_s,
            "rerun_s": rerun_s}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--format", default="all",
                        choices=("all", "webdataset", "parquet", "imagefolder"))
    args = parser.parse_args()
    logging.getLogger().setLevel(logging.WARNING)
    formats = ("webdataset", "parquet", "imagefolder") if args.format == "all" else (args.format,)
    for fmt in formats:
        with tempfile.TemporaryDirectory() as tmp:
            m = measure(Path(tmp), fmt, args.images, args.size)
        print(f"{fmt:12s} {args.images} images {args.size}x{args.size}, {m['data_mb']:.0f} MiB "
              f"(built in {m['build_s']:.1f} s): hash check {m['hash_s']:.2f} s "
              f"({m['data_mb'] / m['hash_s']:.0f} MiB/s), size check {m['size_s']:.2f} s, "
              f"rerun of the finished job {m['rerun_s']:.1f} s", flush=True)


if __name__ == "__main__":
    main()
