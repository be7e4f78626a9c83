"""The augment job: read the labelled input, write its plan, run the generate pipeline.

What the workers need is written under OUT/_augment/: `plan.jsonl` (the manifest) and
`sources/SHA256.EXT`, the real images that were read out of tar or parquet files (an image
folder's files are referenced where they lie). Both are the same bytes on every rerun of the
same input and recipe, so the pipeline resumes as `jaxgen generate` does; another input or
recipe over a started output stops at once instead of mixing two jobs. They are written
under the output's lock, which the pipeline then keeps, so a second job on the same output
(a `--restart` above all) cannot change them under a running one.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping, Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems

from jaxgen.augment.inputs import LabelledImage, read_labelled
from jaxgen.augment.plan import manifest_bytes, plan_rows
from jaxgen.augment.recipe import Recipe
from jaxgen.beam.pipeline import GeneratorSpec, run_pipeline
from jaxgen.dataset.config import JobConfig, load_job_config
from jaxgen.dataset.lock import OutputLock
from jaxgen.dataset.output_dir import check_output_is_ours
from jaxgen.dataset.writers import join
from jaxgen.requests import ConfigError

AUGMENT_DIR = "_augment"
PLAN_FILE = "plan.jsonl"


@dataclasses.dataclass(frozen=True)
class AugmentJob:
    """An augmentation as the pipeline runs it: its job and what it was made from."""

    config: JobConfig
    images: tuple[LabelledImage, ...]
    labels: tuple[str, ...]
    rows: int
    # What run() writes: (path, bytes, what other bytes found there would mean).
    files: tuple[tuple[str, bytes, str], ...]


def prepare(source: str, recipe: Recipe, out: str, *, input_format: str = "auto",
            settings: Mapping[str, Any] | None = None,
            model_defaults: Mapping[str, Any] | None = None,
            force: bool = False) -> AugmentJob:
    """Read the input and plan the job; nothing is written until run(). `settings`: JobConfig
    keys (output_format, shard_size, ...) as a command line gives them."""
    images = read_labelled(source, input_format)
    check_output_is_ours(out, force)
    folder = join(out, AUGMENT_DIR)
    files, sources = [], {}
    for image in images:
        if image.path is not None:  # referenced where it lies
            sources[image.key] = image.path if "://" in image.path else \
                os.path.abspath(image.path)
            continue
        sources[image.key] = join(folder, "sources", image.sha256 + image.suffix)
        files.append((sources[image.key], image.data or b"", "another image under its sha256"))
    rows = list(plan_rows(recipe, images, sources))
    if not rows:
        raise ConfigError("recipe: its entries plan no image for this input")
    manifest = join(folder, PLAN_FILE)
    files.append((manifest, manifest_bytes(iter(rows)), "the plan of another input or recipe"))
    labels = tuple(sorted({i.label for i in images}))
    config = load_job_config(None, {**(settings or {}), "manifest": manifest, "output": out,
                                    "labels": labels, "filter": recipe.filter,
                                    "job_seed": recipe.seed}, model_defaults)
    return AugmentJob(config, tuple(images), labels, len(rows), tuple(files))


def run(job: AugmentJob, spec: GeneratorSpec | None, options: Sequence[str] | None = None,
        *, restart: bool = False) -> dict[str, Any]:
    """Write OUT/_augment/ and run the job's pipeline (the generate pipeline), all under the
    output's lock; return the summary. `restart`: remove what an earlier job wrote in the
    output first, its plan included."""
    out = job.config.output
    if not FileSystems.exists(out):
        FileSystems.mkdirs(out)
    with OutputLock(out, job.config.host_index):
        folder = join(out, AUGMENT_DIR)
        if restart and FileSystems.exists(folder):
            FileSystems.delete([folder])
        for path, data, other in job.files:
            _write_same(path, data, other)
        # The output was checked in prepare(); it now holds _augment/, written by this job.
        return run_pipeline(job.config, spec, list(options or []), restart=restart,
                            force=True)


def _write_same(path: str, data: bytes, other: str) -> None:
    """Write `path`, or find it already holding `data` (a rerun); ConfigError if it holds
    something else."""
    if FileSystems.exists(path):
        with FileSystems.open(path) as f:
            if f.read() == data:
                return
        raise ConfigError(f"{path}: this output holds {other}; pass --restart to start it "
                          "over, or choose another --out")
    parent = path.rsplit("/", 1)[0]
    if not FileSystems.exists(parent):
        FileSystems.mkdirs(parent)
    with FileSystems.create(path) as f:
        f.write(data)
