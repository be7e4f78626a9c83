"""Training: batches follow the step, resume is bit-exact, the loss falls, the export opens."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import CLIPTokenizer

from jaxgen.engine.grouping import SamplingSpec
from jaxgen.engine.inputs import ItemInputs, noise_ids
from jaxgen.engine.sampling import SamplingProgram
from jaxgen.models import (
    AutoencoderKL,
    CLIPTextConfig,
    CLIPTextModel,
    UNet2DConditionModel,
    UNetConfig,
    VAEConfig,
)
from jaxgen.schedulers import SchedulerConfig
from jaxgen.schedulers.tables import alphas_cumprod, predict_x0
from jaxgen.shapes import PAIR_TEMPLATES, SINGLE_TEMPLATES, caption, parse_caption, sample_scene
from jaxgen.shapes.split import ShapesData
from jaxgen.train.checkpoint import Checkpoints
from jaxgen.train.config import TrainConfig, read_yaml
from jaxgen.train.data import (
    scene_seeds,
    shapes_batch,
    states_no_objects,
    training_caption,
    write_shapes_tokenizer,
)
from jaxgen.train.diffusion import (
    ZEROED_AT_INIT,
    Timesteps,
    diffusion_loss_fn,
    diffusion_targets,
    init_denoiser,
)
from jaxgen.train.export import export_model
from jaxgen.train.loop import MetricsLog, data_mesh, make_train_step, run_training, shard_train_step
from jaxgen.train.recipe import CONFIG_DIR
from jaxgen.train.stages import (
    UNetStage,
    VAEStage,
    calibrated_vae,
    finetune_pass_count,
    finetune_passes,
    run_unet_stage,
    run_vae_stage,
)
from jaxgen.train.state import create_state
from jaxgen.train.vae import VAELoss, init_vae
from jaxgen.train.wording import FUNCTION_WORDS, vary_wording
from jaxgen.weights.tokenizer import tokenize

# Lower XLA's optimisation level: tiny models then compile ~3x faster on the 2-core CPU.
FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}
TINY_VAE = VAEConfig(block_out_channels=(8, 16, 16), layers_per_block=1, norm_num_groups=4)
TINY_UNET = UNetConfig(
    sample_size=16, block_out_channels=(16, 32), layers_per_block=1, norm_num_groups=8,
    cross_attention_dim=32, attention_head_dim=2,
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"))
SCHEDULE = SchedulerConfig(beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                           timestep_spacing="trailing")
TRAIN = TrainConfig(steps=12, batch_size=8, learning_rate=1e-2, warmup_steps=3,
                    checkpoint_every=4, log_every=1, ema_decay=0.9)
DATA = ShapesData()


def _read(path: Path) -> tuple[dict, str]:
    return read_yaml(path), str(path)


def two_device_mesh():
    # Two of the eight simulated devices: the batch is still split and the gradients
    # all-reduced, at a quarter of the per-device overhead on a 2-core machine.
    return data_mesh(jax.devices()[:2])


class SimulatedCrash(RuntimeError):
    pass


@dataclasses.dataclass
class Tiny:
    tokenizer: CLIPTokenizer
    text_config: CLIPTextConfig
    vae_config: VAEConfig  # with its latent scale calibrated, as stage 2 runs it
    vae_params: dict
    step: object  # ShardedStep, compiled once for the module

    def fresh_state(self):
        unet, text = UNet2DConditionModel(TINY_UNET), CLIPTextModel(self.text_config)
        state = create_state(init_denoiser(unet, text, TRAIN.seed, 16), TRAIN,
                             frozen={"vae": self.vae_params})
        return self.step.place_state(state)

    def batches(self, step: int) -> dict:
        return shapes_batch(DATA, step, TRAIN.batch_size, self.tokenizer)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Tiny:
    tok_dir = write_shapes_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    tokenizer = CLIPTokenizer.from_pretrained(str(tok_dir))
    text_config = CLIPTextConfig(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, max_position_embeddings=tokenizer.model_max_length,
        eos_token_id=tokenizer.eos_token_id, hidden_act="gelu")
    vae_params = _nearly_deterministic(init_vae(AutoencoderKL(TINY_VAE), 0))
    vae_config = calibrated_vae(TINY_VAE, vae_params)
    loss = diffusion_loss_fn(UNet2DConditionModel(TINY_UNET), CLIPTextModel(text_config),
                             AutoencoderKL(vae_config), SCHEDULE, vae_config.scaling_factor)
    step = shard_train_step(make_train_step(loss, TRAIN), two_device_mesh(), FAST_COMPILE)
    return Tiny(tokenizer, text_config, vae_config, vae_params, step)


def _nearly_deterministic(vae_params: dict) -> dict:
    """Like a trained VAE, a posterior std of ~e^-6: a random VAE's is ~1, whose sampling noise
    would bury the latents' content under irreducible loss."""
    bias = vae_params["quant_conv"]["bias"].copy()
    bias[TINY_VAE.latent_channels:] = -12.0  # the log-variance half of the moments
    return {**vae_params, "quant_conv": {**vae_params["quant_conv"], "bias": bias}}


