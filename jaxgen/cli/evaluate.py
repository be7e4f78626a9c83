"""`jaxgen eval`: ShapesEval, FD and recall of a model, a JSON report and contact sheets; or
recall and precision of a dataset `jaxgen generate` wrote (--dataset)."""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxgen.default_model import EVAL_PROMPTS, RECALL_PER_PATTERN, RECOMMENDED


def add_parser(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", help="diffusers-format directory (default: the default model)")
    p.add_argument("--out", type=Path, default=Path("runs/eval"),
                   help="directory for report.json and contact_sheet.png")
    p.add_argument("--prompts", type=Path, metavar="FILE",
                   help="your own prompts instead of a held-out set: one a line, or .jsonl "
                        "with \"prompt\" and optional \"seed\"; prompts the caption parser "
                        "cannot read are generated but not scored; no FD")
    # None: not given, so that --prompts can refuse them (their defaults are in the help)
    p.add_argument("--num-prompts", type=int, metavar="N",
                   help=f"how many held-out prompts to score (default: {EVAL_PROMPTS})")
    p.add_argument("--guidance", type=float, default=RECOMMENDED["guidance"])
    p.add_argument("--steps", type=int, default=RECOMMENDED["steps"])
    p.add_argument("--sampler", default=RECOMMENDED["sampler"],
                   help="the sampler (for --engine diffusers, the matching diffusers scheduler)")
    p.add_argument("--engine", default="jaxgen", help="jaxgen | diffusers (needs torch)")
    p.add_argument("--no-fd", action="store_false", dest="compute_fd", help="skip the FD")
    p.add_argument("--recall", type=int, default=None, metavar="N",
                   help="prompts per under-specified kind of caption (63 kinds) whose free "
                        "attributes are read back for recall; 0 skips it (default: "
                        f"{RECALL_PER_PATTERN})")
    p.add_argument("--dataset", type=Path, metavar="OUT",
                   help="instead of a model: read back every image of a `jaxgen generate` "
                        "output whose prompt the caption parser reads; report recall and "
                        "precision")
    p.add_argument("--prompt-set",
                   help="eval (the held-out evaluation prompts; the default) | tuning (a second "
                        "held-out set, for choosing guidance and steps)")


def run(args: argparse.Namespace, _: list[str]) -> int:
    from jaxgen.default_model import default_model_path
    from jaxgen.eval.run import EvalSettings, evaluate_dataset, evaluate_model, summary

    if args.dataset is not None:
        given = [f for f, v in (("--model", args.model), ("--prompts", args.prompts),
                                ("--num-prompts", args.num_prompts),
                                ("--prompt-set", args.prompt_set), ("--recall", args.recall))
                 if v is not None]
        if given:
            raise ValueError(f"--dataset reads images already made: drop {given[0]}")
        from jaxgen.dataset.read import dataset_images

        report = evaluate_dataset(dataset_images(args.dataset), args.out, str(args.dataset))
        print(summary(report))
        print(f"wrote {args.out / 'report.json'}")
        return 0
    if args.prompts is not None:
        given = [f for f, v in (("--prompt-set", args.prompt_set),
                                ("--num-prompts", args.num_prompts)) if v is not None]
        if given:
            raise ValueError(f"--prompts FILE scores the file's prompts: drop {given[0]}")
    num_prompts = EVAL_PROMPTS if args.num_prompts is None else args.num_prompts
    settings = EvalSettings(num_prompts=num_prompts, guidance=args.guidance,
                            steps=args.steps, sampler=args.sampler, engine=args.engine,
                            compute_fd=args.compute_fd and args.prompts is None,
                            prompt_set=args.prompt_set or "eval",
                            recall_per_pattern=RECALL_PER_PATTERN if args.recall is None
                            else args.recall)
    report = evaluate_model(args.model or default_model_path(), args.out, settings,
                            prompts_file=args.prompts)
    print(summary(report))
    print(f"wrote {args.out / 'report.json'} and {report['contact_sheet']}")
    return 0
