"""The shipped default model: a small diffusers directory that draws what the quickstart asks."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
from PIL import Image

from jaxgen.cli import main
from jaxgen.default_model import PACKAGED, RECOMMENDED, default_model_path
from jaxgen.shapes import analyse, parse_caption, score
from jaxgen.weights.model_dir import load_model

ROOT = Path(__file__).resolve().parents[1]


def test_default_model_is_packaged_small_and_opens_in_jaxgen_and_diffusers():
    from diffusers import StableDiffusionPipeline

    assert default_model_path() == PACKAGED
    size = sum(f.stat().st_size for f in PACKAGED.rglob("*") if f.is_file())
    assert size <= 25 * 2**20, f"default model is {size / 2**20:.1f} MiB"
    model = load_model(PACKAGED)
    assert model.native_size == 64
    pipe = StableDiffusionPipeline.from_pretrained(PACKAGED, safety_checker=None,
                                                   requires_safety_checker=False)
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"


def test_quickstart_job_draws_the_prompts_it_is_given(tmp_path):
    """The README's main job on the default model; every image is read back and scored."""
    out = tmp_path / "quickstart"
    assert main(["generate", "--manifest", str(ROOT / "configs/examples/prompts.jsonl"),
                 "--out", str(out), "--no-progress"]) == 0
    results = []
    with tarfile.open(out / "00000.tar") as tar:
        members = {m.name: m for m in tar.getmembers()}
        for name in sorted(n for n in members if n.endswith(".json")):
            record = json.load(tar.extractfile(members[name]))
            # the model's recommended settings, except where the row sets its own
            assert record["steps"] == RECOMMENDED["steps"]
            assert record["guidance"] in (RECOMMENDED["guidance"], 3.0)
            stem = name.removesuffix(".json")
            image = np.asarray(Image.open(tar.extractfile(members[stem + ".png"])))
            results.append(score(parse_caption(record["prompt"]), analyse(image)))
    assert len(results) == 6  # 5 rows, one with num_images 2; the bad-height row is rejected
    # ShapesEval measures 100% of backgrounds in trained wordings right (a random model: ~10%)
    # but joint accuracy 88% (98% one-object, 77% two-object at the recommended guidance;
    # docs/default-model.md), so only the background is asserted per image here.
    backgrounds = [r["background"] for r in results if r["background"] is not None]
    assert len(backgrounds) == 6 and np.mean(backgrounds) >= 5 / 6, results
