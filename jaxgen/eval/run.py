"""`jaxgen eval`: ShapesEval and FD for a model directory -> report.json + contact_sheet.png.

The prompts are a held-out set (scored in full), or the user's own from a file (scored where
the caption parser reads them; see read_prompts).

The same prompts, seeds and analyser score either engine: jaxgen's own sampler, or diffusers'
StableDiffusionPipeline on the same directory with the matching scheduler, through the peer
`jaxgen compare` runs (jaxgen.eval.diffusers_peer; needs the `test` extra's torch).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from jaxgen.default_model import EVAL_PROMPTS, RECALL_PER_PATTERN, RECOMMENDED
from jaxgen.eval.recall_run import dataset_recall, evaluate_recall, recall_summary
from jaxgen.eval.shapes_eval import (
    PROMPT_SETS,
    Generate,
    PromptResult,
    ShapesEval,
    contact_sheet,
    model_generator,
    score_prompts,
)
from jaxgen.requests import stable_seed
from jaxgen.shapes.split import ShapesData

ENGINES = ("jaxgen", "diffusers")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    num_prompts: int = EVAL_PROMPTS
    guidance: float = RECOMMENDED["guidance"]
    steps: int = RECOMMENDED["steps"]
    sampler: str = RECOMMENDED["sampler"]  # jaxgen's name; the diffusers engine its scheduler
    engine: str = "jaxgen"
    compute_fd: bool = True  # the FD trains its feature classifier first
    batch_size: int = 32
    prompt_set: str = "eval"  # "tuning": the prompts that settings are chosen on
    recall_per_pattern: int = RECALL_PER_PATTERN  # prompts per omission pattern; 0: no recall

    def __post_init__(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"engine={self.engine!r}: must be one of {', '.join(ENGINES)}")
        if self.prompt_set not in PROMPT_SETS:
            raise ValueError(f"prompt_set={self.prompt_set!r}: must be one of "
                             f"{', '.join(PROMPT_SETS)}")
        if self.num_prompts < 2:
            raise ValueError(f"num_prompts={self.num_prompts}: must be at least 2")
        if self.steps < 1:
            raise ValueError(f"steps={self.steps}: must be at least 1")
        if self.recall_per_pattern < 0:
            raise ValueError(f"recall_per_pattern={self.recall_per_pattern}: must be 0 (off) "
                             "or a number of prompts")


def read_prompts(path: str | Path) -> list[tuple[str, int]]:
    """The user's own prompts and their seeds, in file order.

    Plain text: one prompt a line, blank lines skipped. `.jsonl`: one object a line with a
    "prompt" and optionally a "seed". A prompt without a seed gets the project's one seed
    rule's: stable_seed(0, None, its line index), lines counted from 0.
    """
    path = Path(path)
    if not path.is_file():
        hint = f" (a count of held-out prompts is --num-prompts {path})" if str(path).isdigit() \
            else ""
        raise FileNotFoundError(f"--prompts {path}: no such file{hint}")
    prompts = []
    for index, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        if not line.strip():
            continue
        seed = None
        if path.suffix == ".jsonl":
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path} line {index + 1}: not valid JSON ({err.msg})") from None
            if not isinstance(row, dict) or not isinstance(row.get("prompt"), str):
                raise ValueError(f"{path} line {index + 1}: no \"prompt\" text")
            line, seed = row["prompt"], row.get("seed")
            if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)
                                     or seed < 0):
                raise ValueError(f"{path} line {index + 1}: seed {seed!r} is not a "
                                 f"non-negative integer")
        prompts.append((line.strip(), stable_seed(0, None, index) if seed is None else seed))
    if not prompts:
        raise ValueError(f"--prompts {path}: no prompts in the file")
    return prompts


def evaluate_model(model_dir: str | Path, out_dir: str | Path,
                   settings: EvalSettings = EvalSettings(),
                   data: ShapesData | None = None, prompts_file: str | Path | None = None) -> dict:
    """Score the model at `model_dir`; write report.json and contact_sheet.png to `out_dir`.

    `data` names the templates training held out (default: ShapesData()'s), so the report can
    split seen from new wording. `prompts_file`: the user's own prompts (read_prompts) instead
    of the held-out set; settings.num_prompts and prompt_set do not apply.
    """
    out = Path(out_dir)
    own = read_prompts(prompts_file) if prompts_file is not None else None
    out.mkdir(parents=True, exist_ok=True)
    evaluation = ShapesEval(settings.num_prompts, PROMPT_SETS[settings.prompt_set],
                            data=data or ShapesData())
    generate = _generator(Path(model_dir), settings)
    start = time.perf_counter()
    if own is None:
        result, images = evaluation.run(generate)
        results = [PromptResult(p.text, p.seed, passed)
                   for p, passed in zip(evaluation.prompts(), result.passed, strict=True)]
    else:
        result, results, images = score_prompts([t for t, _ in own], [s for _, s in own],
                                                generate)
    sampling_s = time.perf_counter() - start
    sheet = contact_sheet(images[:128], [r.passed for r in results[:128]],
                          out / "contact_sheet.png", captions=[r.text for r in results[:128]])
    report = {"model": str(model_dir), **dataclasses.asdict(settings), **result.to_dict(),
              "sampling_s": round(sampling_s, 1), "contact_sheet": str(sheet),
              # joint pass per prompt, in prompt order ("1" / "0", "-" not scored): two models'
              # reports on the same prompts compare prompt by prompt
              "passed": "".join("-" if r.passed is None else "1" if r.passed else "0"
                                for r in results),
              # each prompt in order: its text, seed and "pass" / "fail" / "not scored"
              "prompts": [r.to_dict() for r in results]}
    if own is not None:
        # No FD: its reference is the held-out scenes' renders.
        report.update(prompt_set=None, num_prompts=len(own), prompts_file=str(prompts_file),
                      compute_fd=False)
    elif settings.compute_fd:
        report["fd"] = _fd(evaluation, images)
    if own is None and settings.recall_per_pattern:
        # The empty prompt only for a model that says it takes one (its jaxgen.json).
        from jaxgen.weights.model_dir import takes_empty_prompt

        report["recall"] = evaluate_recall(generate, settings.recall_per_pattern, out,
                                           empty_prompt=takes_empty_prompt(model_dir))
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def evaluate_dataset(records: Iterable[tuple[dict, bytes]], out_dir: str | Path,
                     name: str) -> dict:
    """Recall and precision of a generated dataset's (record, image bytes), read back image
    by image (jaxgen.dataset.read.dataset_images reads them); writes report.json to `out_dir`.
    `name`: the dataset's, for the report."""
    report = {"dataset": name, "recall": dataset_recall(records)}
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary(report: dict) -> str:
    """The joint accuracies, per group, the FD against its floor, and recall by family."""
    if "accuracy" not in report:  # a dataset's report: recall (with precision) only
        return recall_summary(report["recall"])
    acc = report["accuracy"]
    engine = f"{report['engine']} {report['sampler']}"
    lines = [f"{engine}, {report['steps']} steps, guidance {report['guidance']}: "
             + ", ".join(f"{g} joint {acc[g]['joint']:.3f} (n={report['counts'][g]})"
                         for g in ("all", "single", "two") if "joint" in acc.get(g, {}))
             + (f", not scored {report['counts']['not_scored']}"
                if report["counts"].get("not_scored") else "")]
    if "fd" in report:
        fd = report["fd"]
        lines.append(f"FD {fd['fd']:.2f} (floor {fd['floor']:.2f}, ratio "
                     f"{fd['fd'] / fd['floor']:.2f}, n={fd['n']})")
    if "recall" in report:
        lines.append(recall_summary(report["recall"]))
    return "\n".join(lines)


def _generator(model_dir: Path, settings: EvalSettings) -> Generate:
    if settings.engine == "diffusers":
        from jaxgen.eval.diffusers_peer import diffusers_generator

        return diffusers_generator(model_dir, guidance=settings.guidance, steps=settings.steps,
                                   sampler=settings.sampler)
    from jaxgen.weights.model_dir import load_model

    return model_generator(load_model(model_dir), guidance=settings.guidance,
                           steps=settings.steps, sampler=settings.sampler,
                           batch_size=settings.batch_size)


def _fd(evaluation: ShapesEval, images: np.ndarray) -> dict:
    from jaxgen.eval.fd import rendered, shapes_fd, train_feature_net

    prompts = evaluation.prompts()
    seeds = np.array([p.seed for p in prompts])
    counts = [p.num_objects for p in prompts]
    # The floor compares two independent render sets with the same one/two-object mix.
    floor = rendered(seeds + 500_000_000, counts)
    fd = shapes_fd(train_feature_net(steps=1500), images, rendered(seeds, counts), floor)
    return dataclasses.asdict(fd)
