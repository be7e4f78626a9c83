"""Do models follow phrasings that neither training nor the evaluation ever wrote?

    python -m research.shapes.probe_new_wordings --model jaxgen/assets/default-model \\
        [--model OTHER ...]

The evaluation's held-out wordings are two templates. These are seven more, written by hand
for this probe (2026-11-24) and used nowhere else: not in training, not in the wording
stage's variations (jaxgen.train.wording), not in choosing anything. They reorder the
clauses, move the background first or last, and name it as "the background is". Scenes come
from their own seed range. Each prompt is kept only if its own rendered scene scores
joint-correct under the parser and analyser, as in ShapesEval; then every model draws each
prompt from the same seed, and the joint accuracy is reported per template and per group.
Guidance and steps are the recommended ones.
"""

from __future__ import annotations

import argparse

import numpy as np

SINGLE = (
    "the background is {bg}; {pos_in} there is a {size} {colour} {shape}",
    "there is a {size} {colour} {shape} {pos_at} with a {bg} background",
    "{pos_at}, a {size} {colour} {shape}; {bg} background",
    "on a {bg} background {pos_in} is a {size} {colour} {shape}",
)
PAIR = (
    "the background is {bg}; a {o1} is {rel} a {o2}",
    "there is a {o1} {rel} a {o2} on a {bg} background",
    "{bg} background; {o1} {rel} {o2}",
)
SEED_START = 6_000_000_000  # past the evaluation (2e9), FD (3e9) and tuning (4e9) ranges


def probe_prompts(n: int):
    from jaxgen.eval.shapes_eval import EvalPrompt
    from jaxgen.shapes import analyse, parse_caption, render, sample_scene, score
    from jaxgen.shapes.captions import (
        INVERSE_RELATION,
        POSITION_AT,
        POSITION_IN,
        RELATION_PHRASES,
        SIZE_WORDS,
        fix_articles,
    )

    prompts, seed = [], SEED_START
    while len(prompts) < n:
        k = 1 + len(prompts) % 2
        templates = SINGLE if k == 1 else PAIR
        template = (len(prompts) // 2) % len(templates)
        scene = sample_scene(seed, num_objects=k)
        rng = np.random.default_rng([seed, 0x70726F62])  # "prob"
        size = lambda o, rng=rng: SIZE_WORDS[o.size][int(rng.integers(2))]  # noqa: E731
        if k == 1:
            (o,) = scene.objects
            fields = dict(size=size(o), colour=o.colour, shape=o.shape, bg=scene.background,
                          pos_at=POSITION_AT[o.position], pos_in=POSITION_IN[o.position])
        else:
            first, second, rel = *scene.objects, scene.relation
            if rng.random() < 0.5:
                first, second, rel = second, first, INVERSE_RELATION[rel]
            phrases = RELATION_PHRASES[rel]
            fields = dict(o1=f"{size(first)} {first.colour} {first.shape}",
                          o2=f"{size(second)} {second.colour} {second.shape}",
                          rel=phrases[int(rng.integers(len(phrases)))], bg=scene.background)
        text = fix_articles(templates[template].format(**fields))
        if score(parse_caption(text), analyse(render(scene)))["joint"]:
            prompts.append(EvalPrompt(seed, text, k, template, True))
        seed += 1
    return prompts


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="model dir (repeatable)")
    p.add_argument("--prompts", type=int, default=224, help="one- and two-object alternating")
    args = p.parse_args()

    from jaxgen.default_model import RECOMMENDED
    from jaxgen.eval.shapes_eval import model_generator
    from jaxgen.shapes import analyse, parse_caption, score
    from jaxgen.weights.model_dir import load_model

    prompts = probe_prompts(args.prompts)
    texts, seeds = [q.text for q in prompts], np.array([q.seed for q in prompts], np.int64)
    print(f"{len(prompts)} prompts in {len(SINGLE)} + {len(PAIR)} new templates, e.g.:")
    for q in prompts[:2 * len(SINGLE)]:
        print(f"  {q.text}")
    for model_dir in args.model:
        generate = model_generator(load_model(model_dir), guidance=RECOMMENDED["guidance"],
                                   steps=RECOMMENDED["steps"])
        images = generate(texts, seeds)
        joint = np.array([score(parse_caption(q.text), analyse(img))["joint"]
                          for q, img in zip(prompts, images, strict=True)], bool)
        print(f"\n{model_dir}:")
        for k, templates in ((1, SINGLE), (2, PAIR)):
            group = np.array([q.num_objects == k for q in prompts])
            cells = [f"{joint[group].mean():.3f} (n={group.sum()})"]
            for t in range(len(templates)):
                chosen = group & np.array([q.template == t for q in prompts])
                cells.append(f"t{t} {joint[chosen].mean():.2f}")
            print(f"  {'one' if k == 1 else 'two'}-object joint {' '.join(cells)}")
        print(f"  all joint {joint.mean():.3f}")


if __name__ == "__main__":
    main()
