"""Beam options given to jaxgen: checked against Beam's own option list before any work.

They reach Beam only through explicit channels (`jaxgen generate --runner`, a runner
profile, `--beam-option KEY=VALUE`, or everything after `--`), so a mistyped jaxgen flag can
never pass for a Beam option, and a mistyped Beam option stops the command with the nearest
real name instead of Beam's "Unparseable argument" warning.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable

from jaxgen.dataset.suggest import did_you_mean
from jaxgen.requests import ConfigError


@functools.cache
def beam_option_names() -> frozenset[str]:
    """Every option Beam's PipelineOptions subclasses define, as `name` (no dashes)."""
    import argparse

    from apache_beam.options.pipeline_options import PipelineOptions

    _import_runner_options()
    classes: dict[str, type] = {}
    todo = list(PipelineOptions.__subclasses__())
    while todo:
        cls = todo.pop()
        classes.setdefault(f"{cls.__module__}.{cls.__qualname__}", cls)
        todo.extend(cls.__subclasses__())
    names: set[str] = set()
    for cls in classes.values():
        # One parser per class: two classes may define the same flag (argparse would refuse).
        parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
        try:
            cls._add_argparse_args(parser)
        except (argparse.ArgumentError, TypeError):  # a user subclass that needs more
            continue
        for action in parser._actions:
            names.update(s.lstrip("-") for s in action.option_strings if s.startswith("--"))
    return frozenset(names)


def _import_runner_options() -> None:
    # Runners that define their options in their own module (DaskOptions) register them on
    # import; dask itself is an optional extra, so a missing one only hides its options.
    try:
        import apache_beam.runners.dask.dask_runner  # noqa: F401
    except ImportError:
        pass


def check_beam_args(args: list[str], source: str, also: Iterable[str] = ()) -> list[str]:
    """`args` unchanged when each `--name[=value]` is a Beam option (or one of `also`); else a
    ConfigError that names the first unknown one, where it came from, and the nearest one."""
    known = beam_option_names() | frozenset(also)
    for arg in args:
        if not arg.startswith("--"):
            continue  # the value of the option before it
        name = arg[2:].split("=", 1)[0]
        if name not in known:
            raise ConfigError(f"{source}: --{name} is not a Beam pipeline option"
                              f"{did_you_mean(name, known, '--')}")
    return args


def beam_option_flags(pairs: Iterable[str]) -> list[str]:
    """`--beam-option KEY=VALUE` values as Beam flags (`KEY` alone: a switch)."""
    flags = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip().lstrip("-")
        if not key:
            raise ConfigError(f"--beam-option {pair!r}: give KEY=VALUE (a Beam option)")
        flags.append(f"--{key}={value}" if sep else f"--{key}")
    return check_beam_args(flags, "--beam-option")