@pytest.fixture(scope="module")
def uninterrupted(tiny, tmp_path_factory):
    log = MetricsLog(tmp_path_factory.mktemp("run") / "metrics.jsonl")
    return run_training(tiny.fresh_state(), tiny.step, tiny.batches, TRAIN, log=log,
                        progress=False)


def test_batches_are_a_function_of_the_step_alone(tiny):
    a, b = tiny.batches(5), tiny.batches(5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["images"], tiny.batches(6)["images"])
    assert a["images"].dtype == np.float32 and a["images"].min() >= -1 and a["images"].max() <= 1


def test_training_captions_drop_out_at_the_set_rate_and_skip_held_out_templates():
    assert DATA.holdout_single == (4,) and DATA.holdout_pair == (2,)
    captions = [training_caption(DATA, s) for s in range(2000)]
    dropped = sum(c == "" for c in captions) / len(captions)
    assert abs(dropped - DATA.caption_dropout) < 0.03
    # Exactly the held-out templates put a comma before a final "<colour> background".
    assert SINGLE_TEMPLATES[4].endswith(", {bg} background")
    assert PAIR_TEMPLATES[2].endswith(", {bg} background")
    assert not any(c.endswith(" background") and "," in c for c in captions)
    assert all(parse_caption(c).objects for c in captions if c)


def test_varied_wordings_state_the_same_scene_and_never_take_a_held_out_form():
    varying = dataclasses.replace(DATA, vary_wording=1.0)
    plain = [training_caption(DATA, s) for s in range(1500)]
    varied = [training_caption(varying, s) for s in range(1500)]
    assert varied == [training_caption(varying, s) for s in range(1500)]  # a function of seed
    assert [v == "" for v in varied] == [p == "" for p in plain]  # the same caption dropout
    pairs = [(p, v) for p, v in zip(plain, varied, strict=True) if p]
    assert sum(p != v for p, v in pairs) > 0.9 * len(pairs)
    assert all(parse_caption(v) == parse_caption(p) for p, v in pairs)
    # Variations in a held-out template's form are not used; the form is what is caught.
    assert not any(varying.is_held_out_wording(v) for v in varied)
    for seed in range(40):
        scene = sample_scene(seed)
        held = DATA.holdout_single[0] if len(scene.objects) == 1 else DATA.holdout_pair[0]
        assert DATA.is_held_out_wording(caption(scene, seed, template=held))
        assert not DATA.is_held_out_wording(caption(scene, seed, template=0))
    # The scene's words stay, in order; each function word goes half the time.
    text = "a small red circle at the top left on a blue background"
    outs = [vary_wording(text, np.random.default_rng(k)).replace(",", "") for k in range(400)]
    scene_words = [w for w in text.split() if w not in FUNCTION_WORDS]
    assert all([w for w in o.split() if w not in FUNCTION_WORDS] == scene_words for o in outs)
    assert 0.4 < np.mean(["the" not in o.split() for o in outs]) < 0.6
    with pytest.raises(ValueError, match=r"data vary_wording=1.5: must be in \[0, 1\]"):
        ShapesData(vary_wording=1.5)


