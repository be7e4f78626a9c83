"""The split of the shapes domain between training and evaluation.

Training scenes come from seeds below TRAIN_SEED_LIMIT and evaluation's from above it, so no
evaluation scene is a training scene; ShapesData names the caption templates training holds out,
so the evaluation can measure wording the text encoder has not seen.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from jaxgen.shapes.captions import PAIR_TEMPLATES, SINGLE_TEMPLATES

TRAIN_SEED_LIMIT = 1_000_000_000


@dataclasses.dataclass(frozen=True)
class ShapesData:
    """How training captions are drawn.

    holdout_single / holdout_pair: template indices never used in training, so the evaluation
    can measure wording the text encoder has not seen.
    """

    caption_dropout: float = 0.1  # empty captions teach the unconditional branch used by CFG
    # Share of captions rewritten by jaxgen.train.wording.vary_wording (the wording stage).
    vary_wording: float = 0.0
    # Share of each batch drawn from two-object scenes (stage 5); None: as the seeds fall,
    # about half.
    two_object_share: float | None = None
    # Share of captions that leave attributes out (under_specified_omissions), so the model
    # learns to sample what a prompt leaves free; the empty caption comes from caption_dropout.
    under_specified: float = 0.0
    holdout_single: tuple[int, ...] = (4,)
    holdout_pair: tuple[int, ...] = (2,)
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.caption_dropout < 1:
            raise ValueError(f"data caption_dropout={self.caption_dropout!r}: must be in [0, 1)")
        if not 0 <= self.vary_wording <= 1:
            raise ValueError(f"data vary_wording={self.vary_wording!r}: must be in [0, 1]")
        if not 0 <= self.under_specified <= 1:
            raise ValueError(f"data under_specified={self.under_specified!r}: must be in [0, 1]")
        share = self.two_object_share
        if share is not None and (isinstance(share, bool) or not isinstance(share, int | float)
                                  or not 0 <= share <= 1):
            raise ValueError(f"data two_object_share={share!r}: must be in [0, 1]")
        for name, templates in (("holdout_single", SINGLE_TEMPLATES),
                                ("holdout_pair", PAIR_TEMPLATES)):
            held = getattr(self, name)
            if any(not 0 <= i < len(templates) for i in held) or len(held) >= len(templates):
                raise ValueError(f"data {name}={held!r}: indices must lie in "
                                 f"[0, {len(templates)}) and leave at least one template")

    def is_held_out_wording(self, text: str) -> bool:
        """Whether `text` has the form of a held-out template (any fields)."""
        held = ([SINGLE_TEMPLATES[i] for i in self.holdout_single]
                + [PAIR_TEMPLATES[i] for i in self.holdout_pair])
        return any(template_pattern(t).fullmatch(text) for t in held)

    def train_templates(self, num_objects: int) -> tuple[int, ...]:
        held, n = ((self.holdout_single, len(SINGLE_TEMPLATES)) if num_objects == 1
                   else (self.holdout_pair, len(PAIR_TEMPLATES)))
        return tuple(i for i in range(n) if i not in held)


@functools.cache  # the data asks it of every reworded training caption
def template_pattern(template: str) -> re.Pattern[str]:
    """A regex whose fullmatch is every caption `template` writes (any fields, "a" or "an")."""
    literals = [re.sub(r"\ba(?=\\ )", "an?", re.escape(part))
                for part in re.split(r"\{\w+\}", template)]
    return re.compile("[a-z ]+?".join(literals))
