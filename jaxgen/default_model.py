"""Where the embedded default model lives, and the stand-in used until it is shipped."""

from __future__ import annotations

import os
import sys
from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "assets" / "default-model"
RANDOM_NOTICE = (
    "jaxgen: NOTE - no trained default model is shipped in this version, so this run uses a "
    "small RANDOMLY INITIALISED model: the images are noise-like. It exercises the whole "
    "pipeline; pass --model DIR for a real diffusers-format model."
)


def default_model_path() -> Path:
    """The packaged trained model if present, else a cached random stand-in (announced)."""
    if (PACKAGED / "model_index.json").is_file():
        return PACKAGED
    from jaxgen.weights.random_model import write_random_model

    root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    path = root / "jaxgen" / "random-untrained-model"
    if not (path / "model_index.json").is_file():
        write_random_model(path)
    print(RANDOM_NOTICE, file=sys.stderr, flush=True)
    return path
