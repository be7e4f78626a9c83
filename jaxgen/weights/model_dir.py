"""Load and save diffusers-format model directories (safetensors, no network).

The family comes from model_index.json's `_class_name`: Stable Diffusion 1.x/2.x pipelines
(unet, vae, text_encoder, tokenizer) or Stable Diffusion XL pipelines (those and
text_encoder_2, tokenizer_2). An SDXL refiner has no text_encoder/tokenizer (its UNet is
conditioned on text_encoder_2 alone) and `requires_aesthetics_score: true`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import safetensors.numpy

from jaxgen.models import (
    AutoencoderKL,
    CLIPTextConfig,
    CLIPTextModel,
    CLIPTextModelWithProjection,
    CLIPTextWithProjectionConfig,
    UNet2DConditionModel,
    UNetConfig,
    VAEConfig,
)
from jaxgen.models.config import to_dict
from jaxgen.models.unet import example_inputs
from jaxgen.weights.convert import WeightsError, flax_to_torch, torch_to_flax

COMPONENTS = ("unet", "vae", "text_encoder")
SDXL_COMPONENTS = (*COMPONENTS, "text_encoder_2")
REFINER_COMPONENTS = ("unet", "vae", "text_encoder_2")
# model_index.json's _class_name -> family; other names load as SD 1.x/2.x, as they always have.
SDXL_PIPELINES = ("StableDiffusionXLPipeline", "StableDiffusionXLImg2ImgPipeline",
                  "StableDiffusionXLInpaintPipeline")
_WEIGHT_STEM = {"unet": "diffusion_pytorch_model", "vae": "diffusion_pytorch_model",
                "text_encoder": "model", "text_encoder_2": "model"}
_CLASS = {"unet": ("diffusers", "UNet2DConditionModel"), "vae": ("diffusers", "AutoencoderKL"),
          "text_encoder": ("transformers", "CLIPTextModel"),
          "text_encoder_2": ("transformers", "CLIPTextModelWithProjection"),
          "tokenizer": ("transformers", "CLIPTokenizer"),
          "tokenizer_2": ("transformers", "CLIPTokenizer")}
# transformers names CLIPTextModelWithProjection's tensors under text_model. (not the projection).
_PREFIX = {"text_encoder_2": "text_model."}


class ModelDirError(ValueError):
    """The model directory is missing, incomplete or unreadable: names the path."""


@dataclasses.dataclass(frozen=True)
class DiffusionModel:
    """A text-to-image latent-diffusion model: configs, tokenizer and Flax params."""

    name: str
    hash: str  # 10 hex digits over the weight files, like A1111's short model hash
    unet: UNetConfig
    vae: VAEConfig
    text_encoder: CLIPTextConfig | None  # None: an SDXL refiner (text_encoder_2 alone)
    scheduler_config: dict[str, Any]
    tokenizer: Any  # transformers.CLIPTokenizer; None with text_encoder
    params: dict[str, Any]
    raw_configs: dict[str, dict[str, Any]]  # kept so an export is byte-for-byte faithful
    # Trained with caption dropout, so an empty prompt (the unconditional branch) is a request
    # it can draw: its jaxgen.json says "empty_prompt": true (see takes_empty_prompt).
    empty_prompt: bool = False
    # SDXL: the second text encoder (CLIPTextModelWithProjection) and its tokenizer, and the
    # pipeline's force_zeros_for_empty_prompt (zeros, not the encoded "", for no negative).
    text_encoder_2: CLIPTextWithProjectionConfig | None = None
    tokenizer_2: Any = None
    force_zeros_for_empty_prompt: bool = False
    # SDXL refiner: time ids (original size, crop, aesthetic score), not the target size.
    requires_aesthetics_score: bool = False

    def modules(self, dtype: Any = jnp.float32):
        """(UNet, VAE, text encoder); the text encoder is None for an SDXL refiner."""
        text = None if self.text_encoder is None else CLIPTextModel(self.text_encoder, dtype)
        return UNet2DConditionModel(self.unet, dtype), AutoencoderKL(self.vae, dtype), text

    def text_encoder_2_module(self, dtype: Any = jnp.float32) -> CLIPTextModelWithProjection:
        if self.text_encoder_2 is None:
            raise ValueError(f"model {self.name}: has no text_encoder_2 (not an SDXL model)")
        return CLIPTextModelWithProjection(self.text_encoder_2, dtype)

    @property
    def family(self) -> str:
        """"sdxl" (two text encoders, micro-conditioning) or "sd" (SD 1.x/2.x)."""
        return "sdxl" if self.text_encoder_2 is not None else "sd"

    @property
    def vae_force_upcast(self) -> bool:
        """The VAE config's force_upcast (diffusers' default True): decode in float32 when the
        model runs in float16, as diffusers' SDXL pipelines do."""
        return bool(self.raw_configs.get("vae", {}).get("force_upcast", True))

    @property
    def components(self) -> tuple[str, ...]:
        if self.family == "sd":
            return COMPONENTS
        return SDXL_COMPONENTS if self.text_encoder is not None else REFINER_COMPONENTS

    @property
    def latent_factor(self) -> int:
        return self.vae.downscale

    @property
    def size_multiple(self) -> int:
        return size_multiple(self.unet, self.vae)

    @property
    def native_size(self) -> int:
        return native_size(self.unet, self.vae)


