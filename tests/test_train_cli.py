"""`jaxgen train` and `jaxgen eval` end to end on tiny versions of the shipped stage configs."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest
import safetensors.numpy
import yaml

from jaxgen.cli import main
from jaxgen.train.run import UNFINISHED
from jaxgen.weights.model_dir import load_model

ROOT = Path(__file__).resolve().parents[1]
TINY = {
    "shapes_vae.yaml": {
        "vae": {"block_out_channels": [8, 16, 16], "norm_num_groups": 4},
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 1, "log_every": 1,
                  "warmup_steps": 1},
    },
    "shapes_text.yaml": {
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 1, "log_every": 1,
                  "warmup_steps": 1},
    },
    "shapes_unet.yaml": {
        "unet": {"block_out_channels": [16, 32], "norm_num_groups": 8,
                 "cross_attention_dim": 32, "attention_head_dim": 2,
                 "down_block_types": ["DownBlock2D", "CrossAttnDownBlock2D"],
                 "up_block_types": ["CrossAttnUpBlock2D", "UpBlock2D"]},
        "text_encoder": {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
                         "num_attention_heads": 2},
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 1, "log_every": 1,
                  "warmup_steps": 1},
    },
    "shapes_unet_finetune.yaml": {
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 1, "log_every": 1,
                  "warmup_steps": 1},
    },
    "shapes_wording.yaml": {
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 1, "log_every": 1,
                  "warmup_steps": 1},
    },
    "shapes_pairs.yaml": {
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 1, "log_every": 1,
                  "warmup_steps": 1},
    },
}


def _tiny_configs(tmp: Path) -> list[Path]:
    paths = []
    for name, edits in TINY.items():
        raw = yaml.safe_load((ROOT / "configs/train" / name).read_text())
        for section, values in edits.items():
            raw[section].update(values)
        path = tmp / name
        path.write_text(yaml.safe_dump(raw))
        paths.append(path)
    return paths


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("train-cli")
    vae, text, unet, finetune, wording, pairs = _tiny_configs(tmp)
    args = ["train", "--work-dir", str(tmp / "run"), "--vae-config", str(vae),
            "--text-config", str(text), "--unet-config", str(unet), "--finetune-config",
            str(finetune), "--wording-config", str(wording), "--pairs-config", str(pairs),
            "--eval-prompts", "4", "--skip-eval"]
    # A zero budget stops stage 1 at once: the command says so and exits UNFINISHED...
    assert main([*args, "--minutes", "0"]) == UNFINISHED
    report = json.loads((tmp / "run/report.json").read_text())
    assert report["vae"]["finished"] is False and "unet" not in report
    # ...and the same command without it continues from the checkpoint to the export.
    assert main(args) == 0
    return tmp / "run"


def test_train_command_resumes_trains_all_six_stages_and_exports(trained):
    report = json.loads((trained / "report.json").read_text())
    assert report["vae"]["step"] == 2 and report["text"]["step"] == 2
    assert report["unet"]["step"] == 2
    # The shipped fine-tune config runs two passes, the second in its own folder.
    for key in ("finetune", "finetune-2", "wording", "pairs"):
        assert report[key]["step"] == 2 and report[key]["finished"] is True
    assert report["vae"]["reconstruction_eval"]["counts"]["all"] == 4
    assert report["export"]["dir"] == str(trained / "model")
    assert (trained / "model/model_index.json").is_file()
    # float16 weight files by default (the shipped model's size budget); jaxgen loads float32
    unet_file = safetensors.numpy.load_file(
        trained / "model/unet/diffusion_pytorch_model.safetensors")
    assert {a.dtype for a in unet_file.values()} == {np.dtype(np.float16)}
    assert {a.dtype for a in jax.tree.leaves(load_model(trained / "model").params)} == {
        np.dtype(np.float32)}
    for stage in ("text", "unet", "finetune", "finetune-2", "wording", "pairs"):
        metrics = (trained / stage / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(line)["step"] for line in metrics][-1] == 2


def test_each_finetune_pass_trains_on_the_last_passs_ema_weights_and_new_batches(
        trained, tmp_path, monkeypatch):
    import jaxgen.train.stages as stages  # run.py imports it when it runs: patch here

    calls = []

    def spy(*args, **kwargs):
        result = real(*args, **kwargs)
        calls.append((kwargs.get("desc", "unet"), kwargs.get("first_batch", 0),
                      kwargs.get("start_params"), result))
        texts.append(kwargs.get("text_params"))
        return result

    def wording_spy(*args, **kwargs):
        worded.append((kwargs, real_wording(*args, **kwargs)))
        return worded[-1][1]

    real, real_wording, worded, texts = stages.run_unet_stage, stages.run_wording_stage, [], []
    monkeypatch.setattr(stages, "run_unet_stage", spy)
    monkeypatch.setattr(stages, "run_wording_stage", wording_spy)
    # Rerun on a copy of the finished work dir: every stage resumes at its end, and the
    # chain between them is what each call is handed.
    shutil.copytree(trained, tmp_path / "run")
    vae, text, unet, finetune, wording, pairs = _tiny_configs(tmp_path)
    assert main(["train", "--work-dir", str(tmp_path / "run"), "--vae-config", str(vae),
                 "--text-config", str(text), "--unet-config", str(unet), "--finetune-config",
                 str(finetune), "--wording-config", str(wording), "--pairs-config", str(pairs),
                 "--eval-prompts", "4", "--skip-eval",
                 "--export-dir", str(tmp_path / "model")]) == 0
    assert [(desc, first) for desc, first, _, _ in calls] == [  # each after the last's 2 steps
        ("unet", 0), ("finetune", 2), ("finetune-2", 4), ("pairs", 8)]  # (and stage 4's)

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    for (_, _, _, before), (_, _, start, _) in itertools.pairwise(calls):
        assert same(start, before.params)  # the previous stage's EMA weights...
        assert not same(start, before.state.params)  # ...not its raw ones
    assert not same(calls[2][3].params, calls[1][3].params)  # pass 2 trained on

    # Stage 4 trains stage 0's encoder through the last pass's UNet (EMA), on scenes after
    # its; stage 5 trains that UNet on, reading stage 4's encoder (EMA); the export ships
    # stage 5's UNet and stage 4's encoder.
    (kwargs, result), = worded
    assert kwargs["first_batch"] == 6 and same(kwargs["unet_params"], calls[2][3].params["unet"])
    assert same(result.state.frozen["unet"], calls[2][3].params["unet"])
    assert not same(result.params["text_encoder"], kwargs["text_params"])
    assert same(texts[3], result.params["text_encoder"])
    assert same(calls[3][3].state.frozen["text_encoder"], result.params["text_encoder"])
    exported = load_model(tmp_path / "model").params
    f16 = lambda tree: jax.tree.map(lambda a: np.asarray(a, np.float16), tree)  # noqa: E731
    assert same(f16(exported["unet"]), f16(calls[3][3].params["unet"]))
    assert same(f16(exported["text_encoder"]), f16(result.params["text_encoder"]))


def test_finetune_passes_and_work_dir_are_checked_before_training(tmp_path, capsys):
    assert main(["train", "--work-dir", str(tmp_path / "run"), "--finetune-passes", "0"]) == 2
    assert "finetune_passes=0: must be a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # stopped before anything was written
    bad = tmp_path / "finetune.yaml"  # the same for the config's own count
    bad.write_text("passes: 0\ntrain:\n  steps: 5\n")
    assert main(["train", "--work-dir", str(tmp_path / "run"), "--finetune-config", str(bad)]) == 2
    assert f"{bad}: passes=0: must be a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    # A work dir from before stage 3 was renamed: its checkpoints are not silently ignored.
    (tmp_path / "old/layout").mkdir(parents=True)
    assert main(["train", "--work-dir", str(tmp_path / "old")]) == 2
    assert f"{tmp_path / 'old/layout'}: stage 3 from before it was renamed fine-tune" in \
        capsys.readouterr().err


def test_diffusers_peer_starts_from_jaxgens_noise_and_draws_the_same_images(trained):
    # Same initial noise: the engines' images, and so their ShapesEval scores, differ only by
    # what the two implementations compute.
    from jaxgen.eval.diffusers_peer import diffusers_generator
    from jaxgen.eval.shapes_eval import model_generator

    prompts = ["a large red circle on a white background", "a small blue square left of a "
               "green triangle on a black background"]
    seeds = np.array([7, 2**40 + 3])
    model = load_model(trained / "model")
    ours = model_generator(model, guidance=3.0, steps=3, batch_size=2)(prompts, seeds)
    theirs = diffusers_generator(trained / "model", guidance=3.0, steps=3,
                                 batch_size=2)(prompts, seeds)
    diff = np.abs(ours.astype(np.int32) - theirs.astype(np.int32))
    assert diff.max() <= 2, f"jaxgen and diffusers differ by {diff.max()}/255"
    other = model_generator(model, guidance=3.0, steps=3, batch_size=2)(prompts, seeds + 1)
    assert np.abs(ours.astype(np.int32) - other.astype(np.int32)).max() > 2  # noise matters


def test_vae_from_skips_stage_1_and_ships_that_models_vae(trained, tmp_path, capsys):
    vae, text, unet, finetune, wording, pairs = _tiny_configs(tmp_path)
    args = ["train", "--work-dir", str(tmp_path / "run"), "--vae-config", str(vae),
            "--unet-config", str(unet), "--no-text-stage", "--no-finetune-stage",
            "--no-wording-stage", "--no-pairs-stage", "--eval-prompts", "4", "--skip-eval"]
    assert main([*args, "--vae-from", str(trained / "model")]) == 0
    report = json.loads((tmp_path / "run/report.json").read_text())
    source = load_model(trained / "model")
    assert report["vae"]["from"] == str(trained / "model") and "step" not in report["vae"]
    assert report["vae"]["scaling_factor"] == source.vae.scaling_factor
    assert not (tmp_path / "run/vae").exists() and report["unet"]["finished"] is True
    assert "text" not in report and not (tmp_path / "run/text").exists()  # --no-text-stage
    exported = load_model(tmp_path / "run/model")
    assert exported.vae == source.vae
    for a, b in zip(jax.tree.leaves(exported.params["vae"]), jax.tree.leaves(source.params["vae"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # The work dir keeps the VAE it started with, either way round.
    assert main(args) == 2
    assert "stage 2 there trains on another model's VAE; pass the same --vae-from" in \
        capsys.readouterr().err
    assert main([*args, "--work-dir", str(trained), "--vae-from", str(trained / "model")]) == 2
    assert f"{trained} trains its own VAE" in capsys.readouterr().err
    # And the text encoder it started with: stage 0's, or its own.
    with_text = [a for a in args if a != "--no-text-stage"]
    assert main([*with_text, "--text-config", str(text), "--vae-from",
                 str(trained / "model")]) == 2
    assert "stage 2 there trains its text encoder with the UNet; pass --no-text-stage" in \
        capsys.readouterr().err
    assert main([*args, "--work-dir", str(trained)]) == 2
    assert f"{trained}: stage 2 there reads stage 0's text encoder; drop --no-text-stage" in \
        capsys.readouterr().err
    # A VAE whose latents the UNet config was not built for stops before any training.
    other = yaml.safe_load(vae.read_text())
    other["vae"]["latent_channels"] = 8
    vae.write_text(yaml.safe_dump(other))
    assert main([*args, "--work-dir", str(tmp_path / "bad"), "--vae-from",
                 str(trained / "model")]) == 2
    assert "its VAE has 4 latent channels at 1/4 scale; the stage configs expect 8 at 1/4" in \
        capsys.readouterr().err


@pytest.mark.parametrize("engine", ["jaxgen", "diffusers"])
def test_eval_command_writes_a_report_and_contact_sheet(trained, tmp_path, engine, capsys):
    out = tmp_path / engine
    assert main(["eval", "--model", str(trained / "model"), "--out", str(out), "--prompts", "4",
                 "--steps", "2", "--no-fd", "--engine", engine]) == 0
    report = json.loads((out / "report.json").read_text())
    assert report["engine"] == engine and report["steps"] == 2
    assert report["counts"] == {"all": 4, "single": 2, "two": 2, "seen_wording": 4,
                                "new_wording": 0}
    assert 0.0 <= report["accuracy"]["all"]["joint"] <= 1.0
    # each prompt's pass, in order: its mean is the joint accuracy
    assert len(report["passed"]) == 4 and set(report["passed"]) <= {"0", "1"}
    assert report["passed"].count("1") / 4 == report["accuracy"]["all"]["joint"]
    assert (out / "contact_sheet.png").stat().st_size > 0
    assert f"{engine}" in capsys.readouterr().out


def test_bad_train_and_eval_arguments_stop_with_a_message(tmp_path, capsys):
    assert main(["train", "--work-dir", str(tmp_path), "--vae-config", "nope.yaml"]) == 2
    assert "training config nope.yaml: no such file" in capsys.readouterr().err
    assert main(["train", "--work-dir", str(tmp_path / "run"), "--no-text-stage"]) == 2
    assert ("stage 4 trains stage 0's text encoder; with --no-text-stage pass --no-wording-stage "
            "--no-pairs-stage too") in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["train", "--work-dir", str(tmp_path / "run"), "--no-wording-stage"]) == 2
    assert "stage 5 reads stage 4's text encoder; with --no-wording-stage pass --no-pairs-stage" \
        in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["eval", "--out", str(tmp_path), "--engine", "torch"]) == 2
    assert "engine='torch': must be one of jaxgen, diffusers" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path), "--prompt-set", "train"]) == 2
    assert "prompt_set='train': must be one of eval, tuning" in capsys.readouterr().err
