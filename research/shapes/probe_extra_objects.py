"""At which sampling step does a two-object prompt's extra (third) object appear?

    python -m research.shapes.probe_extra_objects --model jaxgen/assets/default-model

Runs the ShapesEval two-object prompts (same seeds and noise as `jaxgen eval`) through the
sampler one step at a time, decodes the guided clean-image estimate of every step, and counts
its objects with the shapes analyser. Prints, per step, the share of estimates that already
hold three objects, split by what the finished image holds: where the images that end with
three objects first show them, and whether the others passed through three on the way. Then
what the finished three-object images look like: how many put all three in one row or column
(the pair plus the line's third cell) and how many draw two of them in one colour.
"""

from __future__ import annotations

import argparse

import numpy as np


def main() -> None:
    from jaxgen.default_model import EVAL_PROMPTS, RECOMMENDED

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--prompts", type=int, default=EVAL_PROMPTS,
                   help="ShapesEval prompts to draw the two-object ones from")
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    p.add_argument("--steps", type=int, default=RECOMMENDED["steps"])
    p.add_argument("--sampler", default=RECOMMENDED["sampler"])
    args = p.parse_args()

    import jax
    import jax.numpy as jnp

    from jaxgen.engine.denoise import initial_noise
    from jaxgen.engine.inputs import noise_ids
    from jaxgen.eval.shapes_eval import ShapesEval
    from jaxgen.schedulers import SchedulerConfig, make_sampler
    from jaxgen.schedulers.tables import alphas_cumprod, predict_x0
    from jaxgen.shapes import analyse
    from jaxgen.shapes.scene import position_cell
    from jaxgen.weights.model_dir import load_model
    from jaxgen.weights.tokenizer import tokenize

    model = load_model(args.model)
    unet, vae, text = model.modules()
    params = model.params
    schedule = SchedulerConfig.from_dict(model.scheduler_config)
    sampler = make_sampler(args.sampler, schedule, args.steps)
    if sampler.needs_noise:
        raise SystemExit(f"--sampler {args.sampler}: pick a deterministic sampler")
    acp = jnp.asarray(alphas_cumprod(schedule), jnp.float32)
    prompts = [q for q in ShapesEval(args.prompts).prompts() if q.num_objects == 2]
    side = model.native_size // model.latent_factor
    ids = noise_ids(np.array([q.seed for q in prompts]), np.zeros(len(prompts), np.int64))
    x = jnp.asarray(initial_noise(ids, (side, side, model.vae.latent_channels)))
    x = x * sampler.init_noise_sigma
    context, _ = text.apply({"params": params["text_encoder"]}, tokenize(
        model.tokenizer, [""] * len(prompts) + [q.text for q in prompts]))

    @jax.jit
    def step(x, state, i):
        t = sampler.timesteps[i]
        x_in = sampler.scale_model_input(x, i)
        out = unet.apply({"params": params["unet"]}, jnp.concatenate([x_in, x_in]),
                         jnp.full((2 * x.shape[0],), t), context)
        uncond, cond = jnp.split(out, 2)
        guided = uncond + args.guidance * (cond - uncond)
        a = acp[t.astype(jnp.int32)]
        x0 = predict_x0(schedule.prediction_type, guided, x, jnp.sqrt(a), jnp.sqrt(1 - a))
        x, state = sampler.step(state, i, guided, x)
        return x, state, x0

    decode = jax.jit(lambda z: jnp.round(jnp.clip(vae.apply(
        {"params": params["vae"]}, z / model.vae.scaling_factor, method=vae.decode) / 2 + 0.5,
        0, 1) * 255).astype(jnp.uint8))
    state = sampler.init_state(x)
    counts = []  # [steps, prompts]: objects in each step's clean-image estimate
    for i in range(args.steps):
        x, state, x0 = step(x, state, i)
        counts.append([len(analyse(im).objects) for im in np.asarray(decode(x0))])
    scenes = [analyse(im) for im in np.asarray(decode(x))]
    final = np.array([len(scene.objects) for scene in scenes])
    counts = np.array(counts)
    three, others = final == 3, final != 3
    print(f"{len(prompts)} two-object prompts, guidance {args.guidance}, {args.sampler} "
          f"{args.steps} steps: the finished image holds 3 objects in {three.sum()}")
    print("| step | t | estimates with 3 objects: images ending with 3 | the others |")
    print("|---:|---:|---:|---:|")
    for i in range(args.steps):
        print(f"| {i} | {int(sampler.timesteps[i])} | {(counts[i, three] == 3).sum()} / "
              f"{three.sum()} | {(counts[i, others] == 3).sum()} / {others.sum()} |")
    triples = [scene.objects for scene in scenes if len(scene.objects) == 3]
    cells = [[position_cell(o.position) for o in objs] for objs in triples]
    in_line = sum(len({r for r, _ in c}) == 1 or len({c_ for _, c_ in c}) == 1 for c in cells)
    repeated = sum(len({o.colour for o in objs}) < 3 for objs in triples)
    print(f"finished images with 3 objects: {in_line} of {len(triples)} in one row or column, "
          f"{repeated} with two objects of one colour")


if __name__ == "__main__":
    main()
