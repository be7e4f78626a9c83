"""Recall in `jaxgen eval`: generate the under-specified prompt families, read every image back,
and report per family what the free attributes did; or do the same for a generated dataset.

A model's recall report sits beside its precision (ShapesEval) in report.json under "recall",
with a contact sheet of seed rows: a few under-specified prompts, each drawn from several seeds,
so copies (one scene whatever the seed) are seen at a glance.
"""

from __future__ import annotations

import io
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from jaxgen.eval.recall import (
    OBJECT_ATTRIBUTES,
    omission_patterns,
    read_back,
    recall,
    recall_by_family,
    recall_prompts,
)
from jaxgen.eval.shapes_eval import Generate, contact_sheet
from jaxgen.shapes import parse_caption

# The seed rows' prompts: the under-specified kinds a user meets first (the issue's examples),
# from one attribute left out to everything.
SEED_ROW_PATTERNS: tuple[tuple[int | None, frozenset[str]], ...] = (
    (1, frozenset({"size", "position"})),
    (1, frozenset({"colour", "size", "position"})),
    (1, frozenset({"shape", "colour", "size", "position"})),
    (2, frozenset({"relation", "size"})),
    (None, frozenset({"count", "relation", *OBJECT_ATTRIBUTES})),
    (None, frozenset({"count", "background", "relation", *OBJECT_ATTRIBUTES})),
)
SEEDS_PER_ROW = 8
SEED_ROW_SEED_START = 6_000_000_000  # apart from the recall prompts' own seeds


def recall_of_pairs(pairs: list, not_read: int = 0) -> dict[str, Any]:
    """The report.json "recall" entry of (parsed prompt, read-back scene) pairs."""
    return {
        "images": len(pairs),
        "not_read": not_read,
        "overall": recall(pairs).to_dict() if pairs else None,
        "families": {name: r.to_dict() for name, r in recall_by_family(pairs).items()},
    }


def evaluate_recall(generate: Generate, per_pattern: int, out_dir: Path, *,
                    empty_prompt: bool) -> dict[str, Any]:
    """Generate `per_pattern` prompts of every omission pattern, read back, report by family;
    write recall_sheet.png (seed rows). `empty_prompt`: whether the model takes an empty prompt
    (one trained with caption dropout); if not, the empty-prompt family is left out and the
    report says so."""
    patterns = [p for p in omission_patterns() if empty_prompt or not _is_empty(p)]
    families = recall_prompts(per_pattern, patterns)
    prompts = [p for members in families.values() for p in members]
    images = generate([p.text for p in prompts], np.array([p.seed for p in prompts], np.int64))
    result = recall_of_pairs(read_back([p.text for p in prompts], images))
    result["per_pattern"] = per_pattern
    if not empty_prompt:
        result["left_out"] = "the empty prompt: this model needs a prompt"
    result["seed_rows"] = str(_seed_rows(generate, out_dir / "recall_sheet.png", empty_prompt))
    return result


def _is_empty(pattern: tuple[int | None, frozenset[str]]) -> bool:
    return pattern[0] is None and "background" in pattern[1]


def _seed_rows(generate: Generate, path: Path, empty_prompt: bool) -> Path:
    rows = [p for p in SEED_ROW_PATTERNS if empty_prompt or not _is_empty(p)]
    texts = [members[0].text for members in recall_prompts(1, rows).values()]
    seeds = SEED_ROW_SEED_START + np.arange(SEEDS_PER_ROW, dtype=np.int64)
    all_texts = [t for t in texts for _ in seeds]
    images = generate(all_texts, np.tile(seeds, len(texts)))
    captions = [repr(t) if j == 0 else f"seed +{j}" for t in texts for j in range(len(seeds))]
    return contact_sheet(np.asarray(images), None, path, columns=SEEDS_PER_ROW,
                         captions=captions)


def dataset_recall(records: Iterable[tuple[dict, bytes]]) -> dict[str, Any]:
    """Recall and precision of a generated dataset: every image whose prompt the caption parser
    reads is read back; the others are counted as not read."""
    from PIL import Image

    pairs, not_read = [], 0
    for record, data in records:
        prompt = record.get("prompt")
        try:
            if not isinstance(prompt, str):
                raise ValueError("no prompt")
            parse_caption(prompt)
        except ValueError:
            not_read += 1
            continue
        with Image.open(io.BytesIO(data)) as image:
            pixels = np.asarray(image.convert("RGB"))
        pairs += read_back([prompt], [pixels])
    return recall_of_pairs(pairs, not_read)


def recall_summary(result: dict[str, Any]) -> str:
    """Per family: images, mean normalised entropy of the free attributes, distinct scenes."""
    lines = [f"recall: {result['images']} images"
             + (f", {result['not_read']} with prompts the caption parser cannot read"
                if result.get("not_read") else "")]
    overall = result.get("overall")
    if overall and overall["mean_normalised_entropy"] is not None:
        lines.append(f"  all: mean normalised entropy {overall['mean_normalised_entropy']:.3f}, "
                     f"distinct scenes {overall['distinct_scenes']:.1f}")
    for name, family in result["families"].items():
        entropy = family["mean_normalised_entropy"]
        shown = "-" if entropy is None else f"{entropy:.3f}"
        lines.append(f"  {name}: n={family['prompts']} H/Hmax={shown} "
                     f"distinct={family['distinct_scenes']:.1f}")
    if result.get("left_out"):
        lines.append(f"  left out: {result['left_out']}")
    return "\n".join(lines)
