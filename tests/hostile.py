"""Running a job over poison rows mixed with good ones, and reading back what it made."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig
from tests.fake_generator import FakeSpec

# Small enough for every test job; the poison rows make their own long lines.
MAX_LINE_BYTES = 8192


MAX_METADATA_BYTES = 1024


def job(manifest: str, out: Path, **kw: Any) -> JobConfig:
    """8x8 images in 2 steps, shards of 8 rows, small line and metadata limits."""
    return JobConfig(manifest=manifest, output=str(out), shard_size=8, job_seed=3,
                     max_line_bytes=MAX_LINE_BYTES, max_metadata_bytes=MAX_METADATA_BYTES,
                     defaults={"height": 8, "width": 8, "steps": 2}, **kw)


def run_job(manifest: str, out: Path, **kw: Any) -> dict[str, Any]:
    """The job over the manifest, with the fake generator."""
    return run_pipeline(job(manifest, out, **kw), FakeSpec())


def rejects(out: Path) -> dict[tuple[str, int], dict[str, Any]]:
    """(manifest file name, line) -> reject record, for every reject of the job."""
    found = {}
    for path in sorted((out / "_rejects").glob("*.jsonl")):
        # split on b"\n" only: str.splitlines would also cut at U+0085 or U+2028 in a row
        for text in path.read_bytes().split(b"\n")[:-1]:
            reject = json.loads(text)
            place = (Path(reject["source"]).name, reject["line"])
            assert place not in found, f"two rejects for {place}"
            found[place] = reject
    return found


def generated_prompts(out: Path) -> list[str]:
    """The prompt of every image the job wrote (webdataset output)."""
    prompts = []
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            prompts += [tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".txt")]
    return prompts


def assert_rows_add_up(summary: dict[str, Any], generated: int, rejected: int) -> None:
    c = summary["counts"]
    assert (c["rows_generated"], c["rows_rejected"]) == (generated, rejected), c
    assert c["rows_read"] == c["rows_generated"] + c["rows_rejected"], c


def write_images(folder: Path) -> None:
    """ok.png and mask.png (16x16), and images that cannot be read."""
    folder.mkdir()
    Image.fromarray(np.full((16, 16, 3), 90, np.uint8)).save(folder / "ok.png")
    Image.fromarray(np.full((16, 16), 255, np.uint8)).save(folder / "mask.png")
    (folder / "notes.png").write_text("not an image")
    (folder / "empty.png").write_bytes(b"")
    data = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), np.uint8)).save(
        data, "PNG")
    (folder / "truncated.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
