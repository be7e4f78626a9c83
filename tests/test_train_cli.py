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
from jaxgen.train.recipe import CONFIG_DIR, load_recipe
from jaxgen.train.run import UNFINISHED
from jaxgen.weights.model_dir import load_model

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
    "shapes_free.yaml": {
        "train": {"steps": 2, "batch_size": 8, "checkpoint_every": 1, "log_every": 1,
                  "warmup_steps": 1},
    },
}


def _tiny_recipe(tmp: Path) -> Path:
    """The shipped recipe beside tiny versions of its stage configs."""
    for name, edits in TINY.items():
        raw = yaml.safe_load((CONFIG_DIR / name).read_text())
        for section, values in edits.items():
            raw[section].update(values)
        (tmp / name).write_text(yaml.safe_dump(raw))
    shutil.copy(CONFIG_DIR / "shapes.yaml", tmp / "shapes.yaml")
    return tmp / "shapes.yaml"


def _train(recipe: Path, work_dir: Path, *sets: str) -> list[str]:
    args = ["train", "--recipe", str(recipe), "--work-dir", str(work_dir)]
    for item in ("eval.prompts=4", "eval.skip=true", *sets):
        args += ["--set", item]
    return args


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("train-cli")
    args = _train(_tiny_recipe(tmp), tmp / "run")
    # A zero budget stops stage 1 at once: the command says so and exits UNFINISHED...
    assert main([*args, "--minutes", "0"]) == UNFINISHED
    report = json.loads((tmp / "run/report.json").read_text())
    assert report["vae"]["finished"] is False and "unet" not in report
    # ...and the same command without it continues from the checkpoint to the export.
    assert main(args) == 0
    return tmp / "run"


def test_train_command_resumes_trains_all_seven_stages_and_exports(trained):
    report = json.loads((trained / "report.json").read_text())
    assert report["vae"]["step"] == 2 and report["text"]["step"] == 2
    assert report["unet"]["step"] == 2
    # The shipped fine-tune config runs two passes, the second in its own folder.
    for key in ("finetune", "finetune-2", "wording", "pairs", "free"):
        assert report[key]["step"] == 2 and report[key]["finished"] is True
    assert report["vae"]["reconstruction_eval"]["counts"]["all"] == 4
    assert report["export"]["dir"] == str(trained / "model")
    assert (trained / "model/model_index.json").is_file()
    # Trained with caption dropout: the export says it takes an empty prompt.
    assert json.loads((trained / "model/jaxgen.json").read_text()) == {"empty_prompt": True}
    # float16 weight files by default (the shipped model's size budget); jaxgen loads float32
    unet_file = safetensors.numpy.load_file(
        trained / "model/unet/diffusion_pytorch_model.safetensors")
    assert {a.dtype for a in unet_file.values()} == {np.dtype(np.float16)}
    assert {a.dtype for a in jax.tree.leaves(load_model(trained / "model").params)} == {
        np.dtype(np.float32)}
    for stage in ("text", "unet", "finetune", "finetune-2", "wording", "pairs", "free"):
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
    assert main(_train(_tiny_recipe(tmp_path), tmp_path / "run",
                       f"export.dir={tmp_path / 'model'}")) == 0
    assert [(desc, first) for desc, first, _, _ in calls] == [  # each after the last's 2 steps
        ("unet", 0), ("finetune", 2), ("finetune-2", 4), ("pairs", 8), ("free", 10)]

    def same(a, b):
        return all(np.array_equal(x, y) for x, y in
                   zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True))

    for (_, _, _, before), (_, _, start, _) in itertools.pairwise(calls):
        assert same(start, before.params)  # the previous stage's EMA weights...
        assert not same(start, before.state.params)  # ...not its raw ones
    assert not same(calls[2][3].params, calls[1][3].params)  # pass 2 trained on

    # Stage 4 trains stage 0's encoder through the last pass's UNet (EMA), on scenes after
    # its; stages 5 and 6 train that UNet on, reading stage 4's encoder (EMA); the export
    # ships stage 6's UNet and stage 4's encoder.
    (kwargs, result), = worded
    assert kwargs["first_batch"] == 6 and same(kwargs["unet_params"], calls[2][3].params["unet"])
    assert same(result.state.frozen["unet"], calls[2][3].params["unet"])
    assert not same(result.params["text_encoder"], kwargs["text_params"])
    for stage in (3, 4):
        assert same(texts[stage], result.params["text_encoder"])
        assert same(calls[stage][3].state.frozen["text_encoder"], result.params["text_encoder"])
    exported = load_model(tmp_path / "model").params
    f16 = lambda tree: jax.tree.map(lambda a: np.asarray(a, np.float16), tree)  # noqa: E731
    assert same(f16(exported["unet"]), f16(calls[4][3].params["unet"]))
    assert same(f16(exported["text_encoder"]), f16(result.params["text_encoder"]))


