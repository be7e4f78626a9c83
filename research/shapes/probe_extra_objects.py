"""At which sampling step does a two-object prompt's extra (third) object appear?

    python -m research.shapes.probe_extra_objects --model jaxgen/assets/default-model

Runs the ShapesEval two-object prompts (same seeds and noise as `jaxgen eval`) through the
sampling program with a per-step hook that records the guided clean-image estimate of every
step, decodes each estimate and counts its objects with the shapes analyser. Prints, per
step, the share of estimates that already hold three objects, split by what the finished image
holds: where the images that end with three objects first show them, and whether the others
passed through three on the way. Then what the finished three-object images look like: how
many put all three in one row or column (the pair plus the line's third cell) and how many
draw two of them in one colour.
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

    from jaxgen.engine.decode import decode_latents
    from jaxgen.engine.denoise import predicted_clean_latents
    from jaxgen.engine.inputs import ItemInputs, noise_ids
    from jaxgen.engine.sampling import SamplingProgram
    from jaxgen.engine.spec import SamplingSpec
    from jaxgen.eval.shapes_eval import ShapesEval
    from jaxgen.shapes import analyse
    from jaxgen.shapes.scene import position_cell
    from jaxgen.weights.model_dir import load_model
    from jaxgen.weights.tokenizer import tokenize

    model = load_model(args.model)
    side = model.native_size
    program = SamplingProgram.build(model, SamplingSpec(side, side, args.steps, args.sampler))
    prompts = [q for q in ShapesEval(args.prompts).prompts() if q.num_objects == 2]
    n = len(prompts)
    inputs = ItemInputs(tokenize(model.tokenizer, [q.text for q in prompts]),
                        tokenize(model.tokenizer, [""] * n),
                        noise_ids(np.array([q.seed for q in prompts]), np.zeros(n, np.int64)),
                        jnp.full((n,), args.guidance, jnp.float32))

    def record(step, estimates):  # every step's clean-image estimate, decoded after the loop
        x0 = predicted_clean_latents(program.sampler, step)
        return step.next_latents, estimates.at[step.index].set(x0)

    run = jax.jit(lambda p, x, c: program.run(p, x, hook=record, hook_carry=c))
    images, estimates = run(model.params, inputs,
                            jnp.zeros((args.steps, n, *program.latent_shape)))
    decode = jax.jit(lambda p, z: decode_latents(program.vae, p, z, program.scaling_factor))
    counts = [[len(analyse(im).objects) for im in np.asarray(decode(model.params["vae"], x0))]
              for x0 in estimates]  # [steps, prompts]: objects in each step's estimate
    scenes = [analyse(im) for im in np.asarray(images)]
    final = np.array([len(scene.objects) for scene in scenes])
    counts = np.array(counts)
    three, others = final == 3, final != 3
    print(f"{len(prompts)} two-object prompts, guidance {args.guidance}, {args.sampler} "
          f"{args.steps} steps: the finished image holds 3 objects in {three.sum()}")
    print("| step | t | estimates with 3 objects: images ending with 3 | the others |")
    print("|---:|---:|---:|---:|")
    for i in range(args.steps):
        print(f"| {i} | {int(program.sampler.timesteps[i])} | {(counts[i, three] == 3).sum()} / "
              f"{three.sum()} | {(counts[i, others] == 3).sum()} / {others.sum()} |")
    triples = [scene.objects for scene in scenes if len(scene.objects) == 3]
    cells = [[position_cell(o.position) for o in objs] for objs in triples]
    in_line = sum(len({r for r, _ in c}) == 1 or len({c_ for _, c_ in c}) == 1 for c in cells)
    repeated = sum(len({o.colour for o in objs}) < 3 for objs in triples)
    print(f"finished images with 3 objects: {in_line} of {len(triples)} in one row or column, "
          f"{repeated} with two objects of one colour")


if __name__ == "__main__":
    main()
