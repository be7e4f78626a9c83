"""Runner profiles: named sets of Beam options (local, dataflow_gpu, ...).

They ship inside the package (jaxgen/configs/runners/NAME.yaml), so `--runner-profile local`
works from any directory and from an installed wheel. A value that is a path to a YAML file
(it has a suffix) is read from there instead.
"""

from __future__ import annotations

from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

import yaml

from jaxgen.requests import ConfigError


def _packaged() -> Traversable:
    return resources.files("jaxgen").joinpath("configs", "runners")


def profile_names() -> list[str]:
    """The packaged profiles, by name."""
    return sorted(p.name.removesuffix(".yaml") for p in _packaged().iterdir()
                  if p.name.endswith(".yaml"))


def read_profile(profile: str) -> dict[str, Any]:
    """A profile's Beam options: `profile` is a packaged profile's name, or a YAML file's path."""
    file: Traversable = Path(profile) if Path(profile).suffix else _packaged() / f"{profile}.yaml"
    if not file.is_file():
        raise ConfigError(f"runner profile {profile!r}: no such file; known profiles: "
                          f"{', '.join(profile_names())}")
    values = yaml.safe_load(file.read_text()) or {}
    if not isinstance(values, dict):
        raise ConfigError(f"runner profile {profile!r}: must be a mapping of Beam options")
    return values


def profile_flags(profile: str) -> list[str]:
    """A runner profile as Beam command-line flags (a list value repeats its flag); a key
    that is not a Beam option raises ConfigError naming the nearest one."""
    from jaxgen.beam.options import check_beam_args

    flags = []
    for name, value in read_profile(profile).items():
        for item in value if isinstance(value, list) else [value]:
            if item is True:
                flags.append(f"--{name}")
            elif item is not False and item is not None:
                flags.append(f"--{name}={item}")
    return check_beam_args(flags, f"runner profile {profile!r}")
