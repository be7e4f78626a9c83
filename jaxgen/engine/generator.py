"""The Generator: requests in, images out, every local device busy, same image whatever the layout.

Requests are validated (before any device work), expanded to one item per image, grouped
by SamplingSpec into fixed-size batches (the tail padded with a copy of a real item and
dropped on the way out) and run through one jitted, sharded SamplingProgram per spec, its
per-item inputs one ItemInputs pytree split over the mesh's 'data' axis. A window of items
is dispatched before the previous window's images are pulled to the host, so tokenising and
PNG-bound host work overlap device work through JAX's async dispatch.

This is the one driver of the sampling program: ShapesEval's model_generator runs through it.
"""

from __future__ import annotations

import dataclasses
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import Mesh

from jaxgen.engine.grouping import SamplingSpec
from jaxgen.engine.inputs import ItemInputs, noise_ids
from jaxgen.engine.sampling import SamplingProgram
from jaxgen.engine.sharding import batch_sharding, check_backend, make_mesh, param_shardings
from jaxgen.engine.types import GeneratedImage
from jaxgen.requests import GenerationRequest, RequestError, stable_seed, validate_request
from jaxgen.weights.model_dir import DiffusionModel, load_model
from jaxgen.weights.tokenizer import tokenize


def default_cache_dir() -> Path:
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "jaxgen" / "xla"


def enable_compilation_cache(path: str | Path | None = None) -> Path:
    """Turn on JAX's persistent compilation cache, so a second process skips compiling."""
    path = Path(path or os.environ.get("JAXGEN_CACHE_DIR") or default_cache_dir())
    path.mkdir(parents=True, exist_ok=True)
    if jax.config.jax_compilation_cache_dir != str(path):
        jax.config.update("jax_compilation_cache_dir", str(path))
        # JAX fixes the directory at the first compile of the process: re-open it here.
        compilation_cache.reset_cache()
    # Cache every program: the defaults skip fast compiles, which are most of ours on CPU.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path


def default_dtype(backend: str) -> Any:
    return jnp.float32 if backend == "cpu" else jnp.bfloat16


@dataclasses.dataclass(frozen=True)
class _Item:
    position: int
    request: GenerationRequest
    index: int


def warn_if_far_from_native(height: Any, width: Any, native: int) -> None:
    """A model asked for far more or less than its native side draws noise, silently: say so."""
    sides = [s for s in (height, width) if isinstance(s, int | float) and s > 0]
    if any(not 0.5 <= s / native <= 2 for s in sides):
        warnings.warn(f"{height}x{width} is far from this model's native {native}x{native}: "
                      "expect noise or broken images; leave height/width out to get the native "
                      "size", stacklevel=4)


