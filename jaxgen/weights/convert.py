"""PyTorch state dicts (diffusers/transformers names) <-> Flax parameter trees.

The rule is mechanical because jaxgen's modules mirror the PyTorch attribute paths:
`down_blocks.0.resnets.1.conv1.weight` <-> ('down_blocks_0', 'resnets_1', 'conv1', 'kernel').
Conv kernels go OIHW <-> HWIO, linear kernels are transposed, norm weights are `scale`.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

# PyTorch ModuleLists / Sequentials whose index becomes a `_N` suffix in Flax names.
LIST_CONTAINERS = ("down_blocks", "up_blocks", "resnets", "attentions", "downsamplers",
                   "upsamplers", "transformer_blocks", "to_out", "net", "layers")
_LIST_NAME = re.compile(rf"^({'|'.join(LIST_CONTAINERS)})_(\d+)$")

# Buffers some checkpoints carry that are not parameters.
_BUFFERS = re.compile(r"(^|\.)position_ids$")
# Names of the VAE attention before diffusers renamed them (still found in older checkpoints).
_LEGACY = {".query.": ".to_q.", ".key.": ".to_k.", ".value.": ".to_v.",
           ".proj_attn.": ".to_out.0."}


class WeightsError(ValueError):
    """A checkpoint does not fit the model: names the file and the tensor."""


def torch_to_flax(state: dict[str, np.ndarray], target: Any, source: str) -> dict:
    """Map a PyTorch-named state dict onto the shapes of `target` (a param tree of arrays
    or ShapeDtypeStructs). Every tensor must find a place and every parameter a tensor."""
    flat_target = flatten_dict(target)
    out: dict[tuple[str, ...], np.ndarray] = {}
    for key, tensor in state.items():
        if _BUFFERS.search(key):
            continue
        path, value = _convert_tensor(_modern_name(key), np.asarray(tensor), flat_target)
        if path is None:
            raise WeightsError(f"{source}: tensor {key!r} has no place in the jaxgen model "
                               "(unknown key; is this the right config.json?)")
        want = tuple(flat_target[path].shape)
        if value.shape != want:
            raise WeightsError(f"{source}: tensor {key!r} has shape {tuple(tensor.shape)} but the "
                               f"model built from config.json expects {_torch_shape(path, want)}")
        out[path] = value
    missing = [flax_to_torch_name(p) for p in flat_target if p not in out]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        shown = ", ".join(missing[:5]) + more
        raise WeightsError(f"{source}: missing tensors {shown}")
    return unflatten_dict(out)


def flax_to_torch(params: Any) -> dict[str, np.ndarray]:
    """The inverse of torch_to_flax: a state dict diffusers/transformers load as is."""
    state = {}
    for path, value in flatten_dict(params).items():
        value = np.asarray(value)
        if path[-1] == "kernel":
            value = value.transpose(3, 2, 0, 1) if value.ndim == 4 else value.T
        state[flax_to_torch_name(path)] = np.ascontiguousarray(value)
    return state


def flax_to_torch_name(path: tuple[str, ...]) -> str:
    leaf = "bias" if path[-1] == "bias" else "weight"
    parts = []
    for name in path[:-1]:
        m = _LIST_NAME.match(name)
        parts.append(f"{m.group(1)}.{m.group(2)}" if m else name)
    return ".".join(parts + [leaf])


def _modern_name(key: str) -> str:
    key = key.removeprefix("text_model.")  # transformers v4 checkpoints
    for old, new in _LEGACY.items():
        if "attentions" in key and old in key:
            return key.replace(old, new)
    return key


def _convert_tensor(key: str, tensor: np.ndarray, flat_target: dict):
    names: list[str] = []
    for part in key.split("."):
        if part.isdigit() and names:
            names[-1] = f"{names[-1]}_{part}"
        else:
            names.append(part)
    base, leaf = tuple(names[:-1]), names[-1]
    if leaf == "bias" and base + ("bias",) in flat_target:
        return base + ("bias",), tensor
    if leaf != "weight":
        return None, None
    if base + ("kernel",) in flat_target:
        want_ndim = len(flat_target[base + ("kernel",)].shape)
        if tensor.ndim == 4 and want_ndim == 2:  # legacy 1x1-conv attention projections
            tensor = tensor[:, :, 0, 0]
        kernel = tensor.transpose(2, 3, 1, 0) if tensor.ndim == 4 else tensor.T
        return base + ("kernel",), kernel
    for leaf_name in ("scale", "embedding"):
        if base + (leaf_name,) in flat_target:
            return base + (leaf_name,), tensor
    return None, None


def _torch_shape(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[int, ...]:
    if path[-1] == "kernel":
        return (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape[::-1]
    return shape
