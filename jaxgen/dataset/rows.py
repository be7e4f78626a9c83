"""One manifest row -> a validated GenerationRequest, or a RequestError naming the field.

Type rules (the same for every manifest format):
- JSON/Parquet values must already have the field's type; integral floats (25.0, as
  pandas writes int columns that had nulls) are accepted for integer fields. CSV/TSV cells
  are text and are parsed: "25" -> 25, "7.5" -> 7.5; an empty cell means "not given".
- A missing (or null) field takes the job default (`JobConfig.defaults`), then the
  GenerationRequest default. `seed` left out is derived later from the job seed (plan.py).
- `id` may be a string or an integer (kept as its decimal string).
- diffusers' names are read as jaxgen's (`num_inference_steps` is `steps`, `guidance_scale`
  is `guidance`, `num_images_per_prompt` is `num_images`: FIELD_ALIASES); a field given under
  both names is rejected.
- SDXL's micro-conditioning pairs (`original_size`, `crops_coords_top_left`, ...) are JSON
  arrays of two integers (in CSV: a cell holding one, `[1024, 1024]`).
- `metadata` is a JSON object (in CSV: a cell holding a JSON object). A column jaxgen does not
  know rejects the row, naming the column and the nearest known field, unless the job names
  it in `metadata_columns` (or sets `unknown_columns="metadata"`): then it is merged into
  `metadata`, so a CSV with a `label` column ends up with `{"label": ...}` in every record; a
  name given both ways is rejected rather than silently overwritten.
- `init_image` / `mask_image` paths relative to the manifest resolve against the manifest
  file's directory (URIs and absolute paths are kept), here, so a request names its files
  wherever it is generated.
- An image-to-image or inpainting row's size is its own height/width, else its init image's
  own size rounded to the model's size multiple (read when it is generated): the job's
  height/width defaults (the model's native size) are for text-to-image rows.
- A value nested more than MAX_NESTING levels of lists/objects is rejected, naming its column,
  before repr, JSON or the runner's pickling could recurse past Python's limit on it.
- Text must be storable as UTF-8 (a lone surrogate, which a JSON escape can carry, is not):
  such a row is rejected here, naming the field, before it could stop a record or a PNG.
Every range/type check of the request itself is `validate_request`'s, not repeated here.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jaxgen.dataset.suggest import did_you_mean
from jaxgen.images import resolve_image_ref
from jaxgen.requests import (
    FIELD_ALIASES,
    REQUEST_FIELDS,
    GenerationRequest,
    RequestError,
    validate_request,
)

if TYPE_CHECKING:
    from jaxgen.dataset.config import JobConfig

_FIELD_NAMES = tuple(f.name for f in REQUEST_FIELDS)
_INT_FIELDS = frozenset(f.name for f in REQUEST_FIELDS if f.type is int)
_FLOAT_FIELDS = frozenset(f.name for f in REQUEST_FIELDS if f.type is float)
_JSON_FIELDS = frozenset(f.name for f in REQUEST_FIELDS if f.type is dict)
_PAIR_FIELDS = frozenset(f.name for f in REQUEST_FIELDS if f.type is tuple)  # [h, w], [top, left]
MAX_ID_CHARS = 256
MAX_NESTING = 64  # levels of lists/objects in one value: plenty for metadata, far from recursion
_MAX_EXACT_FLOAT = 2**53  # integral floats above this have lost digits already
_IMAGE_REFS = ("init_image", "mask_image")
_TEXT_FIELDS = ("prompt", "negative_prompt", "prompt_2", "id", *_IMAGE_REFS)


def normalize_id(value: Any) -> str | None:
    """The id a row is known by (for duplicate detection), or None if it has no usable id."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def row_to_request(
    fields: Mapping[str, Any],
    config: JobConfig,
    *,
    text_values: bool = False,
    fallback_seed: Callable[[str | None], int] | None = None,
    source: str | None = None,
) -> GenerationRequest:
    """Build and validate the request of one row; raise RequestError naming the bad field.

    fallback_seed(id) gives the seed when neither the row nor the defaults have one
    (called here so the request is built once: this runs for every row of a manifest).
    source: the manifest file's path, which relative image paths resolve against.
    """
    if fields.get("prompt") is None:
        if not config.empty_prompt:
            raise RequestError("prompt", None, "is missing; every row needs a prompt (this "
                               "model does not take an empty one)")
        fields = {**fields, "prompt": ""}  # the model's unconditional branch
    given: dict[str, Any] = {}
    extra: dict[str, Any] = {}
    for column, value in fields.items():
        _check_nesting(column, value)
        name = FIELD_ALIASES.get(column, column)
        if value is None and name in _FIELD_NAMES:
            continue  # JSON null: not given, so the default applies (as for a Parquet null)
        if name not in _FIELD_NAMES:
            extra[column] = value
            continue
        if name in given:
            raise RequestError(name, value, f"is given twice (also as {column!r})")
        given[name] = _parse_text(name, value) if text_values else _coerce(name, value)
        _check_nesting(column, given[name])  # a CSV cell's JSON, once parsed
    _check_text(given)
    metadata = _merge_metadata(given.get("metadata"), extra, config.unknown_columns,
                               config.metadata_columns)
    if metadata is not None:
        _check_metadata(metadata, config.max_metadata_bytes)
    given["metadata"] = metadata
    if isinstance(given.get("id"), str) and len(given["id"]) > MAX_ID_CHARS:
        raise RequestError("id", given["id"], f"is longer than {MAX_ID_CHARS} characters")
    defaults = dict(config.defaults)
    if given.get("init_image") is not None:
        for side in ("height", "width"):
            defaults.pop(side, None)
            given.setdefault(side, None)  # None: the init image's own, when it is read
    merged = {**defaults, **given}
    if merged.get("seed") is None and fallback_seed is not None:
        merged["seed"] = fallback_seed(merged.get("id"))
    request = GenerationRequest(**merged)
    request = validate_request(request, size_multiple=config.required_multiple,
                               prompt_required=not config.empty_prompt)
    if source is not None:
        resolved = {name: resolve_image_ref(getattr(request, name), source, field=name)
                    for name in _IMAGE_REFS if getattr(request, name) is not None}
        request = dataclasses.replace(request, **resolved)
    return request


