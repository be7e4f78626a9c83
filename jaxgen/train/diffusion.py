"""Stage 2: the denoising loss on VAE latents, for the text encoder and UNet trained together.

The noise schedule is the one the samplers read back from the exported scheduler config
(jaxgen.schedulers.tables.alphas_cumprod), so training and sampling cannot disagree.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from jaxgen.models import AutoencoderKL, CLIPTextModel, UNet2DConditionModel
from jaxgen.models.init import init_params
from jaxgen.schedulers import SchedulerConfig
from jaxgen.schedulers.tables import alphas_cumprod
from jaxgen.train.vae import LossFn

TRAINABLE_PREDICTIONS = ("v_prediction", "epsilon")


def diffusion_targets(prediction_type: str, latents: jax.Array, noise: jax.Array,
                      alpha: jax.Array, sigma: jax.Array) -> jax.Array:
    """What the UNet should output for x_t = alpha * x0 + sigma * noise."""
    if prediction_type == "v_prediction":  # Salimans & Ho 2022
        return alpha * noise - sigma * latents
    return noise


@dataclasses.dataclass(frozen=True)
class Timesteps:
    """Which timesteps training draws (a stage YAML's `timesteps` section).

    Uniform over [0, T) by default. With `high_noise_fraction` > 0 each example is drawn from
    [high_noise_from, T) with that probability instead: the highest noise levels are where the
    sampler's first steps decide the layout from the caption alone, and a uniform draw gives
    them a few percent of the training. The default model's stages draw uniformly; the
    weighted draw taught position but drew two-object scenes worse (docs/shapes-lab-notebook.md,
    "How stage 3 was chosen").
    """

    high_noise_fraction: float = 0.0
    high_noise_from: int = 950

    def __post_init__(self) -> None:
        if not 0 <= self.high_noise_fraction <= 1:
            raise ValueError(f"timesteps high_noise_fraction={self.high_noise_fraction!r}: "
                             f"must be in [0, 1]")
        if self.high_noise_from < 0:
            raise ValueError(f"timesteps high_noise_from={self.high_noise_from!r}: must be >= 0")

    def sample(self, key: jax.Array, batch: int, num_train_timesteps: int) -> jax.Array:
        if self.high_noise_fraction == 0:  # the plain draw, as the shipped stage 2 made it
            return jax.random.randint(key, (batch,), 0, num_train_timesteps)
        k_any, k_high, k_pick = jax.random.split(key, 3)
        high = jax.random.randint(k_high, (batch,), self.high_noise_from, num_train_timesteps)
        pick = jax.random.bernoulli(k_pick, self.high_noise_fraction, (batch,))
        return jnp.where(pick, high, jax.random.randint(k_any, (batch,), 0, num_train_timesteps))


def init_denoiser(unet: UNet2DConditionModel, text: CLIPTextModel, seed: int,
                  latent_size: int, zero_outputs: bool = False) -> dict:
    """Fresh {unet, text_encoder} params; `zero_outputs`: see zero_residual_outputs."""
    f32 = jnp.float32
    ids = jax.ShapeDtypeStruct((1, text.config.max_position_embeddings), jnp.int32)
    latents = jax.ShapeDtypeStruct((1, latent_size, latent_size, unet.config.in_channels), f32)
    context = jax.ShapeDtypeStruct((1, ids.shape[1], unet.config.cross_attention_dim), f32)
    t = jax.ShapeDtypeStruct((1,), f32)
    unet_params = init_params(unet, latents, t, context, seed=seed)
    if zero_outputs:
        unet_params = zero_residual_outputs(unet_params)
    return {"unet": unet_params, "text_encoder": init_params(text, ids, seed=seed + 1)}


# The last layer of each residual branch (ResNet conv2, transformer proj_out) and the UNet's
# conv_out: the layers Latent Diffusion initialises to zero.
ZEROED_AT_INIT = ("conv2", "proj_out", "conv_out")


def zero_residual_outputs(unet_params: dict) -> dict:
    """`unet_params` with the ZEROED_AT_INIT layers set to zero, as Latent Diffusion starts.

    Why: with flax's default init every cross-attention block adds a random function of the
    caption to the residual stream, which the UNet first learns to suppress; on the shapes data
    the text encoder then gets almost no gradient for the first ~1000 steps. Starting those
    branches at zero, each block enters the output only as it learns something useful; in
    short runs on restricted scenes the caption's gradient then stays alive. In the first
    2400 steps of the full shapes recipe it was no better, so the shipped config keeps flax's
    init (docs/shapes-lab-notebook.md, "Why the caption is learned late").
    """
    def init(path: tuple, leaf):
        names = {str(getattr(k, "key", k)) for k in path}
        return np.zeros_like(leaf) if names & set(ZEROED_AT_INIT) else leaf

    return jax.tree_util.tree_map_with_path(init, unet_params)


def diffusion_loss_fn(unet: UNet2DConditionModel, text: CLIPTextModel, vae: AutoencoderKL,
                      schedule: SchedulerConfig, scaling_factor: float,
                      timesteps: Timesteps = Timesteps()) -> LossFn:
    """loss(params, frozen, batch, key): params = {unet, text_encoder}, frozen = {vae}.

    With a pretrained text encoder: params = {unet}, frozen = {vae, text_encoder}.

    batch["images"] in [-1, 1] and batch["input_ids"]; latents are sampled from the frozen
    VAE's posterior and multiplied by `scaling_factor`, as the sampler divides them back.
    """
    acp = jnp.asarray(alphas_cumprod(schedule), jnp.float32)
    n_train = schedule.num_train_timesteps
    if schedule.prediction_type not in TRAINABLE_PREDICTIONS:
        raise ValueError(f"scheduler prediction_type={schedule.prediction_type!r}: training "
                         f"supports {' or '.join(TRAINABLE_PREDICTIONS)}")
    if timesteps.high_noise_from >= n_train:
        raise ValueError(f"timesteps high_noise_from={timesteps.high_noise_from}: must be below "
                         f"the scheduler's num_train_timesteps={n_train}")

    def loss(params, frozen, batch, key):
        k_post, k_t, k_noise = jax.random.split(key, 3)
        mean, logvar = vae.apply({"params": frozen["vae"]}, batch["images"], method=vae.encode)
        z = mean + jnp.exp(0.5 * logvar) * jax.random.normal(k_post, mean.shape, mean.dtype)
        x0 = jax.lax.stop_gradient(z.astype(jnp.float32)) * scaling_factor
        b = x0.shape[0]
        t = timesteps.sample(k_t, b, n_train)
        noise = jax.random.normal(k_noise, x0.shape, jnp.float32)
        alpha = jnp.sqrt(acp[t])[:, None, None, None]
        sigma = jnp.sqrt(1.0 - acp[t])[:, None, None, None]
        # A pretrained text encoder (stage 0) sits in `frozen`; otherwise it trains with the UNet.
        text_params = params.get("text_encoder", frozen.get("text_encoder"))
        context, _ = text.apply({"params": text_params}, batch["input_ids"])
        # The wording stage trains the text encoder alone, through the frozen UNet.
        unet_params = params.get("unet", frozen.get("unet"))
        out = unet.apply({"params": unet_params}, alpha * x0 + sigma * noise, t, context)
        target = diffusion_targets(schedule.prediction_type, x0, noise, alpha, sigma)
        mse = jnp.square(out.astype(jnp.float32) - target).mean()
        return mse, {"mse": mse}

    return loss
