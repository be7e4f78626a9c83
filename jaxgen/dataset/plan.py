"""The plan: every row gets a global index, a shard, a key and a seed, all deterministic.

Order-based, like img2dataset: files are sorted by path, a first pass counts the rows of
each, and a row's global index is (rows in the files before it) + (its index in its file).
Then shard = index // shard_size, and the key is the shard number then the index inside
the shard, zero-padded: 5 + 4 digits ("000120042" = shard 12, row 42) while there are fewer
than 100,000 shards of at most 10,000 rows; more digits only when needed. Keys are digits
only: WebDataset cuts a sample's key at the first dot, so a key must never hold one.

A request with num_images = n > 1 makes n images named KEY_0 .. KEY_{n-1}; a request with
one image is just KEY. Rejected rows keep their key (and their place in the shard's audit
parquet) but make no image.

Seeds: a row's own seed if it has one; otherwise `stable_seed(job_seed, id, global index)`
(jaxgen.requests), the rule the Generator also follows: from the id when the row has one, so
the same id keeps its seed when the manifest is reordered or extended, else from the index.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable
from typing import Any

from jaxgen.requests import GenerationRequest


@dataclasses.dataclass(frozen=True)
class Layout:
    """Shard and key arithmetic for one job (fixed once the rows are counted)."""

    total_rows: int
    shard_size: int

    # cached: key() runs once per row.
    @functools.cached_property
    def num_shards(self) -> int:
        return -(-self.total_rows // self.shard_size)

    @functools.cached_property
    def shard_digits(self) -> int:
        return max(5, len(str(max(self.num_shards - 1, 0))))

    @functools.cached_property
    def index_digits(self) -> int:
        return max(4, len(str(self.shard_size - 1)))

    def shard_of(self, index: int) -> int:
        return index // self.shard_size

    def key(self, index: int) -> str:
        shard, inner = divmod(index, self.shard_size)
        return f"{shard:0{self.shard_digits}d}{inner:0{self.index_digits}d}"

    def shard_name(self, shard: int) -> str:
        return f"{shard:0{self.shard_digits}d}"


def image_key(row_key: str, index: int, num_images: int) -> str:
    return row_key if num_images == 1 else f"{row_key}_{index}"


@dataclasses.dataclass(frozen=True)
class Plan:
    """The result of the counting pass: files (index, path, rows) and the layout."""

    files: tuple[tuple[int, str, int], ...]
    layout: Layout

    @classmethod
    def from_counts(cls, counts: Iterable[tuple[int, str, int]], shard_size: int) -> Plan:
        files = tuple(sorted(counts))
        return cls(files, Layout(sum(rows for _, _, rows in files), shard_size))

    def offset(self, file_index: int) -> int:
        """Global index of the file's first row: the rows of all files sorted before it."""
        return sum(rows for index, _, rows in self.files if index < file_index)

    def rows(self, file_index: int) -> int:
        return next(rows for index, _, rows in self.files if index == file_index)

    def path(self, file_index: int) -> str:
        return next(path for index, path, _ in self.files if index == file_index)

    @property
    def file_rows(self) -> list[tuple[str, int]]:
        return [(path, rows) for _, path, rows in self.files]


@dataclasses.dataclass(frozen=True)
class PlannedRow:
    """A row that will be generated: its request has its seed filled in."""

    key: str
    index: int
    shard: int
    source: str
    line: int
    request: GenerationRequest

    @property
    def image_keys(self) -> list[str]:
        n = self.request.num_images
        return [image_key(self.key, i, n) for i in range(n)]


# Where on its way to an image a row failed (a reject's `stage`).
STAGES = ("parse", "tokenize", "image", "generate", "check", "encode")


@dataclasses.dataclass(frozen=True)
class Reject:
    """A row that will not be generated, and why (`field` names the culprit, `stage` says
    where it failed: one of STAGES)."""

    key: str
    index: int
    shard: int
    source: str
    line: int
    raw: str
    field: str
    reason: str
    stage: str = "parse"

    def __post_init__(self) -> None:
        # Text that UTF-8 cannot hold (lone surrogates, from a row or a file name) is
        # escaped here, once: a reject must be writable everywhere (its JSON line, the audit).
        for name in ("source", "raw", "field", "reason"):
            object.__setattr__(self, name, _writable(getattr(self, name)))

    @classmethod
    def of(cls, row: PlannedRow, field: str, reason: str, stage: str) -> Reject:
        """A planned row rejected later on its way to an image; `raw` is its request as JSON."""
        raw = json.dumps(dataclasses.asdict(row.request), ensure_ascii=False, default=repr)
        return cls(row.key, row.index, row.shard, row.source, row.line, raw, field, reason, stage)

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "source": self.source,
            "line": self.line,
            "stage": self.stage,
            "field": self.field,
            "reason": self.reason,
            "row": self.raw,
        }


def _writable(text: str) -> str:
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


ShardItem = PlannedRow | Reject
