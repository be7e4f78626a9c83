"""`jaxgen` command line: generate, info, preview, train, eval.

Each command lives in its own module here: `add_parser` builds its flags, `run` executes it.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from jaxgen.cli import evaluate, generate, info, train
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
    args, beam_args = parser.parse_known_args(argv)
    if args.command != "generate" and beam_args:
        parser.error(f"unrecognised arguments: {' '.join(beam_args)}")
    # Every command, training and evaluation included, splits a CPU into one device per core:
    # XLA's threads leave cores idle on small ops (docs/benchmarks.md, "One XLA device per core").
    from jaxgen.engine.sharding import use_all_cpu_cores

    use_all_cpu_cores()
    commands = {"generate": generate.run, "info": info.run_info, "preview": info.run_preview,
                "train": train.run, "eval": evaluate.run}
    try:
        return commands[args.command](args, beam_args)
    except (ConfigError, ValueError, FileNotFoundError) as err:
        print(f"jaxgen {args.command}: error: {err}", file=sys.stderr)
        return 2