def test_under_specified_captions_leave_attributes_free_and_stay_true_of_their_scene():
    from jaxgen.eval.recall import free_attributes
    from jaxgen.shapes import score
    from jaxgen.shapes.scene import canonical

    data = dataclasses.replace(DATA, under_specified=0.5)
    seeds = range(1200)
    captions = [training_caption(data, s) for s in seeds]
    assert captions == [training_caption(data, s) for s in seeds]  # a function of the seed
    full = [training_caption(DATA, s) for s in seeds]
    assert [c == "" for c in captions] == [c == "" for c in full]  # the same caption dropout
    specs = [(parse_caption(c), s) for c, s in zip(captions, seeds, strict=True) if c]
    # Every caption is still true of its scene: what it states is right.
    assert all(score(spec, canonical(sample_scene(s)))["joint"] for spec, s in specs)
    freed = [spec for spec, _ in specs if free_attributes(spec)]
    # Half leave something out (1 in 32 of them draws no omission), beside the full captions
    # whose template states no background.
    base = np.mean([bool(free_attributes(parse_caption(c))) for c in full if c])
    assert 0.42 < (len(freed) / len(specs) - base) / (1 - base) < 0.56
    no_objects = sum(not spec.objects for spec, _ in specs) / len(specs)
    assert 0.02 < no_objects < 0.09
    assert {a for spec in freed for a in free_attributes(spec)} == {
        "count", "relation", "shape", "colour", "size", "position", "background"}
    # Leaving things out changes no other word: the full caption's scene words, less some.
    kept = [s for spec, s in specs if spec.objects and not free_attributes(spec)]
    assert len(kept) > 200
    assert all(captions[s] == full[s] for s in kept)
    with pytest.raises(ValueError, match=r"data under_specified=2: must be in \[0, 1\]"):
        ShapesData(under_specified=2)


def test_two_object_share_sets_each_batchs_mix_of_scenes():
    def pairs(data, step):
        return sum(len(sample_scene(int(s)).objects) == 2 for s in scene_seeds(data, step, 32))

    mixed = dataclasses.replace(DATA, two_object_share=0.75)
    assert [pairs(mixed, step) for step in range(5)] == [24] * 5
    assert np.array_equal(scene_seeds(mixed, 3, 32), scene_seeds(mixed, 3, 32))  # pure
    assert len({int(s) for step in range(5) for s in scene_seeds(mixed, step, 32)}) == 160
    assert pairs(dataclasses.replace(DATA, two_object_share=0.0), 0) == 0
    assert pairs(dataclasses.replace(DATA, two_object_share=1.0), 0) == 32
    assert 0 < pairs(DATA, 0) < 32  # without it, as the seeds fall
    with pytest.raises(ValueError, match=r"data two_object_share=1.5: must be in \[0, 1\]"):
        ShapesData(two_object_share=1.5)


def test_with_under_specified_captions_the_pair_share_binds_only_captions_that_state_objects():
    # The empty prompt learns the domain's own mix, so scenes whose caption states no objects
    # (dropped, or background only) are taken as they fall; the share sets the others' mix.
    data = dataclasses.replace(DATA, two_object_share=0.75, under_specified=0.3)
    seeds = [int(s) for step in range(40) for s in scene_seeds(data, step, 32)]
    counts = {(silent, n): 0 for silent in (True, False) for n in (1, 2)}
    for s in seeds:
        n = len(sample_scene(s).objects)
        counts[(states_no_objects(data, s, n), n)] += 1
    silent = counts[(True, 1)] + counts[(True, 2)]
    assert silent > 100
    assert 0.35 < counts[(True, 2)] / silent < 0.65  # the domain's mix (about half pairs)
    stated = counts[(False, 1)] + counts[(False, 2)]
    assert counts[(False, 2)] / stated > 0.65  # held to the share
    assert np.array_equal(scene_seeds(data, 7, 32), scene_seeds(data, 7, 32))  # pure


def test_every_template_fits_the_shapes_tokenizer_untruncated(tiny):
    lengths = []
    for seed in range(600):
        scene = sample_scene(seed)
        templates = SINGLE_TEMPLATES if len(scene.objects) == 1 else PAIR_TEMPLATES
        rng = np.random.default_rng(seed)
        lengths += [len(tiny.tokenizer(caption(scene, rng, template=t)).input_ids)
                    for t in range(len(templates))]
    assert 30 < max(lengths) <= tiny.tokenizer.model_max_length