def _check_nesting(name: str, value: Any) -> None:
    """Reject a value nested deeper than MAX_NESTING, before anything recurses into it:
    repr, json.dumps and the runner's pickling of the row would hit Python's recursion limit."""
    level, depth = [value], 0
    while containers := [v for v in level if isinstance(v, dict | list | tuple)]:
        depth += 1
        if depth > MAX_NESTING:
            raise RequestError(name, f"{depth}+ levels", f"is nested more than {MAX_NESTING} "
                               "levels deep")
        level = [v for c in containers for v in (c.values() if isinstance(c, dict) else c)]


def _check_text(fields: Mapping[str, Any]) -> None:
    for name in _TEXT_FIELDS:
        value = fields.get(name)
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError as e:
                raise RequestError(name, value, f"holds text UTF-8 cannot store ({e.reason} "
                                   f"at character {e.start})") from None


def _coerce(name: str, value: Any) -> Any:
    if name in _INT_FIELDS and isinstance(value, float) and value.is_integer():
        if abs(value) <= _MAX_EXACT_FLOAT:
            return int(value)
    if name in _FLOAT_FIELDS and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if name == "id" and value is not None:
        if isinstance(value, int) and not isinstance(value, bool):
            return str(value)
        if not isinstance(value, str):
            raise RequestError("id", value, "must be a non-empty string or an integer")
    if name == "sampler" and isinstance(value, str):
        return value.strip().lower()
    if name in _PAIR_FIELDS and isinstance(value, list | tuple):
        return tuple(_coerce("height", v) for v in value)  # integral floats, as an int field's
    return value


def _parse_text(name: str, text: str) -> Any:
    """A CSV cell to the field's type; a cell that does not parse names the field."""
    if name in _INT_FIELDS:
        try:
            return int(text.strip())
        except ValueError:
            raise RequestError(name, text, "must be an integer") from None
    if name in _FLOAT_FIELDS:
        try:
            return float(text.strip())
        except ValueError:
            raise RequestError(name, text, "must be a number") from None
    if name in _JSON_FIELDS or name in _PAIR_FIELDS:
        kind = "object" if name in _JSON_FIELDS else "array of two integers"
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise RequestError(name, text, f"must hold a JSON {kind}: {e.msg}") from None
        except (RecursionError, ValueError) as e:  # too deep; an integer of too many digits
            raise RequestError(name, text[:40], f"must hold a JSON {kind} Python can read "
                               f"({type(e).__name__}: {e})") from None
        return _coerce(name, value)
    return _coerce(name, text)


def _merge_metadata(
    metadata: Any, extra: dict[str, Any], policy: str, metadata_columns: tuple[str, ...]
) -> dict[str, Any] | None:
    if metadata is not None and not isinstance(metadata, dict):
        raise RequestError("metadata", metadata, "must be a JSON object")
    if policy != "metadata":
        unknown = sorted(set(extra) - set(metadata_columns))
        if unknown and policy == "reject":
            name = unknown[0]
            if not name.strip():  # else the reject would name the field ""
                raise RequestError("column", name, "has an empty name; give it one or drop it")
            hint = did_you_mean(name, (*_FIELD_NAMES, *FIELD_ALIASES))
            raise RequestError(
                name, extra[name], f"is not a known field{hint} (known: "
                f"{', '.join(_FIELD_NAMES)}); to keep it as metadata: --metadata-columns {name}"
            )
        extra = {k: v for k, v in extra.items() if k in metadata_columns}
    if not extra:
        return metadata
    merged = dict(metadata or {})
    for name in sorted(extra):
        if name in merged:
            raise RequestError(
                "metadata", name, "key is given both as a column and inside metadata"
            )
        merged[name] = extra[name]
    return merged


def _check_metadata(metadata: dict[str, Any], max_bytes: int) -> None:
    try:
        # allow_nan=False: NaN is not JSON, and the records must be readable by any JSON
        # reader (pyarrow, HF datasets), not only Python's.
        text = json.dumps(metadata, ensure_ascii=False, allow_nan=False)
        size = len(text.encode())
    except (TypeError, ValueError, RecursionError) as e:  # UnicodeEncodeError is a ValueError
        raise RequestError("metadata", metadata, f"is not plain JSON ({e})") from None
    if size > max_bytes:
        limit = f"is larger than max_metadata_bytes={max_bytes}"
        raise RequestError("metadata", f"{size} bytes", limit)
