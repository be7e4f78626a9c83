"""SDXL's micro-conditioning as row fields: original_size, crops_coords_top_left, target_size
and their negative_* versions read from a manifest row, given to the UNet as per-item time ids
(items of different micro-conditioning share one compiled program) and carried into records;
the images match StableDiffusionXLPipeline given the same values, within 2/255."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.plan import PlannedRow
from jaxgen.dataset.records import ImageRecord
from jaxgen.dataset.rows import row_to_request
from jaxgen.engine import sdxl
from jaxgen.engine.generator import Generator
from jaxgen.engine.sharding import make_mesh
from jaxgen.requests import GenerationRequest, RequestError, stable_seed
from jaxgen.weights.model_dir import load_model

SIDE, STEPS = 16, 3
CONFIG = JobConfig(manifest="m.jsonl", output="out")


def one_device_generator(model_dir, batch_size=1):
    return Generator(load_model(model_dir), batch_size=batch_size, compilation_cache=False,
                     mesh=make_mesh(devices=jax.local_devices()[:1]))


def test_a_manifest_row_gives_pairs_as_json_arrays_or_csv_cells():
    row = {"prompt": "a", "original_size": [1024, 768], "crops_coords_top_left": [0, 32.0]}
    request = row_to_request(row, CONFIG)
    assert request.original_size == (1024, 768) and request.crops_coords_top_left == (0, 32)
    cell = row_to_request({"prompt": "a", "negative_target_size": "[512, 512]"}, CONFIG,
                          text_values=True)
    assert cell.negative_target_size == (512, 512)


@pytest.mark.parametrize("field, value", [("original_size", [0, 8]), ("target_size", [8]),
                                          ("crops_coords_top_left", [-1, 0]),
                                          ("negative_original_size", "1024x1024")])
def test_a_pair_that_is_not_two_integers_in_range_is_rejected_naming_the_field(field, value):
    with pytest.raises(RequestError, match=f"^{field} .*must be a pair"):
        row_to_request({"prompt": "a", field: value}, CONFIG)


def test_unset_micro_conditioning_is_diffusers_defaults_and_negatives_follow_positives():
    plain = GenerationRequest("a", height=16, width=24)
    cond, uncond = sdxl.time_ids(plain)
    assert cond.tolist() == uncond.tolist() == [16, 24, 0, 0, 16, 24]
    cropped = GenerationRequest("a", height=16, width=24, original_size=(64, 32),
                                crops_coords_top_left=(4, 8), negative_target_size=(8, 8))
    cond, uncond = sdxl.time_ids(cropped)
    assert cond.tolist() == [64, 32, 4, 8, 16, 24]
    assert uncond.tolist() == [64, 32, 4, 8, 8, 8]


def test_a_request_without_micro_conditioning_keeps_its_seed():
    plain = GenerationRequest("a red circle")
    assert stable_seed(0, None, plain) == stable_seed(0, None, GenerationRequest("a red circle"))
    assert stable_seed(0, None, plain) != stable_seed(
        0, None, GenerationRequest("a red circle", original_size=(1024, 1024)))


def test_an_sd1_model_rejects_micro_conditioning_naming_the_field(tiny_sd1_dir):
    with pytest.raises(RequestError, match="^crops_coords_top_left .*'tiny-sd1' is not an "
                                           "SDXL model"):
        one_device_generator(tiny_sd1_dir).prepare(
            GenerationRequest("a", height=16, width=16, crops_coords_top_left=(0, 8)))


def test_records_carry_the_pairs_the_row_gave_and_no_others():
    request = GenerationRequest("a", seed=1, original_size=(64, 32))
    record = ImageRecord.build(PlannedRow("k", 0, 0, "m", 1, request), 0, "m", "h").to_json()
    assert record["original_size"] == [64, 32]
    assert "target_size" not in record and "negative_original_size" not in record
    plain = ImageRecord.build(PlannedRow("k", 0, 0, "m", 1, GenerationRequest("a", seed=1)),
                              0, "m", "h").to_json()
    assert not {"original_size", "crops_coords_top_left"} & set(plain)


def test_micro_conditioning_matches_stable_diffusion_xl_pipeline_in_one_program(tiny_sdxl_dir):
    """Defaults, non-default sizes with a crop, and negative sizes of their own (with a
    negative prompt) in one batch: one compile; each image within 2/255 of diffusers'."""
    from jaxgen.eval.diffusers_peer import DiffusersPeer

    base = dict(prompt="a red circle", seed=5, steps=STEPS, sampler="euler", height=SIDE,
                width=SIDE)
    requests = [GenerationRequest(**base),
                GenerationRequest(**base, original_size=(64, 48), crops_coords_top_left=(8, 4),
                                  target_size=(32, 32)),
                GenerationRequest(**{**base, "prompt": "a blue square"}, negative_prompt="red",
                                  original_size=(24, 40), negative_original_size=(512, 512),
                                  negative_crops_coords_top_left=(16, 0),
                                  negative_target_size=(8, 24))]
    generator = one_device_generator(tiny_sdxl_dir, batch_size=4)
    images = list(generator.generate(requests))
    assert generator.compiled_programs == 1
    assert np.abs(images[0].image.astype(int) - images[1].image).max() > 0  # time ids reach it
    peer = DiffusersPeer(tiny_sdxl_dir)
    for image in images:
        error = int(np.abs(image.image.astype(int) - peer.images(image.request)[0]).max())
        print(f"micro-conditioning {image.request.original_size}: max {error}/255")
        assert error <= 2
        assert image.image.std() > 0


def test_hf_datasets_reads_the_pairs_back_from_parquet(tmp_path):
    """A pair is a list<int64> column, null where the row gave none."""
    import datasets

    from jaxgen.beam.pipeline import run_pipeline
    from tests.fake_generator import FakeSpec

    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"prompt": "a", "seed": 1, "original_size": [64, 32]}\n'
                        '{"prompt": "b", "seed": 2}\n')
    config = JobConfig(manifest=str(manifest), output=str(tmp_path / "out"),
                       output_format="parquet",
                       defaults={"height": 16, "width": 16, "steps": 2})
    run_pipeline(config, FakeSpec())
    files = [str(p) for p in sorted((tmp_path / "out").glob("*.parquet"))]
    ds = datasets.load_dataset("parquet", data_files={"train": files}, split="train",
                               cache_dir=str(tmp_path / "hf"))
    assert ds["original_size"] == [[64, 32], None]


def test_negative_micro_conditioning_of_its_own_keeps_guidance_with_the_same_text():
    """Prompt equal to negative prompt runs one unguided branch, unless the negative branch's
    time ids differ."""
    from jaxgen.engine.grouping import SamplingSpec

    same = dict(prompt="a", negative_prompt="a", height=16, width=16)
    assert not SamplingSpec.of(GenerationRequest(**same)).guided
    assert not SamplingSpec.of(GenerationRequest(**same, original_size=(8, 8),
                                                 negative_original_size=(8, 8))).guided
    assert SamplingSpec.of(GenerationRequest(**same, negative_target_size=(8, 8))).guided
