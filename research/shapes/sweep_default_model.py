"""ShapesEval of a model over guidance scales and step counts (the model card's sweep table).

    python -m research.shapes.sweep_default_model --model jaxgen/assets/default-model \
        --guidance 1 1.5 2 2.5 3 3.5 4 --steps 10 25 50 --out runs/sweep

Runs `jaxgen eval`'s evaluate_model (no FD) once per (guidance at 25 steps) and
(steps at --base-guidance), writes OUT/sweep.json and prints a Markdown table. The prompts are
the tuning set (--prompt-set), not the evaluation's, so settings picked here do not tune the
model to the prompts it is reported on.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    from jaxgen.default_model import RECOMMENDED

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--guidance", type=float, nargs="+",
                   default=[1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0])  # the model card's grid
    p.add_argument("--steps", type=int, nargs="+", default=[10, 25, 50])
    p.add_argument("--base-guidance", type=float, default=RECOMMENDED["guidance"],
                   help="guidance of the steps rows (default: the recommended setting)")
    p.add_argument("--base-steps", type=int, default=RECOMMENDED["steps"])
    p.add_argument("--prompts", type=int, default=256)
    p.add_argument("--prompt-set", default="tuning", help="tuning | eval")
    p.add_argument("--out", type=Path, default=Path("runs/sweep"))
    args = p.parse_args()

    from jaxgen.eval.run import EvalSettings, evaluate_model

    points = sorted({(g, args.base_steps) for g in args.guidance}
                    | {(args.base_guidance, s) for s in args.steps})
    rows = []
    for guidance, steps in points:
        settings = EvalSettings(num_prompts=args.prompts, guidance=guidance, steps=steps,
                                compute_fd=False, prompt_set=args.prompt_set)
        report = evaluate_model(args.model, args.out / f"g{guidance}-s{steps}", settings)
        rows.append(table_row(report))
        print(rows[-1], flush=True)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "sweep.json").write_text(json.dumps(rows, indent=2) + "\n")
    print("\n" + markdown(rows))


ATTRIBUTES = ("shape", "colour", "size", "position", "background")


def table_row(report: dict) -> dict:
    """Joint accuracy per prompt group, and per-attribute accuracy over all prompts."""
    acc = report["accuracy"]
    return {"guidance": report["guidance"], "steps": report["steps"],
            "sampling_s": report["sampling_s"],
            **{f"{g}_joint": acc[g]["joint"] for g in ("single", "two", "all")},
            **{a: acc["all"][a] for a in ATTRIBUTES}}


def markdown(rows: list[dict]) -> str:
    head = ["guidance", "steps", "single joint", "two-object joint", *ATTRIBUTES, "sampling s"]
    keys = ["single_joint", "two_joint", *ATTRIBUTES]
    lines = ["| " + " | ".join(head) + " |", "|" + "---:|" * len(head)]
    for r in rows:
        cells = [str(r["guidance"]), str(r["steps"]), *(f"{r[k]:.3f}" for k in keys),
                 str(r["sampling_s"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
