"""The job's filter: a user's `module:function` that scores each image on the worker.

`function(image, record) -> verdict`: image the uint8 [H, W, 3] array as generated, record the
dict every output format stores (ImageRecord.to_json: label, metadata, strength, ...). The
verdict is a Verdict, or a bool, or a tuple (keep, reason) or (keep, reason, score). A dropped
image stays out of the dataset and is written to `_dropped/NAME.jsonl` with its key, reason
and score, so nothing is lost silently. A filter that raises fails the shard: it is the job's
code, not a row's.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
from collections.abc import Callable
from typing import Any

import numpy as np

from jaxgen.dataset.records import ImageRecord
from jaxgen.requests import ConfigError

Filter = Callable[[np.ndarray, dict[str, Any]], Any]


@dataclasses.dataclass(frozen=True)
class Verdict:
    keep: bool
    reason: str = ""
    score: float | None = None


@functools.cache
def load_filter(name: str) -> Filter:
    """The function `module:function` names; ConfigError naming it when it cannot be found."""
    module, _, function = name.partition(":")
    try:
        found = getattr(importlib.import_module(module), function)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"filter {name!r}: cannot be loaded ({type(e).__name__}: {e})") from None
    if not callable(found):
        raise ConfigError(f"filter {name!r}: is not a function")
    return found


def judge(name: str, image: np.ndarray, record: ImageRecord) -> Verdict:
    """The verdict of filter `name` on one image, read into a Verdict whatever its form."""
    verdict = load_filter(name)(image, record.to_json())
    if isinstance(verdict, Verdict):
        return verdict
    if isinstance(verdict, bool | np.bool_):
        return Verdict(bool(verdict))
    if isinstance(verdict, tuple) and 2 <= len(verdict) <= 3:
        keep, reason, *score = verdict
        return Verdict(bool(keep), str(reason), float(score[0]) if score and score[0]
                       is not None else None)
    raise TypeError(f"filter {name!r} returned {verdict!r}: expected a Verdict, a bool, or "
                    "(keep, reason[, score])")


def dropped_entry(record: ImageRecord, verdict: Verdict) -> dict[str, Any]:
    """One line of `_dropped/NAME.jsonl`: enough to find the image's request again."""
    entry = {"key": record.key, "id": record.id, "reason": verdict.reason,
             "score": verdict.score, "prompt": record.prompt, "seed": record.seed,
             "image_index": record.image_index, "metadata": record.metadata}
    if record.label is not None:
        entry["label"] = record.label
    return entry
