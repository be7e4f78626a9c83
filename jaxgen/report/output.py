"""What a dataset output directory says about its run: counts, settings, timings, rejects.

Read from the small files only (`_job.json`, `_dataset.json`, `NAME_stats.json`,
`_rejects/*.jsonl`), so a report of a million images costs no more here than one of ten.
A partial output (a job still running or stopped) reads too: its counts are the complete
shards' sums.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from pathlib import Path
from typing import Any

from jaxgen.dataset.read import shard_stats
from jaxgen.dataset.resume import JOB_FILE, SUMMARY_FILE
from jaxgen.dataset.writers import REJECTS_DIR

REJECT_EXAMPLES = 5  # rows shown per reject group


@dataclasses.dataclass(frozen=True)
class RejectGroup:
    """The rejects that name one field, with the first few rows as examples."""

    field: str
    count: int
    examples: list[dict[str, Any]]


@dataclasses.dataclass(frozen=True)
class RunFacts:
    out_dir: Path
    complete: bool
    output_format: str
    shard_names: list[str]  # complete shards, in order
    counts: dict[str, int]
    settings: dict[str, Any]  # flat "a.b" keys, in reading order
    timings: dict[str, Any]
    rejects: list[RejectGroup]  # largest group first


def _read_json(path: Path) -> Any | None:
    return json.loads(path.read_text()) if path.exists() else None


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; lists and scalars stay as they are."""
    if not isinstance(value, dict):
        return {prefix: value}
    flat: dict[str, Any] = {}
    for key, item in value.items():
        flat.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    return flat


def _settings(job: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    settings: dict[str, Any] = {}
    models = summary.get("models") or ([summary["model"]] if summary.get("model") else [])
    if models:  # a resumed job may have used more than one
        settings["model"] = "; ".join(f"{m.get('name')} ({m.get('hash')})" for m in models)
    config = dict(job.get("config") or summary.get("config") or {})
    defaults = config.pop("defaults", {})
    settings.update(flatten(defaults, "defaults"))
    settings.update(flatten(config))
    devices = [
        ", ".join(f"{k}={v}" for k, v in flatten(d).items() if k != "process_index")
        for d in summary.get("devices") or []
    ]
    if devices:
        settings["devices"] = "; ".join(devices)
    versions = summary.get("versions") or {}
    if "jaxgen" in versions:
        settings["jaxgen"] = versions["jaxgen"]
    return settings


def _counts(stats: list[dict[str, Any]], summary: dict[str, Any]) -> dict[str, int]:
    planned = (summary.get("counts") or {}).get("shards")
    return {
        "rows_read": sum(s["count"] for s in stats),
        "rows_generated": sum(s["successes"] for s in stats),
        "rows_rejected": sum(s["failures"] for s in stats),
        "images": sum(s["images"] for s in stats),
        "shards_complete": len(stats),
        "shards": planned if planned is not None else len(stats),
    }


def _timings(stats: list[dict[str, Any]]) -> dict[str, Any]:
    timed = [s for s in stats if s.get("duration_s") is not None]
    if not timed:
        return {}
    seconds = sum(s["duration_s"] for s in timed)
    images = sum(s["images"] for s in timed)
    starts = [datetime.datetime.fromisoformat(s["start_time"]) for s in timed]
    ends = [datetime.datetime.fromisoformat(s["end_time"]) for s in timed]
    wall = (max(ends) - min(starts)).total_seconds()
    slowest = max(timed, key=lambda s: s["duration_s"])
    return {
        "first shard started": min(starts).isoformat(),
        "last shard ended": max(ends).isoformat(),
        "wall time": _duration(wall),
        "shard time (sum)": _duration(seconds),
        "images per second (wall)": round(images / wall, 3) if wall > 0 else None,
        "images per shard-second": round(images / seconds, 3) if seconds > 0 else None,
        "mean shard time": _duration(seconds / len(timed)),
        "slowest shard": f"{slowest['name']} ({_duration(slowest['duration_s'])})",
    }


def _duration(seconds: float) -> str:
    minutes, secs = divmod(seconds, 60)
    hours, minutes = divmod(int(minutes), 60)
    if hours:
        return f"{hours}h {minutes:02d}m {secs:04.1f}s"
    return f"{minutes}m {secs:04.1f}s" if minutes else f"{secs:.1f}s"


def _rejects(out_dir: Path, shard_names: list[str]) -> list[RejectGroup]:
    counts: dict[str, int] = {}
    examples: dict[str, list[dict[str, Any]]] = {}
    for name in shard_names:
        path = out_dir / REJECTS_DIR / f"{name}.jsonl"
        if not path.exists():
            continue
        with path.open() as f:  # streamed: a shard of rejects can be large
            for line in f:
                if not line.strip():
                    continue
                row = json.loads(line)
                field = str(row.get("field") or "row")
                counts[field] = counts.get(field, 0) + 1
                shown = examples.setdefault(field, [])
                if len(shown) < REJECT_EXAMPLES:
                    shown.append(row)
    order = sorted(counts, key=lambda f: (-counts[f], f))
    return [RejectGroup(f, counts[f], examples[f]) for f in order]


def read_run(out_dir: Path) -> RunFacts:
    """The facts of the output at `out_dir`; raises FileNotFoundError if it holds no job."""
    job = _read_json(out_dir / JOB_FILE)
    summary = _read_json(out_dir / SUMMARY_FILE) or {}
    if job is None and not summary:
        raise FileNotFoundError(
            f"{out_dir}: no {JOB_FILE} or {SUMMARY_FILE}; is this the --out of a "
            "`jaxgen generate` run?"
        )
    stats = shard_stats(out_dir)
    shard_names = [s["name"] for s in stats]
    config = (job or {}).get("config") or summary.get("config") or {}
    output_format = config.get("output_format") or (
        stats[0].get("output_format") if stats else "webdataset"
    )
    return RunFacts(
        out_dir=out_dir,
        complete=bool(summary.get("complete")),
        output_format=output_format,
        shard_names=shard_names,
        counts=_counts(stats, summary),
        settings=_settings(job or {}, summary),
        timings=_timings(stats),
        rejects=_rejects(out_dir, shard_names),
    )
