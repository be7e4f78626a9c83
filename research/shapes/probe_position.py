"""Does a shapes model place objects where the prompt says, from the very first sampling step?

    python -m research.shapes.probe_position --model jaxgen/assets/default-model

At t = 999 the latent is pure noise, so whatever position the model's clean-image estimate
shows there comes from the prompt alone. For each of the 9 grid positions and several noises,
this decodes the guided x0 estimate of "a large <colour> square <at position> on a white
background" and checks which 3x3 cell holds most of the non-white mass. Prints the hit rate
(chance: 1/9). ShapesEval scores finished images; this isolates the first step's layout.
A second line says whether the estimate depends on the position words at all: with one noise,
the spread of the nine position prompts' estimates, next to the spread over background colours.
"""

from __future__ import annotations

import argparse
from typing import Any

import numpy as np

from jaxgen.default_model import RECOMMENDED


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--noises", type=int, default=8, help="noise seeds per position")
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    args = p.parse_args()

    import jax
    import jax.numpy as jnp

    from jaxgen.engine.denoise import DenoiseStep, guided_prediction, predicted_clean_latents
    from jaxgen.engine.encode import encode_prompts
    from jaxgen.schedulers import SchedulerConfig, make_sampler
    from jaxgen.shapes.captions import POSITION_AT
    from jaxgen.shapes.scene import COLOURS, POSITIONS
    from jaxgen.weights.model_dir import load_model
    from jaxgen.weights.tokenizer import tokenize

    model = load_model(args.model)
    unet, vae, text = model.modules()
    # The engine's own encoding, guidance and x0 estimate, read at the sampler's first step.
    schedule = SchedulerConfig.from_dict(model.scheduler_config)
    sampler = make_sampler(RECOMMENDED["sampler"], schedule, RECOMMENDED["steps"])
    t = sampler.timesteps[0]
    if int(t) != schedule.num_train_timesteps - 1:
        raise SystemExit(f"{args.model}: its schedule's first step is t = {int(t)}; this probe "
                         "reads the step from pure noise (trailing spacing)")
    colours = ("red", "blue", "green", "black")
    prompts = [f"a large {colours[k % len(colours)]} square {POSITION_AT[pos]} on a white "
               f"background" for k in range(args.noises) for pos in POSITIONS]
    n = len(prompts)

    def guided_x0(prompts: list[str], noise: jax.Array) -> jax.Array:
        k = len(prompts)
        context = encode_prompts(text, model.params["text_encoder"],
                                 tokenize(model.tokenizer, prompts),
                                 tokenize(model.tokenizer, [""] * k))
        predict = guided_prediction(unet, model.params["unet"], sampler, context,
                                    jnp.full((k,), args.guidance))
        first = jnp.int32(0)
        return predicted_clean_latents(sampler, DenoiseStep(first, noise, predict(noise, first),
                                                            noise))

    side = model.native_size // model.latent_factor
    noise = jax.random.normal(jax.random.key(0), (n, side, side, model.unet.in_channels))
    x0 = guided_x0(prompts, noise)
    images = np.asarray(vae.apply({"params": model.params["vae"]}, x0 / model.vae.scaling_factor,
                                  method=vae.decode))
    mass = np.linalg.norm(images - 1.0, axis=-1)  # distance from white, per pixel
    cell = model.native_size // 3
    hits = 0
    for i, image_mass in enumerate(mass):
        grid = [image_mass[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].sum()
                for r in range(3) for c in range(3)]
        hits += int(np.argmax(grid) == i % len(POSITIONS))
    print(f"{args.model}: first-step layout in the asked cell for {hits}/{n} prompts "
          f"({hits / n:.1%}; chance {1 / len(POSITIONS):.1%}), guidance {args.guidance}")

    # Does the estimate depend on the words at all? One noise for every prompt; the spread of
    # the nine position prompts' estimates against that of nine background colours.
    one = jnp.broadcast_to(noise[:1], (len(POSITIONS),) + noise.shape[1:])
    by_position = guided_x0([f"a large red square {POSITION_AT[pos]} on a white background"
                             for pos in POSITIONS], one)
    backgrounds = [c for c in COLOURS if c != "red"]
    by_background = guided_x0([f"a large red square in the center on a {c} background"
                               for c in backgrounds], one[:len(backgrounds)])
    print(f"relative spread of the first-step estimate: {spread(by_position):.3f} over the 9 "
          f"positions, {spread(by_background):.3f} over {len(backgrounds)} background colours")


def spread(x0: Any) -> float:
    """Mean distance of the estimates from their mean, relative to their mean norm."""
    x = np.asarray(x0, np.float64).reshape(len(x0), -1)
    return float(np.linalg.norm(x - x.mean(axis=0), axis=1).mean()
                 / np.linalg.norm(x, axis=1).mean())


if __name__ == "__main__":
    main()
