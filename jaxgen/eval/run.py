"""`jaxgen eval`: ShapesEval and FD for a model directory -> report.json + contact_sheet.png.

The same prompts, seeds and analyser score either engine: jaxgen's own sampler, or diffusers'
StableDiffusionPipeline on the same directory (the peer check; needs the `test` extra's torch).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from jaxgen.default_model import EVAL_PROMPTS, RECOMMENDED
from jaxgen.eval.shapes_eval import (
    PROMPT_SETS,
    Generate,
    ShapesEval,
    contact_sheet,
    model_generator,
)
from jaxgen.shapes.split import ShapesData

ENGINES = ("jaxgen", "diffusers")


@dataclasses.dataclass(frozen=True)
class EvalSettings:
    num_prompts: int = EVAL_PROMPTS
    guidance: float = RECOMMENDED["guidance"]
    steps: int = RECOMMENDED["steps"]
    sampler: str = RECOMMENDED["sampler"]  # jaxgen's name; diffusers uses the model's scheduler
    engine: str = "jaxgen"
    compute_fd: bool = True  # the FD trains its feature classifier first
    batch_size: int = 32
    prompt_set: str = "eval"  # "tuning": the prompts that settings are chosen on


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


def evaluate_model(model_dir: str | Path, out_dir: str | Path,
                   settings: EvalSettings = EvalSettings(),
                   data: ShapesData | None = None) -> dict:
    """Score the model at `model_dir`; write report.json and contact_sheet.png to `out_dir`.

    `data` names the templates training held out (default: ShapesData()'s), so the report can
    split seen from new wording.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    evaluation = ShapesEval(settings.num_prompts, PROMPT_SETS[settings.prompt_set],
                            data=data or ShapesData())
    generate = _generator(Path(model_dir), settings)
    start = time.perf_counter()
    result, images = evaluation.run(generate)
    sampling_s = time.perf_counter() - start
    sheet = contact_sheet(images[:128], result.passed[:128], out / "contact_sheet.png")
    report = {"model": str(model_dir), **dataclasses.asdict(settings), **result.to_dict(),
              "sampling_s": round(sampling_s, 1), "contact_sheet": str(sheet),
              # joint pass per prompt, in prompt order ("1" / "0"): two models' reports on
              # the same prompts compare prompt by prompt
              "passed": "".join("1" if p else "0" for p in result.passed)}
    if settings.compute_fd:
        report["fd"] = _fd(evaluation, images)
    (out / "report.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def summary(report: dict) -> str:
    """The joint accuracies, per group, and the FD against its floor."""
    acc = report["accuracy"]
    engine = report["engine"] + (f" {report['sampler']}" if report["engine"] == "jaxgen" else "")
    lines = [f"{engine}, {report['steps']} steps, guidance {report['guidance']}: "
             + ", ".join(f"{g} joint {acc[g]['joint']:.3f} (n={report['counts'][g]})"
                         for g in ("all", "single", "two") if "joint" in acc.get(g, {}))]
    if "fd" in report:
        fd = report["fd"]
        lines.append(f"FD {fd['fd']:.2f} (floor {fd['floor']:.2f}, ratio "
                     f"{fd['fd'] / fd['floor']:.2f}, n={fd['n']})")
    return "\n".join(lines)


def _generator(model_dir: Path, settings: EvalSettings) -> Generate:
    if settings.engine == "diffusers":
        from jaxgen.eval.diffusers_peer import diffusers_generator

        return diffusers_generator(model_dir, guidance=settings.guidance, steps=settings.steps,
                                   batch_size=settings.batch_size)
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
