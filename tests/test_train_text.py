"""Stage 0: caption -> scene targets (pairs stated left to right); the text stage learns them."""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest
from transformers import CLIPTokenizer

from jaxgen.models import CLIPTextConfig
from jaxgen.shapes import COLOURS, POSITIONS, SHAPES, SIZES
from jaxgen.shapes.split import ShapesData
from jaxgen.train.config import TrainConfig
from jaxgen.train.data import write_shapes_tokenizer
from jaxgen.train.loop import data_mesh
from jaxgen.train.stages import UNetStage, run_text_stage
from jaxgen.train.text import NOT_ASKED, SCENE_FIELDS, scene_targets, text_batch

FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}


def _named(targets: np.ndarray) -> dict[str, int]:
    return dict(zip(SCENE_FIELDS, targets.tolist(), strict=True))


def test_a_pair_is_stated_left_to_right_whichever_object_the_caption_names_first():
    right_of = _named(scene_targets("a big red circle right of a small blue square, green "
                                    "background"))
    left_of = _named(scene_targets("a small blue square to the left of a big red circle"))
    for t in (right_of, left_of):
        assert t["objects"] == 1 and t["layout"] == len(POSITIONS)  # a pair in one row
        assert (t["first_colour"], t["first_shape"], t["first_size"]) == (
            COLOURS.index("blue"), SHAPES.index("square"), SIZES.index("small"))
        assert (t["second_colour"], t["second_shape"], t["second_size"]) == (
            COLOURS.index("red"), SHAPES.index("circle"), SIZES.index("large"))
    assert right_of["background"] == COLOURS.index("green")
    assert left_of["background"] == NOT_ASKED  # this caption does not say
    below = _named(scene_targets("a red circle below a blue square"))
    assert below["layout"] == len(POSITIONS) + 1  # a column
    assert below["first_colour"] == COLOURS.index("blue")


def test_one_object_asks_its_cell_and_no_second_object_and_an_empty_caption_asks_nothing():
    t = _named(scene_targets("a little yellow triangle in the top left corner"))
    assert t["objects"] == 0 and t["layout"] == POSITIONS.index("top left")
    assert t["first_colour"] == COLOURS.index("yellow")
    assert {t[k] for k in ("second_colour", "second_shape", "second_size", "background")} == {
        NOT_ASKED}
    assert set(scene_targets("").tolist()) == {NOT_ASKED}


@pytest.fixture(scope="module")
def tokenizer(tmp_path_factory) -> CLIPTokenizer:
    return CLIPTokenizer.from_pretrained(str(write_shapes_tokenizer(
        tmp_path_factory.mktemp("tokenizer"))))


def test_text_batches_follow_the_step_and_hold_the_training_captions(tokenizer):
    a, b = (text_batch(ShapesData(), 7, 16, tokenizer) for _ in range(2))
    assert np.array_equal(a["input_ids"], b["input_ids"])
    assert np.array_equal(a["targets"], b["targets"])
    assert a["targets"].shape == (16, len(SCENE_FIELDS))
    assert not np.array_equal(a["targets"], text_batch(ShapesData(), 8, 16, tokenizer)["targets"])


def test_text_stage_learns_to_state_the_scene(tokenizer, tmp_path):
    text = CLIPTextConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64,
                          num_hidden_layers=2, num_attention_heads=2,
                          max_position_embeddings=tokenizer.model_max_length,
                          eos_token_id=tokenizer.eos_token_id, hidden_act="gelu")
    stage = UNetStage(unet=None, text_encoder=text, schedule=None, data=ShapesData(),
                      train=None)
    cfg = TrainConfig(steps=150, batch_size=64, learning_rate=1e-2, warmup_steps=10,
                      checkpoint_every=150, log_every=10, ema_decay=0.9)
    result = run_text_stage(stage, cfg, tokenizer, tmp_path, mesh=data_mesh(jax.devices()[:2]),
                            compiler_options=FAST_COMPILE, progress=False)
    assert result.finished and set(result.params) == {"text_encoder", "scene_head"}
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    first, last = logged[0], logged[-1]
    # Chance is ~0.3 averaged over the fields; most fields are single words, learned fast.
    assert last["loss"] < 0.5 * first["loss"], (first, last)
    assert last["accuracy"] > 0.6, last
