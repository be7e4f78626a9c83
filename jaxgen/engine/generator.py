"""The Generator: requests in, images out, every local device busy, same image whatever the layout.

Requests are validated (before any device work); their init images and masks are read a
window at a time on this worker; each is expanded to one item per image, grouped
by SamplingSpec into fixed-size batches (the tail padded with a copy of a real item and
dropped on the way out) and run through one jitted, sharded SamplingProgram per spec, its
per-item inputs one ItemInputs pytree split over the mesh's 'data' axis. A window of items
is dispatched before the previous window's images are pulled to the host, so tokenising and
PNG-bound host work overlap device work through JAX's async dispatch.

This is the one driver of the sampling program: ShapesEval's model_generator runs through it.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import warnings
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental.compilation_cache import compilation_cache
from jax.sharding import Mesh

from jaxgen.engine import sdxl
from jaxgen.engine.grouping import SamplingSpec
from jaxgen.engine.inputs import ItemInputs, noise_ids, start_step
from jaxgen.engine.memory import attention_score_bytes, device_memory_bytes
from jaxgen.engine.sampling import SamplingProgram
from jaxgen.engine.sharding import (
    batch_sharding,
    check_backend,
    make_mesh,
    param_shardings,
    per_device_micro_batches,
)
from jaxgen.engine.types import GeneratedImage
from jaxgen.engine.watermark import SDXL_WATERMARK, applies, embed_watermark
from jaxgen.images import DEFAULT_RESIZE, RESIZE_POLICIES, ImageInputs, load_image_inputs
from jaxgen.requests import (
    AESTHETIC_SCORES,
    MICRO_CONDITIONING,
    GenerationRequest,
    RequestError,
    stable_seed,
    validate_request,
)
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


# on_reject(position in the requests given, the request as given, why it cannot be generated)
OnReject = Callable[[int, GenerationRequest, RequestError], None]


class _Checked(NamedTuple):
    position: int
    request: GenerationRequest  # validated, seed filled in; sizes None until its image is read


@dataclasses.dataclass(frozen=True, eq=False)
class _Item:
    position: int
    request: GenerationRequest  # final: seed and size filled in
    index: int
    inputs: ImageInputs | None  # the init image and mask, as read and fitted
    cond_ids: np.ndarray
    uncond_ids: np.ndarray
    # SDXL: (cond, uncond) token ids of the second tokenizer; None for SD 1.x/2.x.
    ids_2: tuple[np.ndarray, np.ndarray] | None = None


def warn_if_far_from_native(height: Any, width: Any, native: int) -> None:
    """A model asked for far more or less than its native side draws noise, silently: say so."""
    sides = [s for s in (height, width) if isinstance(s, int | float) and s > 0]
    if any(not 0.5 <= s / native <= 2 for s in sides):
        warnings.warn(f"{height}x{width} is far from this model's native {native}x{native}: "
                      "expect noise or broken images; leave height/width out to get the native "
                      "size", stacklevel=4)


def _tokenized(tokenizer: Any, field: str, prompt: str,
               negative_prompt: str) -> tuple[np.ndarray, np.ndarray]:
    """(prompt ids, negative prompt ids); a tokenizer's own failure belongs to the row."""
    try:
        cond, uncond = tokenize(tokenizer, [prompt, negative_prompt])
    except Exception as error:
        raise RequestError(field, prompt, f"cannot be tokenized: {error}") from error
    return cond, uncond


