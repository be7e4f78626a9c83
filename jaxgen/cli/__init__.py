"""`jaxgen` command line: generate, info, preview, train, eval, report.

Each command lives in its own module here: `add_parser` builds its flags, `run` executes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jaxgen.cli import evaluate, generate, info, report, train
from jaxgen.requests import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    # No abbreviations: Beam's flags pass through, and `--runner` must not become
    # `--runner-profile`.
    parser = argparse.ArgumentParser(prog="jaxgen", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    sub = parser.add_subparsers(dest="command", required=True)
    generate.add_parser(sub.add_parser("generate", help="manifest in, image dataset out",
                                       allow_abbrev=False))
    info.add_info_parser(sub.add_parser("info", help="the model and the devices jaxgen would use",
                                        allow_abbrev=False))
    info.add_preview_parser(sub.add_parser("preview", help="generate one prompt to a PNG file",
                                           allow_abbrev=False))
    train.add_parser(sub.add_parser("train", help="train the shapes model from scratch (resumable)",
                                    allow_abbrev=False))
    evaluate.add_parser(sub.add_parser("eval", help="ShapesEval + FD of a model: JSON report, "
                                       "contact sheet", allow_abbrev=False))
    report.add_parser(sub.add_parser("report", help="rebuild OUT/report.html: counts, rejects, "
                                     "a gallery", allow_abbrev=False))
    args, beam_args = parser.parse_known_args(argv)
    if args.command != "generate" and beam_args:
        parser.error(f"unrecognised arguments: {' '.join(beam_args)}")
    # Every command, training and evaluation included, splits a CPU into one device per core
    # (docs/benchmarks.md: a stage-2 train step 1.14x faster on 2 cores, sampling 1.3x).
    from jaxgen.engine.sharding import use_all_cpu_cores

    use_all_cpu_cores()
    commands = {"generate": generate.run, "info": info.run_info, "preview": info.run_preview,
                "train": train.run, "eval": evaluate.run, "report": report.run}
    try:
        return commands[args.command](args, beam_args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"jaxgen {args.command}: error: {err}", file=sys.stderr)
        return 2