def size_multiple(unet: UNetConfig, vae: VAEConfig) -> int:
    """Heights/widths must be multiples of this: the VAE factor times the UNet's downsampling
    (jaxgen does not forward odd upsample sizes as diffusers does)."""
    return vae.downscale * 2 ** (len(unet.block_out_channels) - 1)


def native_size(unet: UNetConfig, vae: VAEConfig) -> int:
    """The resolution the model was trained at (UNet sample_size x VAE factor)."""
    return unet.sample_size * vae.downscale


def resolve_model_path(name_or_path: str | Path) -> Path:
    """A local directory, or a repo id already in the offline Hugging Face cache."""
    path = Path(name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelDirError(f"model path {str(path)!r} is a file; expected a diffusers-format "
                            "directory with model_index.json")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(str(name_or_path), local_files_only=True))
    except Exception as err:  # any hub error means: not available offline
        raise ModelDirError(
            f"model {str(name_or_path)!r} is neither a local directory nor in the offline "
            f"Hugging Face cache ({type(err).__name__}); jaxgen never downloads weights") from err


def model_name(root: Path) -> str:
    """The name a model is recorded under: its repo id (org/name) when it sits in the Hugging
    Face cache (.../models--org--name/snapshots/HASH), else its directory's name."""
    repo = root.parent.parent.name
    if root.parent.name == "snapshots" and repo.startswith("models--"):
        return repo.removeprefix("models--").replace("--", "/")
    return root.name


# The model's own recommended row settings (steps, guidance, sampler, ...): a jaxgen.json
# beside model_index.json, {"recommended": {...}}. jaxgen's chain of defaults puts them over
# the built-in defaults and under the job's (jaxgen.dataset.config.load_job_config).
RECOMMENDED_FILE = "jaxgen.json"


def recommended_settings(name_or_path: str | Path) -> dict[str, Any]:
    """The model directory's recommended row settings; {} when it recommends none (or when it
    cannot be found: loading it reports that)."""
    from jaxgen.requests import DEFAULTABLE_FIELDS, ConfigError

    try:
        file = resolve_model_path(name_or_path) / RECOMMENDED_FILE
    except ModelDirError:
        return {}
    if not file.is_file():
        return {}
    recommended = _read_json(file).get("recommended", {})
    unknown = sorted(set(recommended) - set(DEFAULTABLE_FIELDS))
    if not isinstance(recommended, dict) or unknown:
        raise ConfigError(f"{file}: recommended {unknown or recommended!r}: must map row fields "
                          f"({', '.join(DEFAULTABLE_FIELDS)}) to values")
    return dict(recommended)