class Generator:
    """Build once (loads and places the weights), call `generate` many times."""

    def __init__(self, model: DiffusionModel, *, mesh: Mesh | None = None, dtype: Any = None,
                 batch_size: int | None = None, job_seed: int = 0,
                 expect_backend: str | None = None,
                 compilation_cache: str | Path | bool | None = True,
                 min_shard_size: int = 2**20, attention: str | None = None,
                 resize: str = DEFAULT_RESIZE, micro_batch: int | None = None,
                 watermark: bool = False):
        if resize not in RESIZE_POLICIES:
            raise ValueError(f"resize {resize!r}: must be one of {', '.join(RESIZE_POLICIES)}")
        self.resize = resize  # how init images and masks are fitted to a request's size
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
        # None: each device computes batch_size / devices items at once (fastest; bytes may
        # differ by 1/255 across batch sizes). K: K at a time, whatever the batch or mesh.
        self.micro_batch = micro_batch
        if micro_batch is not None and (micro_batch < 1
                                        or self.batch_size % (micro_batch * n_data)):
            raise ValueError(f"micro_batch {micro_batch}: batch_size {self.batch_size} must be "
                             f"a multiple of micro_batch x {n_data} devices")
        self.job_seed = job_seed
        # SDXL's invisible watermark on each image after decode (off: images untouched).
        self.watermark = watermark
        self.attention = attention  # None: XLA's attention; "cudnn": fused where it fits
        self._param_shardings = param_shardings(model.params, self.mesh, min_shard_size)
        params = jax.tree.map(lambda a: jnp.asarray(a, self.dtype), model.params)
        self.params = jax.device_put(params, self._param_shardings)
        self._programs: dict[SamplingSpec, Any] = {}
        self._device_bytes = device_memory_bytes(self.mesh.devices.flat[0])

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
        """Validate (raising RequestError naming the field) and fill in a missing seed and a
        text-to-image request's missing size (the model's native one); warn when the size is
        far from the native one. An init image's request without a size keeps None: its
        image's own size, rounded to the model's size multiple, is filled in when it is read.
        """
        if request.seed is None:  # from the request as given, so reading never moves it
            request = dataclasses.replace(request, seed=stable_seed(self.job_seed, request.id,
                                                                    request))
        native, unsized = self.model.native_size, request.height is None or request.width is None
        if unsized and request.init_image is None:
            request = dataclasses.replace(request, height=request.height or native,
                                          width=request.width or native)
            unsized = False
        if unsized:  # every other field now; the size once the image is read
            validate_request(dataclasses.replace(request, height=request.height or native,
                                                 width=request.width or native),
                             size_multiple=self.model.size_multiple,
                             prompt_required=not self.model.empty_prompt)
        else:
            warn_if_far_from_native(request.height, request.width, native)
            validate_request(request, size_multiple=self.model.size_multiple,
                             prompt_required=not self.model.empty_prompt)
        self._check_mode(request)
        if not unsized:
            self._check_memory(request)
        return request

    def _check_memory(self, request: GenerationRequest) -> None:
        """Reject a size whose attention scores alone exceed a device (see engine.memory)."""
        if self.attention == "cudnn" or self._device_bytes is None:
            return
        f = self.model.latent_factor
        items = self.micro_batch or self.batch_size // self.mesh.shape["data"]
        need = attention_score_bytes(self.model.unet, request.height // f, request.width // f,
                                     items)
        if need > self._device_bytes:
            raise RequestError("height", request.height,
                               f"{request.height}x{request.width} needs about "
                               f"{need / 2**30:,.0f} GiB on each device for one attention "
                               f"layer's scores, more than its {self._device_bytes / 2**30:,.0f} "
                               "GiB: ask for a smaller size")

    def _check_mode(self, request: GenerationRequest) -> None:
        if request.prompt_2 is not None and self.model.family != "sdxl":
            raise RequestError("prompt_2", request.prompt_2,
                               f"model {self.model_name!r} has one text encoder; prompt_2 is "
                               "for SDXL models")
        for name in MICRO_CONDITIONING:
            if getattr(request, name) is not None and self.model.family != "sdxl":
                raise RequestError(name, getattr(request, name),
                                   f"model {self.model_name!r} is not an SDXL model; {name} is "
                                   "SDXL's micro-conditioning")
        self._check_refiner(request)
        if self.model.unet.in_channels != self.model.vae.latent_channels and \
                request.mode != "inpainting":
            field = "init_image" if request.init_image is None else "mask_image"
            raise RequestError(field, getattr(request, field),
                               f"model {self.model_name!r} is an inpainting model (its UNet "
                               f"takes {self.model.unet.in_channels} channels): each request "
                               "needs an init_image and a mask_image")
        if request.mode != "text-to-image" and start_step(request.steps, request.strength) \
                >= request.steps:
            raise RequestError("strength", request.strength,
                               f"with {request.steps} steps leaves no step to run: "
                               "steps * strength must be at least 1")

    def _check_refiner(self, request: GenerationRequest) -> None:
        """A refiner's conditioning: aesthetic scores instead of target sizes, one text
        encoder (text_encoder_2) for the prompt, and an image to refine."""
        aesthetic = self.model.requires_aesthetics_score
        unused = ("target_size", "negative_target_size") if aesthetic else AESTHETIC_SCORES
        for name in unused:
            if getattr(request, name) is not None:
                uses = "aesthetic scores (requires_aesthetics_score), not target sizes" \
                    if aesthetic else "no aesthetic score (it is a refiner's conditioning)"
                raise RequestError(name, getattr(request, name),
                                   f"model {self.model_name!r} takes {uses}")
        if self.model.family == "sdxl" and self.model.text_encoder is None:
            if request.prompt_2 is not None:
                raise RequestError("prompt_2", request.prompt_2,
                                   f"model {self.model_name!r} is an SDXL refiner with one "
                                   "text encoder (text_encoder_2), which reads the prompt")
        if aesthetic and request.mode == "text-to-image":
            raise RequestError("init_image", None,
                               f"model {self.model_name!r} is an SDXL refiner "
                               "(requires_aesthetics_score): it refines an image, as diffusers' "
                               "StableDiffusionXLImg2ImgPipeline; each request needs an "
                               "init_image")

    def generate(self, requests: Iterable[GenerationRequest], window: int | None = None,
                 on_reject: OnReject | None = None) -> Iterator[GeneratedImage]:
        """Yield each request's images in request order. A list is validated whole before any
        device work; a stream is validated a window at a time. Init images and masks are read
        a window at a time, so a long list's images are never all in memory.

        `on_reject(position, request, error)`: a request that fails validation, image reading
        or tokenizing is reported through it (before any image of it or of a later request is
        yielded) and skipped; without it, the RequestError is raised.
        """
        def checked(position: int, request: GenerationRequest) -> _Checked | None:
            try:
                return _Checked(position, self.prepare(request))
            except RequestError as error:
                if on_reject is None:
                    raise
                on_reject(position, request, error)
                return None

        # Each request is validated once: a list eagerly (all errors before any device work),
        # a stream lazily as its windows are read.
        pairs: Iterable[_Checked | None] = itertools.starmap(checked, enumerate(requests))
        if isinstance(requests, list | tuple):
            pairs = list(pairs)
        window = window or 4 * self.batch_size
        in_flight: deque = deque()
        for items in self._windows((p for p in pairs if p is not None), window, on_reject):
            in_flight.append(self._dispatch(items))
            if len(in_flight) > 1:  # keep one window queued on the device while we unpack
                yield from self._collect(in_flight.popleft())
        while in_flight:
            yield from self._collect(in_flight.popleft())

    def _windows(self, requests: Iterable[_Checked], size: int,
                 on_reject: OnReject | None) -> Iterator[list[_Item]]:
        items: list[_Item] = []
        for position, request in requests:
            try:
                item = self._load(position, request)
            except RequestError as error:
                if on_reject is None:
                    raise
                on_reject(position, request, error)
                continue
            items += [dataclasses.replace(item, index=k) for k in range(item.request.num_images)]
            if len(items) >= size:
                yield items
                items = []
        if items:
            yield items

    def _load(self, position: int, request: GenerationRequest) -> _Item:
        """Read the request's images (fitting them to its size, or taking theirs), tokenize."""
        inputs = None
        if request.init_image is not None:
            size = None if request.height is None or request.width is None else \
                (request.height, request.width)
            inputs = load_image_inputs(request.init_image, request.mask_image, size=size,
                                       size_multiple=self.model.size_multiple,
                                       resize=self.resize)
            if size is None:
                height, width = inputs.image.shape[:2]
                request = dataclasses.replace(request, height=height, width=width)
                warn_if_far_from_native(height, width, self.model.native_size)
                validate_request(request, size_multiple=self.model.size_multiple,
                                 prompt_required=not self.model.empty_prompt)
                self._check_memory(request)
        # A refiner's only tokenizer is tokenizer_2: its ids are the prompt's.
        tokenizer = self.model.tokenizer or self.model.tokenizer_2
        cond, uncond = _tokenized(tokenizer, "prompt", request.prompt, request.negative_prompt)
        ids_2 = None
        if self.model.family == "sdxl" and self.model.tokenizer is not None:
            field = "prompt" if request.prompt_2 is None else "prompt_2"
            ids_2 = _tokenized(self.model.tokenizer_2, field, getattr(request, field),
                               request.negative_prompt)
        return _Item(position, request, 0, inputs, cond, uncond, ids_2)

    def _dispatch(self, items: list[_Item]) -> list[tuple[list[_Item], Any]]:
        groups: dict[SamplingSpec, list[_Item]] = {}
        for item in items:
            groups.setdefault(self._spec(item.request), []).append(item)
        launched = []
        for spec, group in groups.items():
            # A batch runs from its earliest start step: batch equal strengths together.
            group.sort(key=lambda it: start_step(it.request.steps, it.request.strength)
                       if spec.mode != "text-to-image" else 0)
            for start in range(0, len(group), self.batch_size):
                batch = group[start:start + self.batch_size]
                launched.append((batch, self._run(spec, batch)))
        return launched

    def _run(self, spec: SamplingSpec, batch: list[_Item]) -> Any:
        padded = batch + [batch[-1]] * (self.batch_size - len(batch))
        reqs = [it.request for it in padded]
        fields: dict[str, np.ndarray] = {}
        if spec.mode != "text-to-image":
            fields["init_image"] = np.stack([it.inputs.image for it in padded])
            fields["start_step"] = np.array([start_step(r.steps, r.strength) for r in reqs],
                                            np.int32)
        if spec.mode == "inpainting":
            fields["image_mask"] = np.stack([it.inputs.mask for it in padded])[..., None]
        if self.model.family == "sdxl":
            fields |= self._sdxl_fields(padded)
        inputs = ItemInputs(
            cond_ids=np.stack([it.cond_ids for it in padded]),
            uncond_ids=np.stack([it.uncond_ids for it in padded]),
            noise_ids=noise_ids(np.array([r.seed for r in reqs], np.uint64),
                                np.array([it.index for it in padded])),
            guidance=np.array([r.guidance for r in reqs], np.float32), **fields)
        return self._program(spec)(self.params, inputs)  # async: returns before it finishes

    def _spec(self, request: GenerationRequest) -> SamplingSpec:
        spec = SamplingSpec.of(request)
        if not spec.guided and request.guidance != 1 and not request.negative_prompt and \
                self.model.force_zeros_for_empty_prompt:
            # An empty prompt's negative branch is zeros here, not the same text: guided.
            spec = dataclasses.replace(spec, guided=True)
        if not spec.guided and request.guidance != 1 and self.model.requires_aesthetics_score \
                and len(set(sdxl.aesthetic_scores(request))) == 2:
            spec = dataclasses.replace(spec, guided=True)  # the branches' scores differ
        return spec

    def _sdxl_fields(self, padded: list[_Item]) -> dict[str, np.ndarray]:
        """The second tokenizer's ids, each branch's micro-conditioning time ids (inputs, so
        items of different micro-conditioning share a batch), and
        force_zeros_for_empty_prompt's negative zeros."""
        aesthetic = self.model.requires_aesthetics_score
        cond, uncond = zip(*(sdxl.time_ids(it.request, aesthetic) for it in padded),
                           strict=True)
        zero = [self.model.force_zeros_for_empty_prompt and not it.request.negative_prompt
                for it in padded]
        fields = {"time_ids": np.stack(cond), "uncond_time_ids": np.stack(uncond),
                  "uncond_zero": np.array(zero, np.bool_)}
        if padded[0].ids_2 is not None:  # not a refiner
            fields |= {"cond_ids_2": np.stack([it.ids_2[0] for it in padded]),
                       "uncond_ids_2": np.stack([it.ids_2[1] for it in padded])}
        return fields

    def _program(self, spec: SamplingSpec):
        if spec not in self._programs:
            program = SamplingProgram.build(self.model, spec, self.dtype, self.attention)
            # One sharding for every ItemInputs field: each splits its batch axis over 'data'.
            data = batch_sharding(self.mesh)
            sample = program.sample
            if self.micro_batch is not None:
                sample = per_device_micro_batches(sample, self.mesh, self.micro_batch)
            self._programs[spec] = jax.jit(sample, in_shardings=(self._param_shardings, data),
                                           out_shardings=data)
        return self._programs[spec]

    def compile(self, spec: SamplingSpec) -> jax.stages.Compiled:
        """Compile `spec`'s program ahead of any request (warm-up, cost analysis); a later
        `generate` with that shape reuses it."""
        tokenizer, tokenizer_2 = self.model.tokenizer, self.model.tokenizer_2
        if tokenizer is None:  # a refiner: its one tokenizer's ids are cond_ids
            tokenizer, tokenizer_2 = tokenizer_2, None
        tokens_2 = None if tokenizer_2 is None else tokenizer_2.model_max_length
        time_ids = 0 if self.model.family != "sdxl" else \
            5 if self.model.requires_aesthetics_score else 6
        inputs = ItemInputs.abstract(self.batch_size, tokenizer.model_max_length, spec.mode,
                                     (spec.height, spec.width), tokens_2, time_ids)
        return self._program(spec).lower(self.params, inputs).compile()

    def _collect(self, launched: list[tuple[list[_Item], Any]]) -> Iterator[GeneratedImage]:
        done: dict[tuple[int, int], GeneratedImage] = {}
        for batch, (images, finite) in launched:
            host, finite = np.asarray(images), np.asarray(finite)
            for row, item in enumerate(batch):
                image, mark = host[row], None
                if self.watermark and applies(*image.shape[:2]):
                    image, mark = embed_watermark(image), SDXL_WATERMARK
                done[(item.position, item.index)] = GeneratedImage(
                    item.request, item.index, image, item.inputs, bool(finite[row]), mark)
        for key in sorted(done):
            yield done[key]

    @property
    def compiled_programs(self) -> int:
        """How many shape-specific programs have been built (one compile each)."""
        return len(self._programs)
