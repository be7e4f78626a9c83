"""GeneratorSpec: the picklable recipe a Beam pipeline ships to its workers.

Workers call `build()` once per process (through Beam's `Shared`), so the weights are loaded
and placed on the devices once, however many shards the process generates. This module
imports neither JAX nor the weights at import time, so the dataset planner can use it.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any


@dataclasses.dataclass(frozen=True)
class GeneratorSpec:
    model: str
    dtype: str | None = None  # None: float32 on CPU, bfloat16 on GPU/TPU
    batch_size: int | None = None  # None: one image per device on the 'data' axis
    model_parallel: int = 1
    expect_backend: str | None = None  # e.g. "gpu": fail instead of falling back to CPU
    compilation_cache: str | None = None  # None: ~/.cache/jaxgen/xla (or $JAXGEN_CACHE_DIR)
    variant: str | None = None
    allow_pickle: bool = False
    resize: str | None = None  # init images and masks: crop | fit | stretch (None: crop)
    micro_batch: int | None = None  # items per device at a time; see Generator
    watermark: bool = False  # SDXL's invisible watermark after decode (engine.watermark)

    def build(self) -> Any:
        from jaxgen.engine.generator import Generator
        from jaxgen.engine.sharding import make_mesh, use_all_cpu_cores

        use_all_cpu_cores()  # a fresh worker process; no-op where JAX already started
        return Generator.from_pretrained(
            self.model, variant=self.variant, allow_pickle=self.allow_pickle,
            mesh=make_mesh(self.model_parallel), dtype=self.dtype, batch_size=self.batch_size,
            expect_backend=self.expect_backend,
            compilation_cache=self.compilation_cache or True, micro_batch=self.micro_batch,
            watermark=self.watermark, **({"resize": self.resize} if self.resize else {}))

    def check(self) -> None:
        """Fail before any pipeline work: model path, configs, batch size vs this host's
        devices (workers elsewhere may differ; they check again when they build)."""
        import jax

        self._configs()
        if self.model_parallel < 1 or jax.local_device_count() % self.model_parallel:
            raise ValueError(f"model_parallel {self.model_parallel}: must divide the "
                             f"{jax.local_device_count()} local devices")
        n_data = jax.local_device_count() // self.model_parallel
        if self.batch_size is not None and (self.batch_size < 1 or self.batch_size % n_data):
            raise ValueError(f"batch_size {self.batch_size}: must be a positive multiple of the "
                             f"data axis ({n_data} devices here)")
        batch = self.batch_size or n_data
        if self.micro_batch is not None and (self.micro_batch < 1
                                             or batch % (self.micro_batch * n_data)):
            raise ValueError(f"micro_batch {self.micro_batch}: the batch ({batch}) must be a "
                             f"multiple of micro_batch x {n_data} devices here")

    def job_record(self) -> dict[str, Any]:
        """What of this spec changes pixels, for the job record (`_job.json`): the model
        directory's content, and the dtype, batch size (or, with a micro-batch, which makes
        the batch size irrelevant to pixels, the micro-batch), model split, weight variant
        and, when on, the watermark."""
        from jaxgen.engine.watermark import SDXL_WATERMARK

        batch = {"batch_size": self.batch_size} if self.micro_batch is None else {
            "micro_batch": self.micro_batch}
        return {"model_sha256": directory_sha256(self.model_path), "dtype": self.dtype or "auto",
                **batch, "model_parallel": self.model_parallel, "variant": self.variant,
                **({"watermark": SDXL_WATERMARK} if self.watermark else {})}

    def size_multiple(self) -> int:
        """Heights/widths must be multiples of this; read from the configs, no weights."""
        from jaxgen.weights.model_dir import size_multiple

        return size_multiple(*self._configs())

    def empty_prompt(self) -> bool:
        """Whether the model takes an empty prompt (its jaxgen.json); no weights read."""
        from jaxgen.weights.model_dir import takes_empty_prompt

        return takes_empty_prompt(self.model_path)

    def native_size(self) -> int:
        from jaxgen.weights.model_dir import native_size

        return native_size(*self._configs())

    def _configs(self):
        from jaxgen.models import UNetConfig, VAEConfig

        root = self.model_path
        read = lambda name: json.loads((root / name / "config.json").read_text())  # noqa: E731
        return (UNetConfig.from_dict(read("unet"), f"{root}/unet/config.json"),
                VAEConfig.from_dict(read("vae"), f"{root}/vae/config.json"))

    @property
    def model_path(self) -> Path:
        from jaxgen.weights.model_dir import resolve_model_path

        return resolve_model_path(self.model)


def directory_sha256(root: Path) -> str:
    """One sha256 over every file under `root`: its relative path and its bytes."""
    import hashlib

    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        with open(path, "rb") as f:
            while chunk := f.read(1 << 24):
                digest.update(chunk)
    return digest.hexdigest()
