"""Frechet distance (FD) in the feature space of a classifier trained here on rendered scenes.

Inception weights cannot be downloaded, so this is not FID: the features are the penultimate
layer of a small CNN that learns every scene attribute from renders. Read an FD against its
floor, the FD between two independent sets of renders of the same size.
"""

from __future__ import annotations

import dataclasses
from functools import partial

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.models.init import init_params
from jaxgen.shapes import (
    COLOURS,
    IMAGE_SIZE,
    POSITIONS,
    SHAPES,
    SIZES,
    Scene,
    canonical,
    render,
    sample_scene,
)
from jaxgen.shapes.split import TRAIN_SEED_LIMIT

FD_SEED_START = 3 * TRAIN_SEED_LIMIT  # classifier scenes: neither training nor evaluation ones
# One head per attribute; object slots take an extra "absent" class for one-object scenes.
_OBJECT_HEADS = (("shape", SHAPES), ("colour", COLOURS), ("size", SIZES),
                 ("position", POSITIONS))
HEADS: tuple[tuple[str, int], ...] = (
    ("background", len(COLOURS)), ("count", 2),
    *((f"{name}_{j}", len(values) + 1) for j in range(2) for name, values in _OBJECT_HEADS))


def scene_labels(scene: Scene) -> np.ndarray:
    """int32 [len(HEADS)] class indices of a scene (objects in canonical order)."""
    scene = canonical(scene)
    labels = [COLOURS.index(scene.background), len(scene.objects) - 1]
    for j in range(2):
        obj = scene.objects[j] if j < len(scene.objects) else None
        for name, values in _OBJECT_HEADS:
            labels.append(len(values) if obj is None else values.index(getattr(obj, name)))
    return np.array(labels, np.int32)


class AttributeNet(nn.Module):
    """A small CNN: strided convs to 8x8, a dense feature layer, one linear head per attribute.

    Flattening (not pooling) keeps where things are, which position and relation need.
    """

    features: int = 128

    @nn.compact
    def __call__(self, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        x = images
        for width, stride in ((16, 2), (16, 1), (32, 2), (64, 2)):
            x = nn.relu(nn.Conv(width, (3, 3), strides=(stride, stride))(x))
        feats = nn.relu(nn.Dense(self.features)(x.reshape(x.shape[0], -1)))
        logits = nn.Dense(sum(n for _, n in HEADS))(feats)
        return feats, logits


def _split_heads(logits: jax.Array) -> list[jax.Array]:
    bounds = np.cumsum([n for _, n in HEADS])[:-1]
    return jnp.split(logits, bounds, axis=-1)


@dataclasses.dataclass(frozen=True)
class FeatureNet:
    """A trained AttributeNet: `features(images)` for FD, `accuracy` on held-out renders."""

    module: AttributeNet
    params: dict
    accuracy: float

    def features(self, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
        """float64 [N, features] of uint8 [N, 64, 64, 3] images."""
        out = [np.asarray(_features(self.module, self.params, _to_unit(images[i:i + batch_size])))
               for i in range(0, len(images), batch_size)]
        return np.concatenate(out).astype(np.float64)


@partial(jax.jit, static_argnums=0)
def _features(module: AttributeNet, params: dict, images: jax.Array) -> jax.Array:
    return module.apply({"params": params}, images)[0]


def _to_unit(images: np.ndarray) -> np.ndarray:
    return np.asarray(images, np.float32) / 127.5 - 1.0


def rendered(seeds: np.ndarray, num_objects: list[int | None] | None = None) -> np.ndarray:
    """uint8 renders of the scenes of `seeds` (with a forced object count where given)."""
    counts = num_objects or [None] * len(seeds)
    return np.stack([render(sample_scene(int(s), k)) for s, k in zip(seeds, counts, strict=True)])


def train_feature_net(steps: int = 400, batch_size: int = 64, learning_rate: float = 2e-3,
                      seed: int = 0, features: int = 128) -> FeatureNet:
    """Train the attribute classifier on fresh renders (each step its own scenes)."""
    module = AttributeNet(features)
    shape = jax.ShapeDtypeStruct((1, IMAGE_SIZE, IMAGE_SIZE, 3), jnp.float32)
    params = jax.tree.map(jnp.asarray, init_params(module, shape, seed=seed))
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps, alpha=0.05))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, images, labels):
        def loss_fn(p):
            _, logits = module.apply({"params": p}, images)
            return sum(optax.softmax_cross_entropy_with_integer_labels(lg, labels[:, h]).mean()
                       for h, lg in enumerate(_split_heads(logits)))

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    def batch(start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
        seeds = np.arange(start, start + n)
        labels = np.stack([scene_labels(sample_scene(int(s))) for s in seeds])
        return _to_unit(rendered(seeds)), labels

    base = FD_SEED_START + seed * 10_000_000
    for s in range(steps):
        params, opt_state, _ = step(params, opt_state, *batch(base + s * batch_size, batch_size))
    images, labels = batch(base - 512, 512)  # held out: below every training seed
    _, logits = module.apply({"params": params}, images)
    predicted = np.stack([np.asarray(lg.argmax(-1)) for lg in _split_heads(logits)], axis=1)
    return FeatureNet(module, params, float((predicted == labels).mean()))


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two [N, D] feature sets."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    # Tr((S_a S_b)^1/2) = Tr((R S_b R)^1/2) with R = S_a^1/2: a symmetric PSD form, stable for
    # the singular covariances that dead ReLU features give (where scipy's sqrtm warns).
    root_a = _psd_sqrt(cov_a)
    inner = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_root = np.sqrt(np.clip(inner, 0.0, None)).sum()
    trace = np.trace(cov_a) + np.trace(cov_b) - 2 * trace_root
    return float(np.sum((mu_a - mu_b) ** 2) + trace)


def _psd_sqrt(m: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(m)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


@dataclasses.dataclass(frozen=True)
class FDReport:
    fd: float  # generated vs rendered
    floor: float  # rendered vs independently rendered, same count
    n: int
    classifier_accuracy: float


def shapes_fd(net: FeatureNet, generated: np.ndarray, reference: np.ndarray,
              second_reference: np.ndarray) -> FDReport:
    """FD of `generated` to `reference` renders, and the floor: `second_reference` to them."""
    ref = net.features(reference)
    return FDReport(fd=frechet_distance(net.features(generated), ref),
                    floor=frechet_distance(net.features(second_reference), ref),
                    n=len(generated), classifier_accuracy=net.accuracy)
