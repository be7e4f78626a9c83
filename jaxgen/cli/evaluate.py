"""`jaxgen eval`: ShapesEval and FD of a model, a JSON report and a contact sheet."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxgen.default_model import EVAL_PROMPTS, RECOMMENDED


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")
    p.add_argument("--out", type=Path, default=Path("runs/eval"),
                   help="directory for report.json and contact_sheet.png")
    p.add_argument("--prompts", type=int, default=EVAL_PROMPTS, dest="num_prompts")
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    p.add_argument("--steps", type=int, default=RECOMMENDED["steps"])
    p.add_argument("--sampler", default=RECOMMENDED["sampler"], help="jaxgen engine only")
    p.add_argument("--engine", default="jaxgen", help="jaxgen | diffusers (needs torch)")
    p.add_argument("--no-fd", action="store_false", dest="compute_fd", help="skip the FD")
    p.add_argument("--prompt-set", default="eval",
                   help="eval (the held-out evaluation prompts) | tuning (a second held-out set, "
                        "for choosing guidance and steps)")


def run(args: argparse.Namespace, _: list[str]) -> int:
    from jaxgen.default_model import default_model_path
    from jaxgen.eval.run import EvalSettings, evaluate_model, summary

    settings = EvalSettings(num_prompts=args.num_prompts, guidance=args.guidance,
                            steps=args.steps, sampler=args.sampler, engine=args.engine,
                            compute_fd=args.compute_fd, prompt_set=args.prompt_set)
    report = evaluate_model(args.model or default_model_path(), args.out, settings)
    print(summary(report))
    print(f"wrote {args.out / 'report.json'} and {report['contact_sheet']}")
    return 0
