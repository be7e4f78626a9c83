"""`jaxgen` command line: generate, augment, info, preview, train, eval, report, compare.

Each command lives in its own module here: `add_parser` builds its flags, `run` executes it.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence

from jaxgen.cli import augment, compare, evaluate, generate, info, report, train
from jaxgen.cli.progress import EXIT_INTERRUPTED, EXIT_USAGE
from jaxgen.logs import set_up_console
from jaxgen.requests import ConfigError


def main(argv: Sequence[str] | None = None) -> int:
    # No abbreviations: `--runner` must not become `--runner-profile`, nor `--step` `--steps`.
    parser = argparse.ArgumentParser(prog="jaxgen", description=__doc__.splitlines()[0],
                                     allow_abbrev=False)
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show Beam's, JAX's and transformers' log lines")
    parser.add_argument("--version", action="version", version=f"jaxgen {_version()}")
    sub = parser.add_subparsers(dest="command", required=True)
    generate.add_parser(sub.add_parser("generate", help="manifest in, image dataset out",
                                       allow_abbrev=False))
    augment.add_parser(sub.add_parser("augment", help="labelled dataset + recipe in, augmented "
                                      "labelled dataset out", allow_abbrev=False))
    info.add_info_parser(sub.add_parser("info", help="the model and the devices jaxgen would use",
                                        allow_abbrev=False))
    info.add_preview_parser(sub.add_parser("preview", help="generate one prompt to a PNG file",
                                           allow_abbrev=False))
    train.add_parser(sub.add_parser("train", help="train the shapes model from scratch (resumable)",
                                    allow_abbrev=False))
    evaluate.add_parser(sub.add_parser("eval", help="ShapesEval + FD of a model: JSON report, "
                                       "contact sheet", allow_abbrev=False))
    compare.add_parser(sub.add_parser("compare", help="each manifest row through jaxgen and "
                                      "diffusers: pixel differences", allow_abbrev=False))
    report.add_parser(sub.add_parser("report", help="rebuild OUT/report.html: counts, rejects, "
                                     "a gallery", allow_abbrev=False))
    argv = sys.argv[1:] if argv is None else list(argv)
    # Before parsing: checking Beam options imports Beam, which logs as it loads.
    ours = argv[:argv.index("--")] if "--" in argv else argv
    set_up_console(verbose="-v" in ours or "--verbose" in ours)
    args, beam_args = _parse(parser, sub, argv)
    # Every command, training and evaluation included, splits a CPU into one device per core:
    # XLA's threads leave cores idle on small ops (docs/benchmarks.md, "One XLA device per core").
    from jaxgen.engine.sharding import use_all_cpu_cores

    use_all_cpu_cores()
    commands = {"generate": generate.run, "augment": augment.run, "info": info.run_info,
                "preview": info.run_preview, "train": train.run, "eval": evaluate.run,
                "report": report.run, "compare": compare.run}
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
    from jaxgen.weights.model_dir import model_root

    model_root(model)


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


def _parse(parser: argparse.ArgumentParser, sub: argparse._SubParsersAction,
           argv: list[str]) -> tuple[argparse.Namespace, list[str]]:
    """Parse strictly: an unknown flag stops here (exit 2) with the nearest real one; Beam's
    options come only from `generate`'s explicit channels, checked against Beam's list."""
    from jaxgen.dataset.suggest import did_you_mean

    after: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, after = argv[:cut], argv[cut + 1:]
    args, unknown = parser.parse_known_args(argv)
    command = sub.choices[args.command]
    if unknown:
        flag = next((u for u in unknown if u.startswith("-")), unknown[0])
        known = [s for s in command._option_string_actions if s.startswith("--")]
        command.error(f"unrecognised argument {flag.split('=')[0]}"
                      f"{did_you_mean(flag.split('=')[0], known)}")
    if args.command != "generate":
        if after:
            command.error(f"arguments after --: only `jaxgen generate` takes Beam options "
                          f"({' '.join(after)})")
        return args, []
    try:
        if args.runner_profile:
            from jaxgen.beam.profiles import profile_flags

            profile_flags(args.runner_profile)  # checked now, applied by generate.run
        return args, generate.beam_args(args, after)
    except ConfigError as err:
        command.error(str(err))


def _version() -> str:
    from importlib import metadata

    try:
        return metadata.version("jaxgen")
    except metadata.PackageNotFoundError:  # a source tree that was never installed
        return "unknown"
