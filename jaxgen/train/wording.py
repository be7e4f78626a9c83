"""Varied wordings of training captions, so the text encoder reads phrasings it was not shown.

The caption templates are few, and the text encoder (causal, like CLIP's) learns their exact
word sequences: on the evaluation's held-out templates its states drift and the UNet reads the
background and position wrong. `vary_wording` rewrites a caption without changing what it
says: each function word (article, preposition, "there is") is dropped with some probability,
each comma or semicolon too, and a comma may appear between any two words. The words that carry
the scene (colour, shape, size, position, relation, "background", "of") always stay, so the
prompt parser reads the varied caption as the original (tests/test_train.py checks this).

A varied caption can by chance take the form of a template that training holds out for the
evaluation; `template_pattern` lets the data reject those (jaxgen.shapes.split.ShapesData).
"""

from __future__ import annotations

import re

import numpy as np

# Words whose loss leaves the scene stated; "of" stays ("left of" is a relation, "left" a cell).
FUNCTION_WORDS = frozenset({"a", "an", "the", "at", "on", "in", "there", "is", "with", "to"})
DROP_WORD = 0.5  # per function word
DROP_PUNCTUATION = 0.5  # per comma or semicolon
ADD_COMMA = 0.1  # per gap between two words


def vary_wording(text: str, rng: np.random.Generator) -> str:
    """`text` with function words and punctuation dropped and commas added at random."""
    pieces = re.findall(r"[a-z]+|[,;]", text.lower())
    kept: list[str] = []
    for piece in pieces:
        if piece in ",;":
            if rng.random() >= DROP_PUNCTUATION and kept and kept[-1] not in ",;":
                kept.append(piece)
            continue
        if piece in FUNCTION_WORDS and rng.random() < DROP_WORD:
            continue
        if kept and kept[-1] not in ",;" and rng.random() < ADD_COMMA:
            kept.append(",")
        kept.append(piece)
    while kept and kept[-1] in ",;":
        kept.pop()
    text = " ".join(kept).replace(" ,", ",").replace(" ;", ";")
    return re.sub(r"\b(an?) (?=\w)", _article_for, text)


def _article_for(match: re.Match) -> str:
    # "a" before a vowel became "an" in the template; after a drop the next word may differ.
    nxt = match.string[match.end():match.end() + 1]
    return "an " if nxt in "aeiou" else "a "