def takes_empty_prompt(name_or_path: str | Path) -> bool:
    """Whether the model says (jaxgen.json "empty_prompt": true) that it was trained with
    caption dropout, so an empty prompt draws from its unconditional branch; False when it
    does not say, or cannot be found."""
    from jaxgen.requests import ConfigError

    try:
        file = resolve_model_path(name_or_path) / RECOMMENDED_FILE
    except ModelDirError:
        return False
    if not file.is_file():
        return False
    value = _read_json(file).get("empty_prompt", False)
    if not isinstance(value, bool):
        raise ConfigError(f"{file}: empty_prompt {value!r}: must be true or false")
    return value


def model_root(name_or_path: str | Path) -> Path:
    """The model's directory, checked to be a diffusers-format model (one message for all)."""
    root = resolve_model_path(name_or_path)
    if not (root / "model_index.json").is_file():
        raise ModelDirError(f"{root}: no model_index.json; not a diffusers-format model directory")
    return root


def load_model(name_or_path: str | Path, *, dtype: Any = jnp.float32, variant: str | None = None,
               allow_pickle: bool = False) -> DiffusionModel:
    """Read a diffusers-format directory into a DiffusionModel with params in `dtype`."""
    root = model_root(name_or_path)
    index = _read_json(root / "model_index.json")
    sdxl = index.get("_class_name") in SDXL_PIPELINES
    refiner = sdxl and (index.get("text_encoder") or [None])[0] is None
    components = (REFINER_COMPONENTS if refiner else SDXL_COMPONENTS) if sdxl else COMPONENTS
    raw = {c: _read_json(root / c / "config.json") for c in components}
    raw["scheduler"] = _read_json(root / "scheduler" / "scheduler_config.json")
    configs = {"unet": UNetConfig.from_dict(raw["unet"], f"{root}/unet/config.json"),
               "vae": VAEConfig.from_dict(raw["vae"], f"{root}/vae/config.json"),
               "text_encoder": None if refiner else CLIPTextConfig.from_dict(
                   raw["text_encoder"], f"{root}/text_encoder/config.json")}
    if sdxl:
        configs["text_encoder_2"] = CLIPTextWithProjectionConfig.from_dict(
            raw["text_encoder_2"], f"{root}/text_encoder_2/config.json")
    _check_scheduler(raw["scheduler"], root / "scheduler" / "scheduler_config.json")
    try:
        shapes = param_shapes(configs["unet"], configs["vae"], configs["text_encoder"],
                              configs.get("text_encoder_2"))
    except (TypeError, ValueError, ZeroDivisionError, IndexError) as err:
        # Values of the right type that no model can be built from (e.g. 0 groups).
        raise ModelDirError(f"{root}/{{{','.join(components)}}}/config.json: no model can be "
                            f"built from these configs ({type(err).__name__}: {err})") from err
    params, digest = {}, hashlib.sha256()
    for comp in components:
        files = _weight_files(root / comp, _WEIGHT_STEM[comp], variant, allow_pickle)
        state = {}
        for f in files:
            digest.update(f.relative_to(root).as_posix().encode())
            digest.update(_file_sha256(f))
            state.update(_read_tensors(f))
        tree = torch_to_flax(state, shapes[comp], str(root / comp))
        params[comp] = jax.tree.map(lambda a: jnp.asarray(a, dtype), tree)
    tokenizers = {"tokenizer": None if refiner else _checked_tokenizer(
        root, "tokenizer", configs["text_encoder"])}
    if sdxl:
        tokenizers["tokenizer_2"] = _checked_tokenizer(root, "tokenizer_2",
                                                       configs["text_encoder_2"])
        force_zeros = index.get("force_zeros_for_empty_prompt", True)  # diffusers' default
        if not isinstance(force_zeros, bool):
            raise ModelDirError(f"{root}/model_index.json: force_zeros_for_empty_prompt "
                                f"{force_zeros!r} must be true or false")
        configs["force_zeros_for_empty_prompt"] = force_zeros
        aesthetic = index.get("requires_aesthetics_score", False)  # diffusers' default
        if not isinstance(aesthetic, bool):
            raise ModelDirError(f"{root}/model_index.json: requires_aesthetics_score "
                                f"{aesthetic!r} must be true or false")
        configs["requires_aesthetics_score"] = aesthetic
    return DiffusionModel(
        name=model_name(root), hash=digest.hexdigest()[:10], scheduler_config=raw["scheduler"],
        params=params, raw_configs=raw, empty_prompt=takes_empty_prompt(root),
        **tokenizers, **configs)