def test_finetune_passes_are_checked_before_training_with_the_shipped_recipe_from_any_dir(
        tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # the recipe and its stage configs ship inside the package
    assert main(["train", "--work-dir", "run", "--set", "finetune.passes=0"]) == 2
    shipped = CONFIG_DIR / "shapes_unet_finetune.yaml"
    assert f"{shipped}: passes=0: must be a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()  # stopped before anything was written
    bad = tmp_path / "finetune.yaml"  # the same for a config's own count
    bad.write_text("passes: 0\ntrain:\n  steps: 5\n")
    assert main(["train", "--work-dir", "run", "--set", "finetune.config=finetune.yaml"]) == 2
    assert f"{bad}: passes=0: must be a whole number >= 1" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_set_reaches_the_stage_config_and_shortens_its_warmup(trained, tmp_path):
    shutil.copytree(trained, tmp_path / "run")
    recipe = _tiny_recipe(tmp_path)
    # The finished work dir continues: only stage 5 has steps left, one more.
    assert main(_train(recipe, tmp_path / "run", "pairs.train.steps=3")) == 0
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert report["pairs"]["step"] == 3 and report["pairs"]["steps_this_run"] == 1
    assert report["unet"]["steps_this_run"] == 0 and report["wording"]["step"] == 2
    # A step count alone keeps warmup under it (the shipped 200), as a short trial run needs.
    stage = load_recipe("shapes", ["unet.train.steps=30"]).stage("unet")
    assert stage.config["train"]["steps"] == 30 and stage.config["train"]["warmup_steps"] == 3
    stage = load_recipe("shapes", ["unet.train.steps=30", "unet.train.warmup_steps=0"])
    assert stage.stage("unet").config["train"]["warmup_steps"] == 0


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
    theirs = diffusers_generator(trained / "model", guidance=3.0, steps=3)(prompts, seeds)
    diff = np.abs(ours.astype(np.int32) - theirs.astype(np.int32))
    assert diff.max() <= 2, f"jaxgen and diffusers differ by {diff.max()}/255"
    other = model_generator(model, guidance=3.0, steps=3, batch_size=2)(prompts, seeds + 1)
    assert np.abs(ours.astype(np.int32) - other.astype(np.int32)).max() > 2  # noise matters


def test_vae_from_skips_stage_1_and_ships_that_models_vae(trained, tmp_path, capsys):
    recipe = _tiny_recipe(tmp_path)
    alone = ["finetune.enabled=false", "wording.enabled=false", "pairs.enabled=false",
             "free.enabled=false"]
    no_text = ["text.enabled=false", "unet.reads.text_encoder=null"]
    vae_from = f"vae.from={trained / 'model'}"
    args = _train(recipe, tmp_path / "run", *alone, *no_text)
    assert main([*args, "--set", vae_from]) == 0
    report = json.loads((tmp_path / "run/report.json").read_text())
    source = load_model(trained / "model")
    assert report["vae"]["from"] == str(trained / "model") and "step" not in report["vae"]
    assert report["vae"]["scaling_factor"] == source.vae.scaling_factor
    assert not (tmp_path / "run/vae").exists() and report["unet"]["finished"] is True
    assert "text" not in report and not (tmp_path / "run/text").exists()  # no text stage
    exported = load_model(tmp_path / "run/model")
    assert exported.vae == source.vae
    for a, b in zip(jax.tree.leaves(exported.params["vae"]), jax.tree.leaves(source.params["vae"]),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    # The work dir keeps the VAE it started with, either way round.
    assert main(args) == 2
    assert "its unet stage trains on another model's VAE; pass the same --set vae.from" in \
        capsys.readouterr().err
    assert main([*args, "--work-dir", str(trained), "--set", vae_from]) == 2
    assert f"{trained} trains its own VAE" in capsys.readouterr().err
    # And the text encoder it started with: the text stage's, or its own.
    assert main([*_train(recipe, tmp_path / "run", *alone), "--set", vae_from]) == 2
    assert "its unet stage trains its text encoder with the UNet; pass --set " \
        "unet.reads.text_encoder=null again" in capsys.readouterr().err
    assert main([*args, "--work-dir", str(trained)]) == 2
    assert f"{trained}: its unet stage reads the text stage's encoder; drop --set " \
        "unet.reads.text_encoder=null" in capsys.readouterr().err
    # A VAE whose latents the UNet config was not built for stops before any training.
    assert main([*args, "--work-dir", str(tmp_path / "bad"), "--set", vae_from,
                 "--set", "vae.vae.latent_channels=8"]) == 2
    assert "its VAE has 4 latent channels at 1/4 scale; the stage configs expect 8 at 1/4" in \
        capsys.readouterr().err


def test_stages_from_a_model_dir_train_only_the_rest_on_its_weights(trained, tmp_path,
                                                                    monkeypatch):
    import jaxgen.train.stages as stages

    calls = []

    def spy(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    real = stages.run_unet_stage
    monkeypatch.setattr(stages, "run_unet_stage", spy)
    model = trained / "model"
    sets = [f"{name}.from={model}" for name in ("vae", "text", "unet", "finetune", "wording")]
    sets.append("free.enabled=false")
    assert main(_train(_tiny_recipe(tmp_path), tmp_path / "run", *sets)) == 0
    report = json.loads((tmp_path / "run/report.json").read_text())
    assert [k for k in report if report[k] == {"from": str(model)}] == [
        "text", "unet", "finetune", "wording"]
    assert report["pairs"]["finished"] is True
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [
        "model", "pairs", "report.json", "tokenizer"]
    # Stage 5 alone, on the scenes after the ones stages 2-4 trained on, as `jaxgen train`
    # draws them, starting from the model's UNet and reading its text encoder.
    (kwargs,) = calls
    assert kwargs["first_batch"] == 8 and kwargs["desc"] == "pairs"
    source = load_model(model).params
    for ours, theirs in ((kwargs["start_params"]["unet"], source["unet"]),
                         (kwargs["text_params"], source["text_encoder"])):
        assert all(np.array_equal(a, b) for a, b in
                   zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True))


@pytest.mark.parametrize("engine", ["jaxgen", "diffusers"])
def test_eval_command_writes_a_report_and_contact_sheet(trained, tmp_path, engine, capsys):
    out = tmp_path / engine
    assert main(["eval", "--model", str(trained / "model"), "--out", str(out),
                 "--num-prompts", "4", "--steps", "2", "--no-fd", "--engine", engine,
                 "--recall", "0"]) == 0
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
    run = ["train", "--work-dir", str(tmp_path / "run")]
    assert main([*run, "--set", "vae.config=nope.yaml"]) == 2
    assert f"stage vae's config {Path('nope.yaml').resolve()}: no such file" in \
        capsys.readouterr().err
    assert main([*run, "--recipe", "shapez"]) == 2
    assert "'shapez' is not a known recipe; did you mean 'shapes'?" in capsys.readouterr().err
    assert main([*run, "--recipe", str(tmp_path / "nope.yaml")]) == 2
    assert f"recipe {tmp_path / 'nope.yaml'}: no such file" in capsys.readouterr().err
    # An unknown stage or key, on the command line or in the recipe, names the nearest one.
    assert main([*run, "--set", "unet.train.stpes=100"]) == 2
    assert "--set unet.train.stpes: 'stpes' is not a known key of unet.train; did you mean " \
        "'steps'?" in capsys.readouterr().err
    assert main([*run, "--set", "unett.train.steps=100"]) == 2
    assert "'unett' is not a known stage; did you mean 'unet'?" in capsys.readouterr().err
    assert main([*run, "--set", "export.dtpye=float32"]) == 2
    assert "'dtpye' is not a known key of export; did you mean 'dtype'?" in \
        capsys.readouterr().err
    recipe = tmp_path / "typo.yaml"
    recipe.write_text((CONFIG_DIR / "shapes.yaml").read_text().replace("  finetune:",
                                                                       "  finetuen:"))
    assert main([*run, "--recipe", str(recipe)]) == 2
    assert f"{recipe}: 'finetuen' is not a known stage; did you mean 'finetune'?" in \
        capsys.readouterr().err
    # A disabled stage that a later enabled one reads: both named, every such pair at once.
    assert main([*run, "--set", "text.enabled=false"]) == 2
    err = capsys.readouterr().err
    assert "stage unet reads its text_encoder from stage text, which is disabled (enable text " \
        "or --set unet.enabled=false or --set unet.reads.text_encoder=null)" in err
    assert "stage wording reads its text_encoder from stage text, which is disabled" in err
    assert main([*run, "--set", "wording.enabled=false"]) == 2
    assert "stage pairs reads its text_encoder from stage wording, which is disabled" in \
        capsys.readouterr().err
    assert not (tmp_path / "run").exists()
    assert main(["eval", "--out", str(tmp_path), "--engine", "torch"]) == 2
    assert "engine='torch': must be one of jaxgen, diffusers" in capsys.readouterr().err
    assert main(["eval", "--out", str(tmp_path), "--prompt-set", "train"]) == 2
    assert "prompt_set='train': must be one of eval, tuning" in capsys.readouterr().err


def test_train_help_shows_the_recipe_and_its_defaults(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "--recipe NAME_OR_PATH" in out and "(default: shapes)" in out
    assert "(default: runs/shapes-default)" in out and "unet.train.steps=6500" in out
    stages = [line.split()[0] for line in out.split("stages in run order:\n")[1].splitlines()]
    assert stages == ["vae", "text", "unet", "finetune", "wording", "pairs", "free", "export",
                      "eval"]
    assert "shapes_unet.yaml" in out and "steps 9000" in out and "dtype=float16" in out
