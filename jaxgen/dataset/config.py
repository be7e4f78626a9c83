"""The job configuration: what to read, how to fill missing fields, what to write.

One frozen dataclass travels from the CLI (or a job YAML, or Python) to every worker. It
is plain data, so it pickles cheaply and its `to_dict()` is what `_job.json` and
`_dataset.json` record.

The chain of defaults, lowest first (each level wins over the ones above it):

  1. built-in    GenerationRequest's and JobConfig's field defaults (steps 25, guidance 7.5,
                 512x512, dpmpp_2m, webdataset, png, ...)
  2. model       the model's own recommended settings: `jaxgen.json` in its directory
                 (jaxgen.weights.model_dir.recommended_settings; the default model: 25 steps,
                 dpmpp_2m, guidance 2.5), and its native size as height and width; the same
                 however the model is named (no --model, a path, an HF-cache repo id)
  3. job YAML    --job-config FILE: JobConfig keys, and row fields under `defaults:`
  4. flags       jaxgen generate's (or the Beam launcher's) flags
  5. row         a manifest row's own fields
`load_job_config` applies 1-4; rows.row_to_request applies 5. The Python API
(jaxgen.generate) follows the same chain without 3 and 4.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from jaxgen.dataset.suggest import did_you_mean
from jaxgen.images import DEFAULT_RESIZE, RESIZE_POLICIES
from jaxgen.requests import (
    DEFAULTABLE_FIELDS,
    FIELD_ALIASES,
    REQUEST_FIELDS,
    ConfigError,
    GenerationRequest,
    RequestError,
    validate_request,
)

OUTPUT_FORMATS = ("webdataset", "parquet", "imagefolder")
IMAGE_FORMATS = ("png", "webp", "jpeg")
MANIFEST_FORMATS = ("auto", "jsonl", "csv", "tsv", "parquet", "txt")
UNKNOWN_COLUMN_POLICIES = ("reject", "metadata", "ignore")

_FILTER_NAME = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# Keys ignored when a rerun compares its config with the one in `_job.json`: they do not
# change a single output byte.
_NOT_COMPARED = frozenset({"output", "dry_run", "host_index", "host_count"})


@dataclasses.dataclass(frozen=True)
class JobConfig:
    """Everything a dataset job needs except the generator.

    manifest: a path or glob, or several separated by commas (any Beam filesystem).
    defaults: values for row fields the manifest leaves out (keys: DEFAULTABLE_FIELDS).
    unknown_columns: what to do with a manifest column jaxgen does not know (neither a field
      nor one of diffusers' names for one): "reject" (default) rejects the row, naming the
      column and the nearest field; "metadata" carries every such column into the record's
      user metadata; "ignore" drops them (said explicitly, never by default).
    metadata_columns: columns carried into the record's user metadata whatever the policy.
    max_line_bytes: longer manifest lines (or CSV records) are rejected unread, which also
      bounds the memory one row can take.
    resize: how an init image (and its mask) is fitted to its row's size: crop, fit or
      stretch (jaxgen.images.fit_to_size). The generator takes it when it is built.
    """

    manifest: str
    output: str
    output_format: str = "webdataset"
    image_format: str = "png"
    image_quality: int = 90
    shard_size: int = 10_000
    job_seed: int = 0
    manifest_format: str = "auto"
    defaults: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    unknown_columns: str = "reject"
    metadata_columns: tuple[str, ...] = ()
    max_line_bytes: int = 1 << 20
    max_metadata_bytes: int = 64 << 10
    size_multiple: int | None = None  # None: the spec's size_multiple(), else 8
    # Rows may leave the prompt out or empty: the model says it draws from its unconditional
    # branch (jaxgen.json "empty_prompt"); filled from the spec's empty_prompt().
    empty_prompt: bool = False
    resize: str = DEFAULT_RESIZE
    # Write images that fail their checks (jaxgen.dataset.flags), flagged in their records,
    # instead of rejecting their rows.
    keep_flagged: bool = False
    # A labelled dataset (jaxgen augment): its class names. Each record then carries `label`
    # (its row's metadata "label") and `cls` (that label's index here); webdataset adds KEY.cls.
    labels: tuple[str, ...] = ()
    # "module:function" scoring each image on the worker after generation (jaxgen.dataset.
    # filter); a dropped image is written to _dropped/ with its reason, not to the dataset.
    filter: str | None = None
    dry_run: bool = False
    # Multi-host (e.g. a TPU pod without a Beam cluster): every host runs the same job and
    # generates the shards s with s % host_count == host_index; the last to finish writes
    # _dataset.json. No cross-host communication.
    host_index: int = 0
    host_count: int = 1

    def __post_init__(self) -> None:
        # A frozen dataclass with a dict field: freeze a private copy so callers cannot
        # change the config under a running job.
        object.__setattr__(self, "defaults", dict(self.defaults))
        object.__setattr__(self, "metadata_columns", _names(self.metadata_columns))
        object.__setattr__(self, "labels", _labels(self.labels))
        if self.filter is not None and not _FILTER_NAME.match(str(self.filter)):
            raise ConfigError(f"filter {self.filter!r}: must name a function as "
                              "module:function (e.g. jaxgen.augment.filters:shapes_label)")
        _check_choice("output_format", self.output_format, OUTPUT_FORMATS)
        _check_choice("image_format", self.image_format, IMAGE_FORMATS)
        _check_choice("manifest_format", self.manifest_format, MANIFEST_FORMATS)
        _check_choice("unknown_columns", self.unknown_columns, UNKNOWN_COLUMN_POLICIES)
        _check_choice("resize", self.resize, RESIZE_POLICIES)
        _check_int("image_quality", self.image_quality, 1, 100)
        _check_int("shard_size", self.shard_size, 1, 10**7)
        _check_int("job_seed", self.job_seed, 0, 2**63 - 1)
        _check_int("max_line_bytes", self.max_line_bytes, 64, 1 << 30)
        _check_int("max_metadata_bytes", self.max_metadata_bytes, 2, 1 << 30)
        if self.size_multiple is not None:
            _check_int("size_multiple", self.size_multiple, 1, 1024)
        if not isinstance(self.keep_flagged, bool):
            raise ConfigError(f"keep_flagged {self.keep_flagged!r}: must be true or false")
        _check_int("host_count", self.host_count, 1, 1 << 16)
        _check_int("host_index", self.host_index, 0, self.host_count - 1)
        if not isinstance(self.manifest, str) or not self.manifest.strip():
            raise ConfigError(f"manifest {self.manifest!r}: give a path or glob")
        if not isinstance(self.output, str) or not self.output.strip():
            raise ConfigError(f"output {self.output!r}: give an output directory")
        unknown = sorted(set(self.defaults) - set(DEFAULTABLE_FIELDS))
        if unknown:
            valid = ", ".join(DEFAULTABLE_FIELDS)
            hint = did_you_mean(unknown[0], (*DEFAULTABLE_FIELDS, *FIELD_ALIASES))
            raise ConfigError(f"defaults.{unknown[0]}: not a defaultable field{hint} "
                              f"(valid: {valid})")
        known = set(FIELD_ALIASES) | {f.name for f in REQUEST_FIELDS}
        clash = sorted(set(self.metadata_columns) & known)
        if clash:
            raise ConfigError(f"metadata_columns {clash}: already row fields, not metadata")
        try:
            validate_request(self.base_request(), size_multiple=self.required_multiple)
        except RequestError as e:
            raise ConfigError(f"defaults.{e}") from None

    @property
    def required_multiple(self) -> int:
        """Heights and widths must be multiples of this."""
        return self.size_multiple or 8

    @property
    def manifest_patterns(self) -> list[str]:
        return [p.strip() for p in self.manifest.split(",") if p.strip()]

    def base_request(self) -> GenerationRequest:
        """The request a row with only a prompt turns into."""
        return GenerationRequest(prompt="x", **self.defaults)

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["defaults"] = dict(sorted(self.defaults.items()))
        d["metadata_columns"] = list(self.metadata_columns)
        d["labels"] = list(self.labels)
        # Settings added for labelled datasets are recorded only when used, so a job written
        # before they existed still resumes.
        for name in ("labels", "filter"):
            if not d[name]:
                del d[name]
        return d

    def comparable(self) -> dict[str, Any]:
        """The settings that must match for a rerun to resume an existing output."""
        return {k: v for k, v in self.to_dict().items() if k not in _NOT_COMPARED}

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> JobConfig:
        """Build from a dict (a job YAML, CLI flags); unknown keys are an error, not ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            hint = did_you_mean(unknown[0], names)
            raise ConfigError(f"job setting {unknown[0]!r}: unknown{hint} (valid: "
                              f"{', '.join(sorted(names))})")
        return cls(**dict(values))


def load_job_config(job_file: str | None, settings: Mapping[str, Any],
                    model_defaults: Mapping[str, Any] | None = None) -> JobConfig:
    """The job of a command line, from its settings lowest first (the chain of defaults in
    this module's docstring): JobConfig's defaults, the model's own defaults for row fields
    (`model_defaults`), the job YAML (`job_file`), then `settings`.

    settings: the command's flags by name, JobConfig keys and row fields (DEFAULTABLE_FIELDS)
    alike; None means "not given". Both `jaxgen generate` and the Beam launcher call this.
    """
    values: dict[str, Any] = {}
    if job_file:
        loaded = yaml.safe_load(Path(job_file).read_text()) or {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"job config {job_file}: must be a mapping of job settings")
        values.update(loaded)
    defaults = dict(values.pop("defaults", None) or {})
    for alias, name in FIELD_ALIASES.items():  # diffusers' names, as in a manifest
        if alias in defaults:
            if name in defaults:
                raise ConfigError(f"defaults: {name} is given twice (also as {alias})")
            defaults[name] = defaults.pop(alias)
    for name, value in settings.items():
        if value is not None:
            (defaults if name in DEFAULTABLE_FIELDS else values)[name] = value
    for name, value in (model_defaults or {}).items():
        defaults.setdefault(name, value)
    return JobConfig.from_mapping({**values, "defaults": defaults})


def _names(value: Any) -> tuple[str, ...]:
    """Column names from a list or a comma-separated string (as a flag gives them)."""
    items = value.split(",") if isinstance(value, str) else list(value or ())
    if not all(isinstance(v, str) for v in items):
        raise ConfigError(f"metadata_columns {value!r}: must be column names")
    return tuple(v.strip() for v in items if v.strip())


def _labels(value: Any) -> tuple[str, ...]:
    labels = tuple(value or ())
    if not all(isinstance(v, str) and v for v in labels) or len(set(labels)) != len(labels):
        raise ConfigError(f"labels {value!r}: must be distinct non-empty class names")
    return labels


def _check_choice(name: str, value: Any, valid: tuple[str, ...]) -> None:
    if value not in valid:
        raise ConfigError(f"{name} {value!r}: not one of {', '.join(valid)}")


def _check_int(name: str, value: Any, lo: int, hi: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise ConfigError(f"{name} {value!r}: must be an integer in [{lo}, {hi}]")