def _checked_tokenizer(root: Path, folder: str, text: CLIPTextConfig) -> Any:
    tokenizer = load_tokenizer(root / folder)
    positions = text.max_position_embeddings
    if tokenizer.model_max_length > positions:
        # Flax's Embed returns NaN for out-of-range positions: refuse rather than draw NaNs.
        raise ModelDirError(
            f"{root}/{folder}: model_max_length {tokenizer.model_max_length} exceeds the text "
            f"encoder's max_position_embeddings {positions}")
    return tokenizer


def param_shapes(unet: UNetConfig, vae: VAEConfig, text: CLIPTextConfig | None,
                 text_2: CLIPTextWithProjectionConfig | None = None) -> dict[str, Any]:
    """The parameter tree of each component as ShapeDtypeStructs (nothing allocated); no
    text_encoder for an SDXL refiner (text None)."""
    key = jax.random.key(0)
    vside = 2 ** (len(vae.block_out_channels) - 1)
    trees = {
        "unet": jax.eval_shape(UNet2DConditionModel(unet).init, key, *example_inputs(unet)),
        "vae": jax.eval_shape(AutoencoderKL(vae).init, key,
                              jnp.zeros((1, vside, vside, vae.in_channels))),
    }
    if text is not None:
        trees["text_encoder"] = jax.eval_shape(
            CLIPTextModel(text).init, key, jnp.zeros((1, text.max_position_embeddings), jnp.int32))
    if text_2 is not None:
        trees["text_encoder_2"] = jax.eval_shape(
            CLIPTextModelWithProjection(text_2).init, key,
            jnp.zeros((1, text_2.max_position_embeddings), jnp.int32))
    return {k: v["params"] for k, v in trees.items()}


def save_model(model: DiffusionModel, out_dir: str | Path) -> Path:
    """Write `model` as a diffusers-format directory that StableDiffusionPipeline (SDXL:
    StableDiffusionXLPipeline) opens."""
    out = Path(out_dir)
    for comp in model.components:
        (out / comp).mkdir(parents=True, exist_ok=True)
        tokenizer = model.tokenizer_2 if comp == "text_encoder_2" else model.tokenizer
        config = model.raw_configs.get(comp) or _fresh_config(comp, getattr(model, comp),
                                                              tokenizer)
        _write_json(out / comp / "config.json", config)
        state = flax_to_torch(jax.tree.map(np.asarray, model.params[comp]))
        prefix = _PREFIX.get(comp, "")
        state = {(k if k.startswith("text_projection.") else prefix + k): v
                 for k, v in state.items()}
        safetensors.numpy.save_file(state, out / comp / f"{_WEIGHT_STEM[comp]}.safetensors")
    (out / "scheduler").mkdir(parents=True, exist_ok=True)
    _write_json(out / "scheduler" / "scheduler_config.json", model.scheduler_config)
    if model.tokenizer is not None:
        model.tokenizer.save_pretrained(out / "tokenizer")
    scheduler = ["diffusers", model.scheduler_config.get("_class_name", "DDIMScheduler")]
    if model.family == "sdxl":
        model.tokenizer_2.save_pretrained(out / "tokenizer_2")
        refiner = model.text_encoder is None  # diffusers' refiner is an Img2Img pipeline
        index = {"_class_name": "StableDiffusionXLImg2ImgPipeline" if refiner else
                 "StableDiffusionXLPipeline", "_diffusers_version": "0.42.1",
                 "feature_extractor": [None, None], "image_encoder": [None, None],
                 "force_zeros_for_empty_prompt": model.force_zeros_for_empty_prompt,
                 "scheduler": scheduler}
        if model.requires_aesthetics_score:
            index["requires_aesthetics_score"] = True
        index.update({c: list(_CLASS[c]) for c in (*SDXL_COMPONENTS, "tokenizer",
                                                   "tokenizer_2")})
        if refiner:
            index.update(text_encoder=[None, None], tokenizer=[None, None])
    else:
        index = {"_class_name": "StableDiffusionPipeline", "_diffusers_version": "0.42.1",
                 "feature_extractor": [None, None], "requires_safety_checker": False,
                 "safety_checker": [None, None], "scheduler": scheduler}
        index.update({c: list(_CLASS[c]) for c in (*COMPONENTS, "tokenizer")})
    _write_json(out / "model_index.json", index)
    return out


