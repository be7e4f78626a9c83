"""Stage 0: the text encoder pretrained to state the scene a caption asks for.

Stable Diffusion's UNet learns on a text encoder that was pretrained (CLIP) and stays frozen.
Trained jointly from scratch on the shapes data, the text encoder gets almost no gradient: the
UNet shuts the caption out early and reads the noisy latent instead, so ShapesEval's colour
accuracy stays near chance far into stage 2 (docs/shapes-lab-notebook.md, "Why the caption is
learned late"). This stage gives the encoder its own task first: from the EOS state (the
pooled output) predict every attribute the caption asks for, with a two-object scene stated
left-to-right or top-to-bottom. That last part is binding: "a red circle right of a blue
square" must put blue in the first slot, which needs the relation word and the word order
together, and a causal encoder can only do it at the tokens after the relation (the EOS).

Targets come from the caption parser (`jaxgen.shapes.parse_caption`), so they are what the
words say, and an attribute the caption leaves out (the background in some templates) asks
nothing. Empty captions (caption dropout) ask nothing at all.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from jaxgen.models import CLIPTextModel
from jaxgen.models.init import init_params
from jaxgen.shapes import COLOURS, POSITIONS, SHAPES, SIZES, parse_caption
from jaxgen.shapes.split import ShapesData
from jaxgen.train.data import scene_seeds, training_caption
from jaxgen.train.vae import LossFn
from jaxgen.weights.tokenizer import tokenize

# The attributes the EOS state must predict, and how many classes each has. "first" is the
# only object of a one-object scene, or the left/top one of a pair. "layout": one of the nine
# cells for one object; a row (9) or a column (10) for a pair.
SCENE_FIELDS: dict[str, int] = {
    "objects": 2, "background": len(COLOURS), "layout": len(POSITIONS) + 2,
    "first_colour": len(COLOURS), "first_shape": len(SHAPES), "first_size": len(SIZES),
    "second_colour": len(COLOURS), "second_shape": len(SHAPES), "second_size": len(SIZES),
}  # fmt: skip
NOT_ASKED = -1


def scene_targets(caption: str) -> np.ndarray:
    """int32 [len(SCENE_FIELDS)]: the class of each field the caption asks, else NOT_ASKED."""
    targets = dict.fromkeys(SCENE_FIELDS, NOT_ASKED)
    if caption:
        spec = parse_caption(caption)
        objects = list(spec.objects)
        if spec.relation in ("right of", "below"):
            objects.reverse()  # state the pair left-to-right / top-to-bottom
        targets["objects"] = len(objects) - 1
        if spec.background is not None:
            targets["background"] = COLOURS.index(spec.background)
        if len(objects) == 1:
            if objects[0].position is not None:
                targets["layout"] = POSITIONS.index(objects[0].position)
        else:
            targets["layout"] = len(POSITIONS) + (spec.relation in ("above", "below"))
        for slot, obj in zip(("first", "second"), objects, strict=False):
            for name, value, values in (("colour", obj.colour, COLOURS),
                                        ("shape", obj.shape, SHAPES), ("size", obj.size, SIZES)):
                if value is not None:
                    targets[f"{slot}_{name}"] = values.index(value)
    return np.array([targets[f] for f in SCENE_FIELDS], np.int32)


def text_batch(data: ShapesData, step: int, batch_size: int, tokenizer: Any) -> dict:
    """Stage 0's batch of `step`: the training captions of stage 2's scene draw, no images."""
    captions = [training_caption(data, int(s)) for s in scene_seeds(data, step, batch_size)]
    return {"input_ids": tokenize(tokenizer, captions),
            "targets": np.stack([scene_targets(c) for c in captions])}


class SceneHead(nn.Module):
    """One linear readout of the pooled text state per field (used in training only)."""

    @nn.compact
    def __call__(self, pooled: jax.Array) -> list[jax.Array]:
        logits = nn.Dense(sum(SCENE_FIELDS.values()), name="readout")(pooled)
        return jnp.split(logits, np.cumsum(list(SCENE_FIELDS.values()))[:-1], axis=-1)


def init_text_stage(text: CLIPTextModel, seed: int) -> dict:
    """Fresh {text_encoder, scene_head} params."""
    ids = jax.ShapeDtypeStruct((1, text.config.max_position_embeddings), jnp.int32)
    pooled = jax.ShapeDtypeStruct((1, text.config.hidden_size), jnp.float32)
    return {"text_encoder": init_params(text, ids, seed=seed),
            "scene_head": init_params(SceneHead(), pooled, seed=seed + 1)}


def scene_loss_fn(text: CLIPTextModel) -> LossFn:
    """loss(params, frozen, batch, key): mean over fields of the cross-entropy on asked rows.

    Metric: `accuracy`, the fraction of asked fields predicted right (the loop logs the loss).
    """
    head = SceneHead()

    def loss(params, frozen, batch, key):
        del frozen, key  # nothing frozen, nothing random
        _, pooled = text.apply({"params": params["text_encoder"]}, batch["input_ids"])
        logits = head.apply({"params": params["scene_head"]}, pooled.astype(jnp.float32))
        total, right, asked_total = 0.0, 0.0, 0.0
        for i, field_logits in enumerate(logits):
            y = batch["targets"][:, i]
            asked = (y != NOT_ASKED).astype(jnp.float32)
            ce = optax.softmax_cross_entropy_with_integer_labels(field_logits, jnp.maximum(y, 0))
            total += (ce * asked).sum() / jnp.maximum(asked.sum(), 1.0)
            right += ((jnp.argmax(field_logits, -1) == y) * asked).sum()
            asked_total += asked.sum()
        return total / len(logits), {"accuracy": right / jnp.maximum(asked_total, 1.0)}

    return loss
