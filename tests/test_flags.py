"""Images are checked on the worker before they are written: an image from non-finite latents,
or a constant or near-constant one, is rejected with its reason (or, with keep_flagged,
written with the flag in its record) and counted in the shard stats and the summary."""

from __future__ import annotations

import dataclasses
import json
import shutil
import tarfile

import numpy as np
import pyarrow.parquet as pq
import pytest
import safetensors.numpy

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.cli import main
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.flags import DEGENERATE_SPAN, FLAG_KEY, check_image
from jaxgen.engine.types import GeneratedImage
from tests.fake_generator import FakeGenerator, FakeSpec, draw


def _image(value: int = 90, size: int = 32) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_a_constant_image_is_degenerate():
    flag = check_image(_image())
    assert flag is not None and flag.check == "degenerate"
    assert "spans at most 0 of 255 levels" in flag.reason


def test_near_constant_means_every_channel_spans_at_most_the_threshold():
    image = _image()
    image[0, 0] = 90 + DEGENERATE_SPAN  # a one-level dither pattern stays degenerate
    assert check_image(image).check == "degenerate"
    image[0, 0, 2] = 90 + DEGENERATE_SPAN + 1  # one channel with more is an image
    assert check_image(image) is None


def test_one_colour_with_a_few_distinct_pixels_passes():
    # What the tests' fake generator draws: a failed model does not paint single pixels.
    image = _image(size=512)
    image[0, :8] = [[200, 10, 30]] * 8
    assert check_image(image) is None


def test_non_finite_latents_flag_even_a_good_looking_image():
    image = draw(_request(), 0)
    assert check_image(image) is None
    assert check_image(image, finite=False).check == "non-finite"


def _request():
    from jaxgen.requests import GenerationRequest

    return GenerationRequest(prompt="x", seed=1, height=16, width=16)


# A generator whose images for prompts containing "blank" are constant, and whose images
# for prompts containing "nan" come from (reported) non-finite latents.
@dataclasses.dataclass(frozen=True)
class FlaggingSpec(FakeSpec):
    def build(self) -> FlaggingGenerator:
        return FlaggingGenerator(self)


class FlaggingGenerator(FakeGenerator):
    def generate(self, requests, **kwargs):
        for result in super().generate(requests, **kwargs):
            prompt = result.request.prompt
            if "blank" in prompt and result.index == len(prompt.split()) % 2:
                result = dataclasses.replace(result, image=np.zeros_like(result.image))
            if "nan" in prompt:
                result = FiniteFlagged(result.request, result.index, result.image)
            yield result


@dataclasses.dataclass(frozen=True)
class FiniteFlagged(GeneratedImage):
    finite: bool = False  # what the engine reports for NaN latents


ROWS = [
    {"prompt": "a red circle"},
    {"prompt": "a blank one", "num_images": 2},  # its image 1 is constant: the row goes
    {"prompt": "a nan one"},
    {"prompt": "a blue square", "num_images": 2},
]


def _run(tmp_path, **kw):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / "ds"
    config = JobConfig(manifest=str(manifest), output=str(out), shard_size=10,
                       defaults={"height": 16, "width": 16, "steps": 2}, **kw)
    return out, run_pipeline(config, FlaggingSpec())


def test_a_row_with_a_flagged_image_is_rejected_whole_with_its_reason(tmp_path):
    out, summary = _run(tmp_path)
    rejects = [json.loads(line) for line in (out / "_rejects" / "00000.jsonl").open()]
    assert [(r["key"], r["field"], r["stage"]) for r in rejects] == [
        ("000000001", "image", "check"), ("000000002", "image", "check")]
    assert rejects[0]["reason"].startswith("image 1 degenerate: a constant or near-constant")
    assert rejects[1]["reason"].startswith("image 0 non-finite: the final latents hold NaN")
    assert json.loads(rejects[0]["row"])["prompt"] == "a blank one"
    with tarfile.open(out / "00000.tar") as tar:
        names = sorted(n for n in tar.getnames() if n.endswith(".png"))
    assert names == ["000000000.png", "000000003_0.png", "000000003_1.png"]
    audit = pq.read_table(out / "00000.parquet").to_pylist()
    assert [a["status"] for a in audit] == ["success", "rejected", "rejected", "success"]
    counts = summary["counts"]
    assert (counts["rows_read"], counts["rows_generated"], counts["rows_rejected"]) == (4, 2, 2)
    assert counts["images"] == 3 and counts["images_flagged"] == 2
    assert counts["flagged_by_check"] == {"degenerate": 1, "non-finite": 1}
    stats = json.loads((out / "00000_stats.json").read_text())
    assert stats["images_flagged"] == 2 and stats["failures_by_field"] == {"image": 2}