def _fresh_config(comp: str, config: Any, tokenizer: Any) -> dict[str, Any]:
    """config.json for a component jaxgen built itself (no original file to copy)."""
    library, cls = _CLASS[comp]
    out = {"_class_name": cls, **to_dict(config)}
    if comp in ("text_encoder", "text_encoder_2"):
        # transformers reads bos/pad ids from here; CLIP's defaults (49406, 1) would point
        # outside, or at the wrong token of, a small vocabulary.
        out = {"architectures": [cls], "model_type": "clip_text_model", **to_dict(config),
               "bos_token_id": tokenizer.bos_token_id, "pad_token_id": tokenizer.pad_token_id}
    elif comp == "vae":
        # diffusers builds one block per entry of these lists, whose defaults have ONE entry.
        n = len(config.block_out_channels)
        out.update(down_block_types=["DownEncoderBlock2D"] * n,
                   up_block_types=["UpDecoderBlock2D"] * n)
    return out


def _weight_files(folder: Path, stem: str, variant: str | None, allow_pickle: bool) -> list[Path]:
    if not folder.is_dir():
        raise ModelDirError(f"{folder}: component directory is missing")
    name = f"{stem}.{variant}" if variant else stem
    single, index = folder / f"{name}.safetensors", folder / f"{name}.safetensors.index.json"
    if single.is_file():
        return [single]
    if index.is_file():
        shards = sorted(set(_read_json(index)["weight_map"].values()))
        return [folder / s for s in shards]
    pickled = folder / f"{name}.bin"
    if pickled.is_file():
        if allow_pickle:
            return [pickled]
        raise ModelDirError(
            f"{pickled}: pickled PyTorch weights can run arbitrary code when loaded, so jaxgen "
            "refuses them; convert to safetensors, or pass allow_pickle=True "
            "(--allow-pickle) if you trust this file")
    present = sorted(p.name for p in folder.iterdir())
    hint = "" if variant else " (pass variant='fp16' if only fp16 weights are present)"
    raise ModelDirError(f"{folder}: no {name}.safetensors; found {present}{hint}")


def _read_tensors(path: Path) -> dict[str, np.ndarray]:
    if path.suffix == ".bin":
        import torch  # only on explicit opt-in to pickled weights

        state = torch.load(path, map_location="cpu", weights_only=True)
        return {k: v.float().numpy() for k, v in state.items()}
    try:
        return safetensors.numpy.load_file(path)
    except Exception as err:
        raise WeightsError(f"{path}: not a readable safetensors file ({err})") from err


def load_tokenizer(folder: Path) -> Any:
    """A model directory's tokenizer (its `tokenizer/` folder), without the weights."""
    from transformers import CLIPTokenizer

    if not folder.is_dir():
        raise ModelDirError(f"{folder}: tokenizer directory is missing")
    return CLIPTokenizer.from_pretrained(str(folder), local_files_only=True)


def _file_sha256(path: Path) -> bytes:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            h.update(chunk)
    return h.digest()


def _check_scheduler(raw: dict[str, Any], path: Path) -> None:
    """Read the scheduler config now, so its errors name the file (not the first request)."""
    from jaxgen.schedulers import SchedulerConfig

    try:
        SchedulerConfig.from_dict(raw)
    except (TypeError, ValueError) as err:
        raise ModelDirError(f"{path}: {err}") from err


def _read_json(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise ModelDirError(f"{path}: file is missing")
    try:
        value = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelDirError(f"{path}: not valid JSON ({err})") from err
    if not isinstance(value, dict):
        raise ModelDirError(f"{path}: must be a JSON object, not {type(value).__name__}")
    return value


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
