"""The diversity targets of the free stage, read from `jaxgen eval` reports.

    python -m research.shapes.free_stage_summary --model-report runs/eval-free/report.json \
        --empty-report runs/eval-empty-free/report.json

--model-report: `jaxgen eval --recall N` on a model (precision on held-out prompts, recall
families). --empty-report: `jaxgen eval --dataset OUT` on a `jaxgen generate` output of empty
prompts. Prints each target's figure; nothing is computed here that the reports do not hold
except sums over families weighted by their prompt counts.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def _weighted(families: dict, keep, attribute: str) -> tuple[float, int]:
    """The prompt-weighted mean of precision[attribute] over the families `keep` selects."""
    total = n = 0
    for name, family in families.items():
        if keep(name) and attribute in family["precision"]:
            total += family["precision"][attribute] * family["prompts"]
            n += family["prompts"]
    return (total / n if n else float("nan")), n


def model_lines(report: dict) -> list[str]:
    lines = []
    if "accuracy" in report and report.get("num_prompts", 0) > 2:
        acc = report["accuracy"]
        lines.append(f"fully specified prompts ({report['num_prompts']} held-out): joint "
                     f"one-object {acc['single']['joint']:.3f}, two-object "
                     f"{acc['two']['joint']:.3f}")
    recall = report["recall"]
    overall = recall["overall"]
    lines.append(f"recall: {recall['images']} images, {recall['per_pattern']} per pattern; mean "
                 f"normalised entropy of free attributes (pooled) "
                 f"{overall['mean_normalised_entropy']:.3f}; distinct scenes "
                 f"{overall['distinct_scenes']:.1f}")
    for attribute, a in overall["attributes"].items():
        lines.append(f"  {attribute}: H/Hmax {a['normalised_entropy']:.3f}, largest gap "
                     f"{100 * a['largest_gap']:.1f} pts, read back outside the domain "
                     f"{a['outside']}")
    families = recall["families"]
    entropies = [f["mean_normalised_entropy"] for f in families.values()
                 if f["mean_normalised_entropy"] is not None]
    lines.append(f"  mean over {len(entropies)} families of their mean normalised entropy: "
                 f"{sum(entropies) / len(entropies):.3f} (small families read low: n per family "
                 f"= {recall['per_pattern']})")
    for label, keep in (("one-object", lambda name: name.startswith("1 object")),
                        ("two-object", lambda name: name.startswith("2 objects"))):
        joint, n = _weighted(families, keep, "joint")
        lines.append(f"  stated attributes right, {label} under-specified prompts: {joint:.3f} "
                     f"(n={n})")
    return lines


def empty_lines(report: dict) -> list[str]:
    recall = report["recall"]
    overall = recall["overall"]
    lines = [f"empty prompt: {recall['images']} images; coverage "
             + ", ".join(f"{k} {v:.3f}" for k, v in overall["coverage"].items())
             + f"; distinct scenes {overall['distinct_scenes']:.1f}"]
    for attribute in ("count", "size", "position", "shape", "colour", "background"):
        a = overall["attributes"].get(attribute)
        if a:
            lines.append(f"  {attribute}: largest gap from the domain "
                         f"{100 * a['largest_gap']:.1f} pts, H/Hmax "
                         f"{a['normalised_entropy']:.3f}, outside {a['outside']}")
    return lines


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model-report", type=Path)
    p.add_argument("--empty-report", type=Path)
    args = p.parse_args(argv)
    if args.model_report:
        print("\n".join(model_lines(json.loads(args.model_report.read_text()))))
    if args.empty_report:
        print("\n".join(empty_lines(json.loads(args.empty_report.read_text()))))


if __name__ == "__main__":
    main()
