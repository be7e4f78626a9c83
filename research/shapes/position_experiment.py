"""Train stage 2 from scratch on a restricted family of scenes; watch whether position is learned.

    python -m research.shapes.position_experiment --family one-object --steps 600 --zero-outputs

A small lab for the default model's position failure (docs/shapes-lab-notebook.md, "Where
position fails"). It trains a fresh text encoder + UNet with the shipped model's configs and
frozen VAE, on timesteps in [--t-min, 999] only (the first sampling steps, where the layout is
decided), and every --every steps prints:

- the loss and the gradient norms of the UNet and of the text encoder (is the caption used?);
- the hit rate of the clean-image estimate at t = 999 for "a large <colour> square <position>
  on a white background" (9 positions x 4 colours, one noise each; chance 4/36), conditional,
  no guidance;
- its relative spread over the 9 positions and over 9 object colours, with one shared noise.

Families: `position` (a large red square on white; only the position varies), `position-colour`
(its colour varies too), `one-object` (every attribute of one object and the background
varies), `all` (the training distribution, one or two objects), `relation` (a large red and a
large blue square on white in one row or column; only the relation and which is named first
vary, so the layout comes from "left of" / "above" alone). For `relation` the probe asks
"a large <a> square <relation> a large <b> square on a white background" (4 relations x 2
colour orders x 4 noises): a hit when the estimate's red and blue centroids lie in the asked
orientation and order (chance about 1/4). Only the single-object
templates given by --templates are used for one-object scenes (`all` uses the training ones).
Each step's batch is a function of the step, as in `jaxgen train`. With --init-from-model it
fine-tunes the model's own text encoder + UNet instead (how stage 3, layout, was chosen):

    python -m research.shapes.position_experiment --init-from-model --family all --t-min 950 \
        --lr 3e-4 --steps 1000
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from research.shapes.probe_position import spread

FAMILIES = ("position", "position-colour", "one-object", "all", "relation")
PROBE_COLOURS = ("red", "blue", "green", "black")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--family", choices=FAMILIES, default="one-object")
    p.add_argument("--templates", default="0,1,2,3,5", help="single-object template indices")
    p.add_argument("--steps", type=int, default=600)
    p.add_argument("--every", type=int, default=100)
    p.add_argument("--t-min", type=int, default=900)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--zero-outputs", action="store_true",
                   help="Latent Diffusion's init (configs' init.zero_outputs)")
    p.add_argument("--qk-lr-scale", type=float, default=1.0,
                   help="learning-rate multiplier for the cross-attention to_q/to_k")
    p.add_argument("--model", default=None, help="VAE, tokenizer and configs (default model)")
    p.add_argument("--init-from-model", action="store_true",
                   help="fine-tune the model's own UNet and text encoder instead of a fresh init")
    args = p.parse_args()

    import jax
    import jax.numpy as jnp
    import optax

    from jaxgen.default_model import default_model_path
    from jaxgen.models import AutoencoderKL, CLIPTextModel, UNet2DConditionModel
    from jaxgen.schedulers import SchedulerConfig
    from jaxgen.schedulers.tables import alphas_cumprod, predict_x0
    from jaxgen.shapes import (
        COLOURS,
        POSITIONS,
        Scene,
        ShapeObject,
        caption,
        render,
        sample_scene,
    )
    from jaxgen.shapes.captions import POSITION_AT
    from jaxgen.shapes.scene import RELATIONS, pair_positions
    from jaxgen.shapes.split import ShapesData
    from jaxgen.train.data import shapes_batch
    from jaxgen.train.diffusion import diffusion_targets, init_denoiser
    from jaxgen.weights.model_dir import load_model
    from jaxgen.weights.tokenizer import tokenize

    model = load_model(args.model or default_model_path())
    unet, text = UNet2DConditionModel(model.unet), CLIPTextModel(model.text_encoder)
    vae, vae_params, scale = AutoencoderKL(model.vae), model.params["vae"], model.vae.scaling_factor
    acp = jnp.asarray(alphas_cumprod(SchedulerConfig.from_dict(model.scheduler_config)))
    prediction = model.scheduler_config["prediction_type"]
    templates = [int(t) for t in args.templates.split(",")]
    colours = [c for c in COLOURS if c != "white"]
    data = ShapesData(caption_dropout=0.0)

    def batch(step: int) -> tuple[np.ndarray, np.ndarray]:
        if args.family == "all":
            b = shapes_batch(data, step, args.batch_size, model.tokenizer)
            return b["images"], b["input_ids"]
        rng = np.random.default_rng([step, 0x706F73])
        scenes = []
        for _ in range(args.batch_size):
            if args.family == "relation":
                scenes.append(relation_scene(rng))
                continue
            if args.family == "one-object":
                scenes.append(sample_scene(int(rng.integers(2**31)), num_objects=1))
                continue
            colour = "red" if args.family == "position" else colours[rng.integers(len(colours))]
            obj = ShapeObject("square", colour, "large", POSITIONS[rng.integers(len(POSITIONS))])
            scenes.append(Scene("white", (obj,), None))
        pair_templates = data.train_templates(2)
        captions = [caption(s, rng, template=(
            pair_templates[rng.integers(len(pair_templates))] if len(s.objects) == 2
            else templates[rng.integers(len(templates))])) for s in scenes]
        images = np.stack([render(s) for s in scenes]).astype(np.float32) / 127.5 - 1.0
        return images, tokenize(model.tokenizer, captions)

    def relation_scene(rng: np.random.Generator) -> Scene:
        """Red and blue large squares on white, placed as sample_scene places a pair."""
        relation = RELATIONS[rng.integers(len(RELATIONS))]
        first = ("red", "blue")[rng.integers(2)]
        second = "blue" if first == "red" else "red"
        cells = pair_positions(rng, relation)
        return Scene("white", (ShapeObject("square", first, "large", cells[0]),
                               ShapeObject("square", second, "large", cells[1])), relation)

    if args.init_from_model:
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float32),
                              {"unet": model.params["unet"],
                               "text_encoder": model.params["text_encoder"]})
    else:
        params = init_denoiser(unet, text, 0, model.unet.sample_size, args.zero_outputs)
    schedule = optax.warmup_cosine_decay_schedule(0.0, args.lr, 50, max(args.steps, 100))

    def group(path, _) -> str:
        keys = [str(getattr(k, "key", k)) for k in path]
        return "qk" if "attn2" in keys and keys[-2] in ("to_q", "to_k") else "rest"

    optimiser = optax.chain(optax.clip_by_global_norm(1.0), optax.multi_transform(
        {"rest": optax.adamw(schedule, weight_decay=0.01),
         "qk": optax.adamw(lambda s: schedule(s) * args.qk_lr_scale, weight_decay=0.01)},
        jax.tree_util.tree_map_with_path(group, params)))
    opt_state = optimiser.init(params)

    def loss_fn(params, images, ids, key):
        k_t, k_noise = jax.random.split(key)
        mean, _ = vae.apply({"params": vae_params}, images, method=vae.encode)
        x0 = mean * scale
        t = jax.random.randint(k_t, (x0.shape[0],), args.t_min, 1000)
        noise = jax.random.normal(k_noise, x0.shape)
        alpha = jnp.sqrt(acp[t])[:, None, None, None]
        sigma = jnp.sqrt(1 - acp[t])[:, None, None, None]
        context, _ = text.apply({"params": params["text_encoder"]}, ids)
        out = unet.apply({"params": params["unet"]}, alpha * x0 + sigma * noise, t, context)
        return jnp.mean((out - diffusion_targets(prediction, x0, noise, alpha, sigma)) ** 2)

    @jax.jit
    def train_step(params, opt_state, images, ids, key):
        loss, grads = jax.value_and_grad(loss_fn)(params, images, ids, key)
        norms = {k: optax.global_norm(g) for k, g in grads.items()}
        updates, opt_state = optimiser.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss, norms

    @jax.jit
    def x0_at_999(params, ids, noise):
        context, _ = text.apply({"params": params["text_encoder"]}, ids)
        out = unet.apply({"params": params["unet"]}, noise, jnp.full((ids.shape[0],), 999), context)
        return predict_x0(prediction, out, noise, jnp.sqrt(acp[999]), jnp.sqrt(1 - acp[999]))

    probe_ids = tokenize(model.tokenizer, [
        f"a large {c} square {POSITION_AT[pos]} on a white background"
        for c in PROBE_COLOURS for pos in POSITIONS])
    colour_ids = tokenize(model.tokenizer, [
        f"a large {c} square in the center on a white background" for c in colours[:9]])
    side = model.unet.sample_size
    noises = jax.random.normal(jax.random.key(99), (len(probe_ids), side, side, 4))
    one = jnp.broadcast_to(noises[:1], (9, side, side, 4))

    relation_probes = [(rel, first) for rel in RELATIONS for first in ("red", "blue")] * 4
    relation_ids = tokenize(model.tokenizer, [
        f"a large {first} square {rel} a large {'blue' if first == 'red' else 'red'} square "
        f"on a white background" for rel, first in relation_probes])
    relation_noises = jax.random.normal(jax.random.key(98), (len(relation_ids), side, side, 4))

    def relation_probe(params) -> str:
        x0 = x0_at_999(params, relation_ids, relation_noises)
        images = np.asarray(vae.apply({"params": vae_params}, x0 / scale, method=vae.decode))
        hits = 0
        for image, (rel, first) in zip(images, relation_probes, strict=True):
            # Weight pixels by red-minus-blue contrast (zero on white): the estimate at t = 999
            # is a faint average over layouts, nowhere near either colour itself.
            contrast = image[..., 0] - image[..., 2]
            centroids = {}
            for name, w in (("red", np.clip(contrast, 0, None)),
                            ("blue", np.clip(-contrast, 0, None))):
                ys, xs = np.indices(w.shape)
                centroids[name] = (np.array([(w * ys).sum(), (w * xs).sum()])
                                   / max(w.sum(), 1e-6))
            dy, dx = centroids[first] - centroids["blue" if first == "red" else "red"]
            hits += {"left of": dx < -abs(dy), "right of": dx > abs(dy),
                     "above": dy < -abs(dx), "below": dy > abs(dx)}[rel]
        return f"relation probe {hits}/{len(relation_probes)}"

    def probe(params) -> str:
        if args.family == "relation":
            return relation_probe(params)
        x0 = x0_at_999(params, probe_ids, noises)
        images = np.asarray(vae.apply({"params": vae_params}, x0 / scale, method=vae.decode))
        mass = np.linalg.norm(images - 1.0, axis=-1)  # distance from the white background
        cell = images.shape[1] // 3
        hits = sum(int(np.argmax([m[r * cell:(r + 1) * cell, c * cell:(c + 1) * cell].sum()
                                  for r in range(3) for c in range(3)]) == i % 9)
                   for i, m in enumerate(mass))
        by_position = x0_at_999(params, probe_ids[:9], one)
        by_colour = x0_at_999(params, colour_ids, one)
        return (f"probe {hits}/{len(probe_ids)} | spread: positions {spread(by_position):.3f} "
                f"colours {spread(by_colour):.3f}")

    start = time.time()
    for step in range(args.steps):
        images, ids = batch(step)
        params, opt_state, loss, norms = train_step(params, opt_state, images, ids,
                                                    jax.random.key(step))
        if (step + 1) % args.every == 0 or step + 1 == args.steps:
            print(f"step {step + 1} loss {float(loss):.4f} grad norm: unet "
                  f"{float(norms['unet']):.3f} text {float(norms['text_encoder']):.4f} | "
                  f"{probe(params)} | {time.time() - start:.0f} s", flush=True)


if __name__ == "__main__":
    main()
