"""Where the embedded default model lives: the shapes model trained by `jaxgen train`.

See docs/default-model.md for what it is, how it was trained and how well it draws.
"""

from __future__ import annotations

import json
from pathlib import Path

PACKAGED = Path(__file__).resolve().parent / "assets" / "default-model"
# The settings its model card recommends (and ShapesEval measures it at), chosen on the tuning
# prompts, kept in the model directory (jaxgen.json) so that naming the model by its path gives
# the same defaults. Guidance 2.5, not SD's usual 4-7.5: stronger guidance sharpens shapes but
# draws extra objects in two-object scenes (docs/default-model.md, "Guidance and steps").
RECOMMENDED = json.loads((PACKAGED / "jaxgen.json").read_text())["recommended"] \
    if (PACKAGED / "jaxgen.json").is_file() else {}
# The size of the model card's ShapesEval: 128 one-object and 128 two-object prompts.
EVAL_PROMPTS = 256
# Recall: prompts per under-specified kind of caption (x 63 kinds: 252 images, about as many).
RECALL_PER_PATTERN = 4


def default_model_path() -> Path:
    """The packaged default model's diffusers-format directory."""
    if not (PACKAGED / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{PACKAGED}: the default model is missing from this installation (reinstall "
            "jaxgen, or pass --model DIR for a diffusers-format model)")
    return PACKAGED
