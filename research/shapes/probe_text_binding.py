"""Does a shapes model's text encoder say which colour is on the left (or top) of a pair?

    python -m research.shapes.probe_text_binding --model jaxgen/assets/default-model

"a red circle right of a blue square" puts blue on the left: the colour of the left/top object
depends on the relation word and on which object is named first together (binding). This
reads the text encoder's output for 6000 two-object training captions and fits a ridge
readout on 5000 of them, then scores the other 1000, for three targets: the left/top
object's colour, the right/bottom one's, and the orientation (row or column). Three inputs:
the pooled (EOS) state, the mean over tokens, and all 40 token states side by side. An
encoder that knows both colours but not their order reads the left colour about half the
time; chance is 1/9. `--fresh` probes a freshly initialised encoder of the same config, the
baseline for what the architecture gives before any training.
"""

from __future__ import annotations

import argparse

import numpy as np


def ridge_accuracy(features: np.ndarray, labels: np.ndarray, train: int) -> float:
    """Held-out accuracy of a one-vs-rest ridge readout (l2 = 1) fitted on the first `train`."""
    x = np.concatenate([features, np.ones((len(features), 1))], axis=1)
    y = np.eye(labels.max() + 1)[labels]
    w = np.linalg.solve(x[:train].T @ x[:train] + np.eye(x.shape[1]), x[:train].T @ y[:train])
    return float((np.argmax(x[train:] @ w, axis=1) == labels[train:]).mean())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--fresh", action="store_true", help="a fresh encoder of the model's config")
    p.add_argument("--captions", type=int, default=6000)
    args = p.parse_args()

    import jax
    import jax.numpy as jnp

    from jaxgen.models import CLIPTextModel
    from jaxgen.models.init import init_params
    from jaxgen.shapes import caption, sample_scene
    from jaxgen.shapes.scene import COLOURS, canonical
    from jaxgen.shapes.split import ShapesData
    from jaxgen.weights.model_dir import load_model
    from jaxgen.weights.tokenizer import tokenize

    model = load_model(args.model)
    text = CLIPTextModel(model.text_encoder)
    params = model.params["text_encoder"]
    if args.fresh:
        params = init_params(text, jnp.zeros((1, model.text_encoder.max_position_embeddings),
                                             jnp.int32), seed=1)
    templates = ShapesData().train_templates(2)
    rng = np.random.default_rng(0)
    captions, labels = [], []
    for i in range(args.captions):
        scene = sample_scene(10_000_000 + i, num_objects=2)  # beyond the training seeds' start
        captions.append(caption(scene, rng, template=templates[rng.integers(len(templates))]))
        left_or_top, other = canonical(scene).objects
        labels.append((COLOURS.index(left_or_top.colour), COLOURS.index(other.colour),
                       int(scene.relation in ("above", "below"))))
    labels = np.array(labels)
    encode = jax.jit(lambda ids: text.apply({"params": params}, ids))
    states, pooled = [], []
    ids = tokenize(model.tokenizer, captions)
    for i in range(0, len(ids), 500):
        s, q = encode(jnp.asarray(ids[i:i + 500]))
        states.append(np.asarray(s))
        pooled.append(np.asarray(q))
    states, pooled = np.concatenate(states), np.concatenate(pooled)
    train = len(captions) * 5 // 6
    print(f"{'input':<16} {'left/top colour':>16} {'right/bottom colour':>20} {'orientation':>12}")
    for name, x in (("pooled (EOS)", pooled), ("mean of tokens", states.mean(axis=1)),
                    ("all tokens", states.reshape(len(states), -1))):
        scores = [ridge_accuracy(x, labels[:, k], train) for k in range(3)]
        print(f"{name:<16} {scores[0]:>16.3f} {scores[1]:>20.3f} {scores[2]:>12.3f}")


if __name__ == "__main__":
    main()
