"""ShapesEval of a model over guidance scales and step counts (the model card's sweep table).

    python scripts/sweep_default_model.py --model jaxgen/assets/default-model \
        --guidance 1 2 4 7.5 --steps 10 25 50 --prompts 128 --out runs/sweep

Runs `jaxgen eval`'s evaluate_model (no FD) once per (guidance at 25 steps) and
(steps at --base-guidance), writes OUT/sweep.json and prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--guidance", type=float, nargs="+", default=[1.0, 2.0, 4.0, 7.5])
    p.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--base-guidance", type=float, default=4.0)
    p.add_argument("--base-steps", type=int, default=25)
    p.add_argument("--prompts", type=int, default=128)
    p.add_argument("--out", type=Path, default=Path("runs/sweep"))
    args = p.parse_args()

    from jaxgen.eval.run import EvalSettings, evaluate_model

    points = sorted({(g, args.base_steps) for g in args.guidance}
                    | {(args.base_guidance, s) for s in args.steps})
    rows = []
    for guidance, steps in points:
        settings = EvalSettings(num_prompts=args.prompts, guidance=guidance, steps=steps,
                                compute_fd=False)
        report = evaluate_model(args.model, args.out / f"g{guidance}-s{steps}", settings)
        acc = report["accuracy"]
        rows.append({"guidance": guidance, "steps": steps, "sampling_s": report["sampling_s"],
                     **{f"{g}_joint": acc[g]["joint"] for g in ("all", "single", "two")}})
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n| guidance | steps | single joint | two-object joint | all joint | sampling s |\n"
          "|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['guidance']} | {r['steps']} | {r['single_joint']:.3f} | "
              f"{r['two_joint']:.3f} | {r['all_joint']:.3f} | {r['sampling_s']} |")


if __name__ == "__main__":
    main()
