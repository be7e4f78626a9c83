"""Check the shapes analyser on many rendered scenes: clean, with Gaussian noise, and blurred.

Usage: python -m research.shapes.check_shapes_analyser [--seeds 10000] [--sigma 8] [--blur 1.2]
Prints the exact-recovery rate on clean renders and on noisy renders, the shapes read right on
blurred renders (soft edges, as a VAE decodes them), and the joint score of each scene's own
caption; exits non-zero if any clean scene is misread.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
from scipy import ndimage

from jaxgen.shapes import analyse, canonical, caption, parse_caption, render, sample_scene, score


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10_000)
    parser.add_argument("--sigma", type=float, default=8.0, help="noise std in 0..255 units")
    parser.add_argument("--blur", type=float, default=1.2, help="Gaussian blur std in pixels")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    scenes = [sample_scene(seed) for seed in range(args.seeds)]
    images = [render(scene) for scene in scenes]
    render_s = time.perf_counter() - start

    start = time.perf_counter()
    clean_wrong = [s for s, img in enumerate(images) if analyse(img) != canonical(scenes[s])]
    analyse_s = time.perf_counter() - start

    rng = np.random.default_rng(0)
    noisy_right = 0
    for scene, image in zip(scenes, images, strict=True):
        noisy = image + rng.normal(0.0, args.sigma, size=image.shape)
        noisy_right += analyse(np.clip(np.rint(noisy), 0, 255).astype(np.uint8)) == canonical(scene)

    blurred_shapes_right = 0
    for scene, image in zip(scenes, images, strict=True):
        blurred = ndimage.gaussian_filter(image.astype(np.float32), (args.blur, args.blur, 0),
                                          mode="nearest")
        found = analyse(np.clip(np.rint(blurred), 0, 255).astype(np.uint8))
        blurred_shapes_right += sorted(o.shape for o in found.objects) == sorted(
            o.shape for o in scene.objects)

    joint = sum(
        bool(score(parse_caption(caption(scene, seed)), analyse(image))["joint"])
        for seed, (scene, image) in enumerate(zip(scenes, images, strict=True))
    )

    n = args.seeds
    print(f"sample+render {n} scenes: {render_s:.2f} s; analyse: {analyse_s:.2f} s")
    print(
        f"clean exact: {n - len(clean_wrong)}/{n}"
        + (f" (wrong seeds {clean_wrong[:10]})" * bool(clean_wrong))
    )
    print(f"noisy (sigma {args.sigma:g}/255) exact: {noisy_right}/{n} = {noisy_right / n:.4f}")
    print(f"blurred ({args.blur:g} px) shapes right: {blurred_shapes_right}/{n} = "
          f"{blurred_shapes_right / n:.4f}")
    print(f"own-caption joint score: {joint}/{n}")
    return 1 if clean_wrong else 0


if __name__ == "__main__":
    sys.exit(main())