def test_vae_stage_loss_goes_down_over_30_steps_and_is_logged(tmp_path):
    stage = VAEStage(TINY_VAE, VAELoss(), dataclasses.replace(TRAIN, steps=30))
    result = run_vae_stage(stage, tmp_path, mesh=two_device_mesh(),
                           compiler_options=FAST_COMPILE, progress=False)
    losses = [h["loss"] for h in result.summary.history]
    first, last = np.mean(losses[:5]), np.mean(losses[-5:])
    assert last < 0.5 * first, f"VAE loss {first:.3f} -> {last:.3f}"
    logged = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in logged] == list(range(1, 31))
    assert result.finished and (tmp_path / "checkpoints" / "30").is_dir()
    assert {"l1", "l2", "kl", "grad_norm", "lr"} <= set(logged[-1])


def test_bfloat16_precision_computes_in_bfloat16_keeps_float32_params_and_learns(tmp_path):
    cfg = dataclasses.replace(TRAIN, steps=30, precision="bfloat16")
    assert cfg.compute_dtype() == jnp.bfloat16
    assert TRAIN.compute_dtype() == jnp.float32  # auto on CPU
    result = run_vae_stage(VAEStage(TINY_VAE, VAELoss(), cfg), tmp_path, mesh=two_device_mesh(),
                           compiler_options=FAST_COMPILE, progress=False)
    losses = [h["loss"] for h in result.summary.history]
    assert np.all(np.isfinite(losses))
    assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5])  # float32: < 0.5 (test above)
    for tree in (result.state.params, result.state.ema_params, result.state.opt_state):
        assert {x.dtype for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.floating)
                } == {jnp.dtype(jnp.float32)}
    with pytest.raises(ValueError, match="precision='fp8': must be one of auto, float32"):
        dataclasses.replace(TRAIN, precision="fp8")


def test_v_target_is_what_the_samplers_turn_back_into_the_clean_latents():
    rng = np.random.default_rng(0)
    x0, noise = rng.normal(size=(2, 4, 4, 4)), rng.normal(size=(2, 4, 4, 4))
    acp = alphas_cumprod(SCHEDULE)[[10, 900]].reshape(2, 1, 1, 1)
    alpha, sigma = np.sqrt(acp), np.sqrt(1 - acp)
    x_t = alpha * x0 + sigma * noise
    v = diffusion_targets("v_prediction", x0, noise, alpha, sigma)
    np.testing.assert_allclose(predict_x0("v_prediction", v, x_t, alpha, sigma), x0, atol=1e-9)
    eps = diffusion_targets("epsilon", x0, noise, alpha, sigma)
    np.testing.assert_allclose(predict_x0("epsilon", eps, x_t, alpha, sigma), x0, atol=1e-6)


def test_resume_after_crash_is_bit_identical_to_uninterrupted_run(tiny, uninterrupted, tmp_path):
    def crashing(step: int) -> dict:
        if step == 7:
            raise SimulatedCrash(f"killed before step {step}")
        return tiny.batches(step)

    checkpoints = Checkpoints(tmp_path / "ckpt", every=TRAIN.checkpoint_every)
    with pytest.raises(SimulatedCrash):
        run_training(tiny.fresh_state(), tiny.step, crashing, TRAIN, checkpoints=checkpoints,
                     progress=False)
    assert checkpoints.latest_step() == 4
    checkpoints.close()

    # A new process: fresh state, restore the latest checkpoint, run to the end.
    checkpoints = Checkpoints(tmp_path / "ckpt", every=TRAIN.checkpoint_every)
    state = checkpoints.restore_latest(tiny.fresh_state())
    assert int(state.step) == 4
    resumed = run_training(state, tiny.step, tiny.batches, TRAIN, checkpoints=checkpoints,
                           progress=False).state
    checkpoints.close()

    expected = uninterrupted.state
    for field in ("step", "params", "opt_state", "ema_params", "rng"):
        got, want = getattr(resumed, field), getattr(expected, field)
        assert jax.tree.structure(got) == jax.tree.structure(want), field
        for g, w in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            assert np.array_equal(np.asarray(g), np.asarray(w)), field


