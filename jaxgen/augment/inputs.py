"""Labelled datasets as users hold them, read on any Beam filesystem.

- imagefolder: a directory with one sub-folder per class (`DIR/cat/1.png`), or with a
  `metadata.jsonl` whose rows name a `file_name` and a label column (`label`, else `cls`), as
  HF `datasets` writes it.
- webdataset: tar files (a path, a glob, or several separated by commas) whose samples hold an
  image member and a `cls` or `label` member (`KEY.png` + `KEY.cls`).
- parquet: files with an image column (`image` as HF's {bytes, path} struct, or raw bytes) and a
  label column; integer labels of an HF `ClassLabel` column are read as their names.

Each image becomes a LabelledImage: its key (unique in the dataset, no dots), label, bytes or
path, and the sha256 of its bytes. Files are matched as manifests are (match_manifest).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import tarfile
from typing import Any

from apache_beam.io.filesystems import FileSystems

from jaxgen.augment.recipe import INPUT_FORMATS
from jaxgen.dataset.manifest import ManifestError, match_manifest

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp")
LABEL_KEYS = ("label", "cls")  # the label member / column, first found
_KEY_CHARS = re.compile(r"[^A-Za-z0-9_-]+")


@dataclasses.dataclass(frozen=True)
class LabelledImage:
    """One real image of the input: `path` when it can be read where it lies, else `data`."""

    key: str
    label: str
    sha256: str
    path: str | None = None
    data: bytes | None = None
    suffix: str = ".png"


def detect_input_format(source: str) -> str:
    name = source.split(",")[0].strip().lower()
    if name.endswith(".tar") or ".tar" in name.rsplit("/", 1)[-1]:
        return "webdataset"
    if name.endswith(".parquet"):
        return "parquet"
    return "imagefolder"


def read_labelled(source: str, input_format: str = "auto") -> list[LabelledImage]:
    """Every image of the dataset at `source`, sorted by key; ValueError naming the file and
    what is wrong (no label, a label that is not text or an integer, no image)."""
    if input_format not in INPUT_FORMATS:
        raise ValueError(f"input format {input_format!r}: not one of {', '.join(INPUT_FORMATS)}")
    fmt = detect_input_format(source) if input_format == "auto" else input_format
    items = {"imagefolder": _imagefolder, "webdataset": _webdataset, "parquet": _parquet}[fmt](
        source)
    if not items:
        raise ValueError(f"input {source}: no labelled image found (read as {fmt})")
    seen: dict[str, LabelledImage] = {}
    for item in items:
        if item.key in seen:
            raise ValueError(f"input {source}: key {item.key!r} names two images")
        seen[item.key] = item
    return sorted(items, key=lambda i: i.key)


def label_text(value: Any, where: str, names: list[str] | None = None) -> str:
    """A label as text: a string as is, an integer as its class name (or decimal digits)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "strict").strip()
    if isinstance(value, int) and not isinstance(value, bool):
        return names[value] if names and 0 <= value < len(names) else str(value)
    if isinstance(value, str) and value.strip():
        return value.strip()
    raise ValueError(f"{where}: label {value!r} is not a non-empty text or an integer")


def _key(text: str) -> str:
    """A key safe in every output format (no dots or slashes)."""
    return _KEY_CHARS.sub("_", text).strip("_") or "image"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read(path: str) -> bytes:
    with FileSystems.open(path) as f:
        return f.read()


def _files(pattern: str, fmt: str) -> list[str]:
    try:
        return [f.path for f in match_manifest([p.strip() for p in pattern.split(",")], fmt)]
    except ManifestError as e:
        raise ValueError(str(e).replace("manifest", "input")) from None


def _imagefolder(root: str) -> list[LabelledImage]:
    root = root.rstrip("/")
    metadata = FileSystems.join(root, "metadata.jsonl")
    if FileSystems.exists(metadata):
        return _imagefolder_metadata(root, metadata)
    found = FileSystems.match([FileSystems.join(root, "*", "*")])[0].metadata_list
    items = []
    for meta in found:
        rel = meta.path[len(root) + 1:]
        label, _, name = rel.partition("/")
        stem, dot, suffix = name.rpartition(".")
        if "/" in name or "." + suffix.lower() not in IMAGE_SUFFIXES or not dot:
            continue
        data = _read(meta.path)
        items.append(LabelledImage(_key(f"{label}_{stem}"), label, _sha256(data), path=meta.path,
                                   suffix="." + suffix.lower()))
    if not items:
        raise ValueError(f"input {root}: no metadata.jsonl and no images in class sub-folders "
                         f"(DIR/LABEL/NAME{{{','.join(IMAGE_SUFFIXES)}}})")
    return items