def test_keep_flagged_writes_the_images_with_the_flag_in_their_records(tmp_path):
    out, summary = _run(tmp_path, keep_flagged=True)
    assert not (out / "_rejects").exists()
    with tarfile.open(out / "00000.tar") as tar:
        records = {m.name[:-5]: json.loads(tar.extractfile(m).read())
                   for m in tar.getmembers() if m.name.endswith(".json")}
    assert len(records) == 6
    flags = {k: json.loads(r["metadata"]).get(FLAG_KEY) for k, r in records.items()}
    assert flags["000000001_1"]["check"] == "degenerate"
    assert flags["000000002"]["check"] == "non-finite"
    assert flags["000000001_0"] is None and flags["000000000"] is None
    counts = summary["counts"]
    assert (counts["rows_generated"], counts["rows_rejected"], counts["images"]) == (4, 0, 6)
    assert counts["images_flagged"] == 2


@pytest.fixture(scope="module")
def nan_model(tiny_sd1_dir, tmp_path_factory):
    """The tiny SD1 model with every UNet weight NaN."""
    path = tmp_path_factory.mktemp("nan") / "nan-model"
    shutil.copytree(tiny_sd1_dir, path)
    weights = path / "unet" / "diffusion_pytorch_model.safetensors"
    state = safetensors.numpy.load_file(weights)
    safetensors.numpy.save_file({k: np.full_like(v, np.nan) for k, v in state.items()}, weights)
    return path


def _generate(model, tmp_path, *flags):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text('{"prompt": "a red circle"}\n{"prompt": "a blue square"}\n')
    out = tmp_path / "ds"
    status = main(["generate", "--manifest", str(manifest), "--out", str(out), "--model",
                   str(model), "--steps", "2", "--no-progress", *flags])
    return status, out


def test_a_nan_model_has_every_row_rejected_and_exits_4(nan_model, tmp_path):
    status, out = _generate(nan_model, tmp_path)
    assert status == 4  # every row rejected: nothing generated
    rejects = [json.loads(line) for line in (out / "_rejects" / "00000.jsonl").open()]
    assert len(rejects) == 2
    # "non-finite" where the engine reports it; its all-NaN images are one colour anyway.
    assert all(r["field"] == "image" and ("non-finite" in r["reason"] or "degenerate" in
                                          r["reason"]) for r in rejects)
    assert json.loads((out / "_dataset.json").read_text())["counts"]["images_flagged"] == 2


def test_a_nan_model_with_keep_flagged_writes_flagged_images_and_exits_0(nan_model, tmp_path):
    status, out = _generate(nan_model, tmp_path, "--keep-flagged")
    assert status == 0
    with tarfile.open(out / "00000.tar") as tar:
        records = [json.loads(tar.extractfile(m).read())
                   for m in tar.getmembers() if m.name.endswith(".json")]
    assert len(records) == 2 and all(FLAG_KEY in json.loads(r["metadata"]) for r in records)


def test_the_tiny_models_images_are_far_from_degenerate(tiny_sd1_dir, tiny_sd2_dir, tmp_path):
    from jaxgen.engine.generator import Generator

    for model in (tiny_sd1_dir, tiny_sd2_dir):
        gen = Generator.from_pretrained(model, batch_size=8)
        requests = [dataclasses.replace(_request(), seed=s, steps=2) for s in range(8)]
        spans = [int(np.ptp(r.image.reshape(-1, 3), axis=0).max())
                 for r in gen.generate(requests)]
        assert min(spans) > 4 * DEGENERATE_SPAN, spans