def test_export_opens_in_jaxgen_and_diffusers_with_the_same_images(tiny, uninterrupted,
                                                                   tmp_path):
    from diffusers import StableDiffusionPipeline

    params = {**uninterrupted.state.ema_params, "vae": tiny.vae_params}
    model = export_model(tmp_path / "tiny-shapes", name="tiny-shapes", unet=TINY_UNET,
                         vae=tiny.vae_config, text_encoder=tiny.text_config, schedule=SCHEDULE,
                         tokenizer=tiny.tokenizer, params=params)
    for comp in ("unet", "vae", "text_encoder"):
        for got, want in zip(jax.tree.leaves(model.params[comp]), jax.tree.leaves(params[comp]),
                             strict=True):
            assert np.array_equal(np.asarray(got), np.asarray(want)), comp
    assert SchedulerConfig.from_dict(model.scheduler_config) == SCHEDULE

    prompts = ["a large red circle at the top left on a blue background",
               "a small green square left of a big yellow triangle"]
    latents = torch.randn(2, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    fn = jax.jit(SamplingProgram.build(model, SamplingSpec(64, 64, 4, "dpmpp_2m")),
                 compiler_options=FAST_COMPILE)
    ours = fn(model.params, ItemInputs(
        tokenize(model.tokenizer, prompts), tokenize(model.tokenizer, ["", ""]),
        noise_ids(np.array([1, 2]), np.zeros(2)), jnp.full((2,), 3.0),
        noise=jnp.asarray(latents.permute(0, 2, 3, 1).numpy())))
    assert ours.shape == (2, 64, 64, 3) and ours.dtype == jnp.uint8

    pipe = StableDiffusionPipeline.from_pretrained(tmp_path / "tiny-shapes")
    assert type(pipe.scheduler).__name__ == "DPMSolverMultistepScheduler"
    assert pipe.scheduler.config.prediction_type == "v_prediction"
    ref = pipe(prompts, num_inference_steps=4, guidance_scale=3.0, latents=latents,
               output_type="np").images
    assert ref.shape == (2, 64, 64, 3)  # the default size: unet.sample_size x VAE factor
    diff = np.abs(np.asarray(ours, np.int32) - np.round(ref * 255).astype(np.int32))
    assert diff.max() <= 2, f"jaxgen and diffusers differ by {diff.max()}/255"


def test_stage_yamls_describe_an_sd_style_model_for_64px_images(tiny):
    vae = VAEStage.from_dict(*_read(CONFIG_DIR / "shapes_vae.yaml"))
    unet = UNetStage.from_dict(*_read(CONFIG_DIR / "shapes_unet.yaml"), tiny.tokenizer)
    assert vae.vae.downscale == 4 and len(unet.unet.block_out_channels) == 4
    assert unet.unet.sample_size * vae.vae.downscale == 64
    # attention at the coarse levels (8x8, 4x4, 2x2), which see the whole image
    assert unet.unet.down_block_types[1:] == ("CrossAttnDownBlock2D",) * 3
    assert unet.unet.cross_attention_dim == unet.text_encoder.hidden_size
    assert unet.text_encoder.vocab_size == len(tiny.tokenizer)
    assert unet.schedule.prediction_type == "v_prediction"


def test_stage_yaml_rejects_unknown_keys(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text((CONFIG_DIR / "shapes_vae.yaml").read_text()
                   .replace("train:", "train:\n  stpes: 3", 1))
    with pytest.raises(ValueError,
                       match=r"train: 'stpes' is not a known key; did you mean 'steps'\?"):
        VAEStage.from_dict(*_read(bad))


def test_zero_outputs_init_zeroes_the_residual_branch_ends_and_nothing_else(tiny):
    unet, text = UNet2DConditionModel(TINY_UNET), CLIPTextModel(tiny.text_config)
    default = init_denoiser(unet, text, 0, 16)
    zeroed = init_denoiser(unet, text, 0, 16, zero_outputs=True)
    assert jax.tree.all(jax.tree.map(np.array_equal, default["text_encoder"],
                                     zeroed["text_encoder"]))
    flat_default = dict(jax.tree_util.tree_flatten_with_path(default["unet"])[0])
    names = set()
    for path, leaf in jax.tree_util.tree_flatten_with_path(zeroed["unet"])[0]:
        keys = {str(k.key) for k in path}
        if keys & set(ZEROED_AT_INIT):
            names |= keys & set(ZEROED_AT_INIT)
            assert not np.any(leaf), jax.tree_util.keystr(path)
        else:
            assert np.array_equal(leaf, flat_default[path]), jax.tree_util.keystr(path)
    assert names == set(ZEROED_AT_INIT)  # each kind of layer exists in the tiny UNet
    # conv_out starts at zero, so the untrained UNet predicts exactly zero
    ids = tokenize(tiny.tokenizer, ["a small red circle on a white background"])
    context, _ = text.apply({"params": zeroed["text_encoder"]}, ids)
    latents = jax.random.normal(jax.random.key(0), (1, 16, 16, TINY_UNET.in_channels))
    out = unet.apply({"params": zeroed["unet"]}, latents, jnp.array([500]), context)
    assert not np.any(np.asarray(out))


def test_stage_yaml_init_section_reads_and_rejects_non_booleans(tiny, tmp_path):
    base = (CONFIG_DIR / "shapes_unet.yaml").read_text()
    assert not UNetStage.from_dict(*_read(CONFIG_DIR / "shapes_unet.yaml"),
                                   tiny.tokenizer).init.zero_outputs
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(base + "init:\n  zero_outputs: true\n")
    assert UNetStage.from_dict(*_read(good), tiny.tokenizer).init.zero_outputs
    bad.write_text(base + "init:\n  zero_outputs: 1\n")
    with pytest.raises(ValueError, match=r"init zero_outputs=1: must be true or false"):
        UNetStage.from_dict(*_read(bad), tiny.tokenizer)


def test_timesteps_default_is_the_plain_uniform_draw_and_high_noise_gets_its_share():
    key = jax.random.key(3)
    # fraction 0 keeps stage 2's draw exactly, so the shipped run stays reproducible
    assert np.array_equal(Timesteps().sample(key, 64, 1000),
                          jax.random.randint(key, (64,), 0, 1000))
    t = np.asarray(Timesteps(high_noise_fraction=0.5, high_noise_from=900).sample(key, 8192, 1000))
    assert t.min() >= 0 and t.max() <= 999
    # half drawn from [900, 1000), half uniform (a tenth of which also lands there): 0.55
    assert abs(np.mean(t >= 900) - 0.55) < 0.02, np.mean(t >= 900)
    assert abs(np.mean(t < 450) - 0.225) < 0.02, np.mean(t < 450)
    with pytest.raises(ValueError, match=r"timesteps high_noise_fraction=1.5: must be in"):
        Timesteps(high_noise_fraction=1.5)
    with pytest.raises(ValueError, match=r"high_noise_from=1000: must be below the scheduler"):
        diffusion_loss_fn(None, None, None, SCHEDULE, 1.0, Timesteps(0.5, 1000))


def test_finetune_yaml_continues_stage_2_with_its_own_train_and_timesteps(tiny, tmp_path):
    stage2 = UNetStage.from_dict(*_read(CONFIG_DIR / "shapes_unet.yaml"), tiny.tokenizer)
    assert stage2.timesteps == Timesteps()  # stage 2 draws uniformly
    finetune = stage2.continued(*_read(CONFIG_DIR / "shapes_unet_finetune.yaml"))
    assert finetune.unet == stage2.unet and finetune.text_encoder == stage2.text_encoder
    assert finetune.schedule == stage2.schedule and finetune.data == stage2.data
    assert finetune.timesteps == Timesteps(high_noise_from=900)  # its own section, read
    assert finetune.train.learning_rate < stage2.train.learning_rate
    assert finetune.train.seed != stage2.train.seed
    # Two passes, the same but for the seed (each pass draws its own noise and timesteps).
    count = finetune_pass_count(*_read(CONFIG_DIR / "shapes_unet_finetune.yaml"))
    passes = finetune_passes(finetune, count)
    assert [p.train.seed for p in passes] == [finetune.train.seed, finetune.train.seed + 1]
    assert [dataclasses.replace(p, train=finetune.train) for p in passes] == [finetune] * 2
    assert finetune_pass_count({"passes": 3}, "finetune") == 3  # as --set finetune.passes=3
    with pytest.raises(ValueError, match=r"finetune: passes=0: must be a whole number >= 1"):
        finetune_pass_count({"passes": 0}, "finetune")
    bad = tmp_path / "bad.yaml"
    for value in ("0", "two", "true"):
        bad.write_text(f"passes: {value}\ntrain:\n  steps: 5\n")
        with pytest.raises(ValueError, match=r"bad.yaml: passes=.*: must be a whole number"):
            finetune_pass_count(*_read(bad))
    bad.write_text("unet:\n  layers_per_block: 2\ntrain:\n  steps: 5\n")
    with pytest.raises(ValueError, match=r"'unet' is not a known section"):
        stage2.continued(*_read(bad))


def test_wording_yaml_varies_stage_2s_captions_and_keeps_its_models(tiny, tmp_path):
    stage2 = UNetStage.from_dict(*_read(CONFIG_DIR / "shapes_unet.yaml"), tiny.tokenizer)
    wording = stage2.reworded(*_read(CONFIG_DIR / "shapes_wording.yaml"))
    assert wording.data == dataclasses.replace(stage2.data, vary_wording=0.5)
    assert (wording.unet, wording.text_encoder, wording.schedule) == (
        stage2.unet, stage2.text_encoder, stage2.schedule)
    assert wording.timesteps == Timesteps() and wording.train.seed != stage2.train.seed
    bad = tmp_path / "bad.yaml"
    bad.write_text("data:\n  vary_wording: 2\n")
    with pytest.raises(ValueError, match=r"data vary_wording=2: must be in \[0, 1\]"):
        stage2.reworded(*_read(bad))
    bad.write_text("timesteps:\n  high_noise_fraction: 0.5\n")
    with pytest.raises(ValueError, match=r"bad.yaml: 'timesteps' is not a known section"):
        stage2.reworded(*_read(bad))


def test_continued_stage_starts_from_the_given_weights(tiny, uninterrupted, tmp_path):
    # learning rate 0: one step must leave the start weights exactly as they were
    still = TrainConfig(steps=1, batch_size=8, learning_rate=0.0, warmup_steps=0, log_every=1)
    stage = UNetStage(TINY_UNET, tiny.text_config, SCHEDULE, DATA, still,
                      timesteps=Timesteps(0.5, 900))
    start = jax.tree.map(np.asarray, uninterrupted.state.ema_params)
    result = run_unet_stage(stage, tiny.vae_config, tiny.vae_params, tiny.tokenizer, tmp_path,
                            mesh=two_device_mesh(), compiler_options=FAST_COMPILE,
                            progress=False, start_params=start, first_batch=TRAIN.steps)
    assert result.finished and int(result.state.step) == 1
    assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(a, np.asarray(b)), start,
                                     result.state.params))
    fresh = tiny.fresh_state().params
    assert not np.array_equal(np.asarray(fresh["unet"]["conv_in"]["kernel"]),
                              start["unet"]["conv_in"]["kernel"])


def test_a_pretrained_text_encoder_stays_frozen_while_the_unet_trains(tiny, uninterrupted,
                                                                       tmp_path):
    cfg = TrainConfig(steps=2, batch_size=8, learning_rate=1e-2, warmup_steps=0, log_every=1)
    stage = UNetStage(TINY_UNET, tiny.text_config, SCHEDULE, DATA, cfg)
    start = jax.tree.map(np.asarray, uninterrupted.state.ema_params)
    result = run_unet_stage(stage, tiny.vae_config, tiny.vae_params, tiny.tokenizer, tmp_path,
                            mesh=two_device_mesh(), compiler_options=FAST_COMPILE,
                            progress=False, start_params=start,
                            text_params=start["text_encoder"])
    assert set(result.state.params) == {"unet"}  # no optimiser state for the text encoder
    assert jax.tree.all(jax.tree.map(lambda a, b: np.array_equal(a, np.asarray(b)),
                                     start["text_encoder"], result.state.frozen["text_encoder"]))
    assert not np.array_equal(start["unet"]["conv_in"]["kernel"],
                              np.asarray(result.state.params["unet"]["conv_in"]["kernel"]))
