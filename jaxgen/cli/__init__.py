"""`jaxgen` command line: generate, info, preview, train, eval, report.

Each command lives in its own module here: `add_parser` builds its flags, `run` executes it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from jaxgen.cli import evaluate, generate, info, report, train
from jaxgen.cli.progress import EXIT_INTERRUPTED, EXIT_SOME_REJECTED, EXIT_USAGE, exit_statuses_help
from jaxgen.logs import set_up_console
from jaxgen.requests import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    # No abbreviations: Beam's flags pass through, and `--runner` must not become
    # `--runner-profile`.
    parser = argparse.ArgumentParser(prog="jaxgen", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Beam's, JAX's and transformers' log lines")
    sub = parser.add_subparsers(dest="command", required=True)
    gen = sub.add_parser("generate", help="manifest in, image dataset out", allow_abbrev=False,
                         epilog=exit_statuses_help(),
                         formatter_class=argparse.RawDescriptionHelpFormatter)
    generate.add_parser(gen)
    gen.add_argument("--strict", action="store_true",
                     help=f"exit {EXIT_SOME_REJECTED} when any row is rejected")
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
    set_up_console(args.verbose)
    # Every command, training and evaluation included, splits a CPU into one device per core
    # (docs/benchmarks.md: a stage-2 train step 1.14x faster on 2 cores, sampling 1.3x).
    from jaxgen.engine.sharding import use_all_cpu_cores

    use_all_cpu_cores()
    commands = {"generate": generate.run, "info": info.run_info, "preview": info.run_preview,
                "train": train.run, "eval": evaluate.run, "report": report.run}
    interrupted = threading.Event()
    previous = _on_ctrl_c(interrupted)
    try:
        if getattr(args, "model", None):
            _check_model_dir(args.model)
        return commands[args.command](args, beam_args)
    except BaseException as err:
        # Beam re-raises a KeyboardInterrupt in a DoFn as a RuntimeError: hence the flag.
        if interrupted.is_set():
            print(f"jaxgen {args.command}: interrupted{_what_finished(args)}", file=sys.stderr)
            return EXIT_INTERRUPTED
        if not isinstance(err, (ConfigError, ValueError, FileNotFoundError)):
            raise
        print(f"jaxgen {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)


def _on_ctrl_c(interrupted: threading.Event):
    """Note Ctrl-C, then interrupt as Python does; returns the handler to restore."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def handler(signum, frame):
        interrupted.set()
        raise KeyboardInterrupt

    return signal.signal(signal.SIGINT, handler)


def _check_model_dir(model: str) -> None:
    """One message for a directory that is not a diffusers model, whichever command."""
    from jaxgen.weights.model_dir import ModelDirError, resolve_model_path

    root = resolve_model_path(model)
    if not (root / "model_index.json").is_file():
        raise ModelDirError(f"{root}: no model_index.json; not a diffusers-format model "
                            "directory")


def _what_finished(args: argparse.Namespace) -> str:
    if args.command != "generate" or args.dry_run:
        return ""
    from jaxgen.dataset.progress import completed_shards

    try:
        shards, images = completed_shards(args.out)
    except Exception:  # an output not made yet, or unreachable: nothing to report
        return "; rerun the same command to resume"
    return (f": {shards} shards ({images} images) complete in {args.out}; rerun the same "
            "command to resume")