def _imagefolder_metadata(root: str, metadata: str) -> list[LabelledImage]:
    items = []
    for line_no, line in enumerate(_read(metadata).decode().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{metadata} line {line_no}"
        row = json.loads(line)
        if not isinstance(row, dict) or not isinstance(row.get("file_name"), str):
            raise ValueError(f"{where}: needs a file_name")
        column = next((k for k in LABEL_KEYS if k in row), None)
        if column is None:
            raise ValueError(f"{where}: no label column (one of {', '.join(LABEL_KEYS)})")
        path = FileSystems.join(root, row["file_name"])
        data = _read(path)
        stem, _, suffix = row["file_name"].rpartition(".")
        items.append(LabelledImage(_key(stem), label_text(row[column], where), _sha256(data),
                                   path=path, suffix="." + suffix.lower()))
    return items


def _webdataset(pattern: str) -> list[LabelledImage]:
    items = []
    for path in _files(pattern, "tar"):
        samples: dict[str, dict[str, bytes]] = {}
        with FileSystems.open(path) as raw, tarfile.open(fileobj=raw, mode="r|*") as tar:
            for member in tar:
                f = tar.extractfile(member) if member.isfile() else None
                if f is None:
                    continue
                base = member.name.rsplit("/", 1)[-1]
                stem, dot, suffix = base.partition(".")
                samples.setdefault(member.name[: len(member.name) - len(base)] + stem, {})[
                    suffix.lower()] = f.read()
        for key, members in samples.items():
            where = f"{path} sample {key}"
            image = next((s for s in members if "." + s in IMAGE_SUFFIXES), None)
            column = next((k for k in LABEL_KEYS if k in members), None)
            if image is None or column is None:
                raise ValueError(f"{where}: needs an image ({', '.join(IMAGE_SUFFIXES)}) and a "
                                 f"label member ({', '.join('.' + k for k in LABEL_KEYS)}); has "
                                 f"{', '.join(sorted(members))}")
            text = members[column].decode().strip()
            label = label_text(int(text) if text.isdigit() else text, where)
            data = members[image]
            items.append(LabelledImage(_key(key), label, _sha256(data), data=data,
                                       suffix="." + image))
    return items


def _parquet(pattern: str) -> list[LabelledImage]:
    import pyarrow.parquet as pq

    items = []
    for path in _files(pattern, "parquet"):
        with FileSystems.open(path) as f:
            table = pq.read_table(f)
        column = next((k for k in LABEL_KEYS if k in table.column_names), None)
        if column is None or "image" not in table.column_names:
            raise ValueError(f"{path}: needs an image column and a label column (one of "
                             f"{', '.join(LABEL_KEYS)}); has {', '.join(table.column_names)}")
        names = _class_names(table.schema.metadata, column)
        keys = table.column("key").to_pylist() if "key" in table.column_names else None
        stem = _key(path.rsplit("/", 1)[-1].rsplit(".", 1)[0])
        for i, (image, label) in enumerate(zip(table.column("image").to_pylist(),
                                               table.column(column).to_pylist(), strict=True)):
            where = f"{path} row {i + 1}"
            data = image.get("bytes") if isinstance(image, dict) else image
            if not isinstance(data, bytes):
                raise ValueError(f"{where}: image holds no bytes")
            name = image.get("path") if isinstance(image, dict) else None
            suffix = "." + name.rsplit(".", 1)[-1].lower() if name and "." in name else ".png"
            key = _key(str(keys[i])) if keys else f"{stem}_{i:06d}"
            items.append(LabelledImage(key, label_text(label, where, names), _sha256(data),
                                       data=data, suffix=suffix))
    return items


def _class_names(metadata: dict[bytes, bytes] | None, column: str) -> list[str] | None:
    """The names of an HF `ClassLabel` column, from the schema metadata HF writes."""
    try:
        features = json.loads((metadata or {})[b"huggingface"])["info"]["features"]
        feature = features[column]
    except (KeyError, ValueError, TypeError):
        return None
    return list(feature["names"]) if feature.get("_type") == "ClassLabel" else None