class Generator:
    """Build once (loads and places the weights), call `generate` many times."""

    def __init__(self, model: DiffusionModel, *, mesh: Mesh | None = None, dtype: Any = None,
                 batch_size: int | None = None, job_seed: int = 0,
                 expect_backend: str | None = None,
                 compilation_cache: str | Path | bool | None = True,
                 min_shard_size: int = 2**20, attention: str | None = None):
        backend = check_backend(expect_backend)
        if compilation_cache is not False:
            cache = None if compilation_cache is True else compilation_cache
            self.cache_dir: Path | None = enable_compilation_cache(cache)
        else:
            self.cache_dir = None
        self.model = model
        self.mesh = mesh or make_mesh()
        self.dtype = jnp.dtype(dtype or default_dtype(backend))
        n_data = self.mesh.shape["data"]
        self.batch_size = batch_size or n_data
        if self.batch_size < 1 or self.batch_size % n_data:
            raise ValueError(f"batch_size {self.batch_size}: must be a positive multiple of the "
                             f"mesh's data axis ({n_data} devices)")
        self.job_seed = job_seed
        self.attention = attention  # None: XLA's attention; "cudnn": fused where it fits
        self._param_shardings = param_shardings(model.params, self.mesh, min_shard_size)
        params = jax.tree.map(lambda a: jnp.asarray(a, self.dtype), model.params)
        self.params = jax.device_put(params, self._param_shardings)
        self._programs: dict[SamplingSpec, Any] = {}

    @classmethod
    def from_pretrained(cls, path: str | Path, *, variant: str | None = None,
                        allow_pickle: bool = False, **kwargs: Any) -> Generator:
        return cls(load_model(path, variant=variant, allow_pickle=allow_pickle), **kwargs)

    @property
    def model_name(self) -> str:
        return self.model.name

    @property
    def model_hash(self) -> str:
        return self.model.hash

    def device_info(self) -> dict[str, Any]:
        devices = self.mesh.devices.flatten()
        return {"backend": jax.default_backend(), "device_kind": devices[0].device_kind,
                "device_count": int(devices.size), "mesh": dict(self.mesh.shape),
                "dtype": self.dtype.name, "process_index": jax.process_index(),
                "process_count": jax.process_count()}

    def prepare(self, request: GenerationRequest) -> GenerationRequest:
        """Validate (raising RequestError naming the field) and fill in a missing seed; warn
        when the size is far from the model's native one."""
        warn_if_far_from_native(request.height, request.width, self.model.native_size)
        validate_request(request, size_multiple=self.model.size_multiple)
        if request.seed is None:
            request = dataclasses.replace(request, seed=stable_seed(self.job_seed, request.id,
                                                                    request))
        return request

    def generate(self, requests: Iterable[GenerationRequest], window: int | None = None,
                 on_reject: Callable[[int, GenerationRequest, RequestError], None] | None = None,
                 ) -> Iterator[GeneratedImage]:
        """Yield each request's images in request order. A list is validated whole before any
        device work; a stream is validated a window at a time. With `on_reject`, a request that
        fails preparation is reported through it (position, request, error) and skipped."""
        # Each request is prepared once: a list eagerly (all errors before any device work),
        # a stream lazily as its windows are read.
        if on_reject is not None:
            requests = self._prepared_or_rejected(requests, on_reject)
        elif isinstance(requests, list | tuple):
            requests = [self.prepare(r) for r in requests]
        else:
            requests = map(self.prepare, requests)
        window = window or 4 * self.batch_size
        in_flight: deque = deque()
        for items in self._windows(requests, window):
            in_flight.append(self._dispatch(items))
            if len(in_flight) > 1:  # keep one window queued on the device while we unpack
                yield from self._collect(in_flight.popleft())
        while in_flight:
            yield from self._collect(in_flight.popleft())

    def _prepared_or_rejected(self, requests: Iterable[GenerationRequest],
                              on_reject: Callable[[int, GenerationRequest, RequestError], None]
                              ) -> Iterator[GenerationRequest]:
        for position, request in enumerate(requests):
            try:
                yield self.prepare(request)
            except RequestError as e:
                on_reject(position, request, e)

    def _windows(self, requests: Iterable[GenerationRequest], size: int) -> Iterator[list[_Item]]:
        items: list[_Item] = []
        for position, request in enumerate(requests):
            items += [_Item(position, request, k) for k in range(request.num_images)]
            if len(items) >= size:
                yield items
                items = []
        if items:
            yield items

    def _dispatch(self, items: list[_Item]) -> list[tuple[list[_Item], jax.Array]]:
        groups: dict[SamplingSpec, list[_Item]] = {}
        for item in items:
            groups.setdefault(SamplingSpec.of(item.request), []).append(item)
        launched = []
        for spec, group in groups.items():
            for start in range(0, len(group), self.batch_size):
                batch = group[start:start + self.batch_size]
                launched.append((batch, self._run(spec, batch)))
        return launched

    def _run(self, spec: SamplingSpec, batch: list[_Item]) -> jax.Array:
        padded = batch + [batch[-1]] * (self.batch_size - len(batch))
        reqs, tokenizer = [it.request for it in padded], self.model.tokenizer
        inputs = ItemInputs(
            cond_ids=tokenize(tokenizer, [r.prompt for r in reqs]),
            uncond_ids=tokenize(tokenizer, [r.negative_prompt for r in reqs]),
            noise_ids=noise_ids(np.array([r.seed for r in reqs], np.uint64),
                                np.array([it.index for it in padded])),
            guidance=np.array([r.guidance for r in reqs], np.float32))
        return self._program(spec)(self.params, inputs)  # async: returns before it finishes

    def _program(self, spec: SamplingSpec):
        if spec not in self._programs:
            program = SamplingProgram.build(self.model, spec, self.dtype, self.attention)
            # One sharding for every ItemInputs field: each splits its batch axis over 'data'.
            data = batch_sharding(self.mesh)
            self._programs[spec] = jax.jit(program, in_shardings=(self._param_shardings, data),
                                           out_shardings=data)
        return self._programs[spec]

    def compile(self, spec: SamplingSpec) -> jax.stages.Compiled:
        """Compile `spec`'s program ahead of any request (warm-up, cost analysis); a later
        `generate` with that shape reuses it."""
        inputs = ItemInputs.abstract(self.batch_size, self.model.tokenizer.model_max_length)
        return self._program(spec).lower(self.params, inputs).compile()

    @staticmethod
    def _collect(launched: list[tuple[list[_Item], jax.Array]]) -> Iterator[GeneratedImage]:
        done: dict[tuple[int, int], GeneratedImage] = {}
        for batch, images in launched:
            host = np.asarray(images)
            for row, item in enumerate(batch):
                done[(item.position, item.index)] = GeneratedImage(item.request, item.index,
                                                                   host[row])
        for key in sorted(done):
            yield done[key]

    @property
    def compiled_programs(self) -> int:
        """How many shape-specific programs have been built (one compile each)."""
        return len(self._programs)
