"""Resume and summary: which shards are complete, is this the same job, what was made.

- A shard is complete when its `NAME_stats.json` exists and every file it lists exists with
  the size it records (a stats file is written last, so a crash leaves none).
- `_job.json` (written at the first real run) holds the settings and the manifest file
  list; a rerun into the same output must match it, since resuming with another manifest
  or shard size would mix two plans in one dataset.
- `_dataset.json` (written when every shard is complete) sums the stats of all shards,
  including those written by earlier runs.
"""

from __future__ import annotations

import datetime
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.manifest import ManifestFile
from jaxgen.dataset.plan import Layout
from jaxgen.dataset.records import dumps_stable, runtime_versions
from jaxgen.dataset.writers import IMAGEFOLDER_PARTS_DIR, TMP_DIR, join
from jaxgen.requests import ConfigError

JOB_FILE = "_job.json"
SUMMARY_FILE = "_dataset.json"
PLAN_FILE = "_plan.json"
_STATS_SUFFIX = "_stats.json"


class JobMismatch(ConfigError):
    """The output directory holds (part of) a job with other settings or another manifest.

    A ConfigError: the command line ends in its one-line message, not a traceback."""


def read_json(path: str) -> Any | None:
    if not FileSystems.exists(path):
        return None
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return json.loads(f.read().decode())


def write_file(path: str, data: bytes) -> None:
    """Write via a temp name and a rename, so a reader never sees half a file."""
    tmp = path + ".tmp"
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(data)
    FileSystems.rename([tmp], [path])


def write_json(path: str, value: Any) -> None:
    text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_file(path, text.encode())


def check_or_record_job(config: JobConfig, files: Sequence[ManifestFile]) -> None:
    """Raise JobMismatch if the output holds another job; record this one if it is new."""
    path = join(config.output, JOB_FILE)
    record = {
        "config": config.comparable(),
        "manifest_files": [[f.path, f.size] for f in files],
    }
    existing = read_json(path)
    if existing is None:
        write_json(path, record)
        return
    old, new = existing.get("config", {}), record["config"]
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            raise JobMismatch(
                f"{key} {new.get(key)!r}: the output {config.output} holds a job with "
                f"{key}={old.get(key)!r}; rerun with the same settings to resume, choose "
                f"another output, or delete {path} to start over"
            )
    if existing.get("manifest_files") != record["manifest_files"]:
        raise JobMismatch(
            f"manifest {config.manifest!r}: its files (or their sizes) differ from those of "
            f"the job in {config.output}; a changed manifest would change the plan. Choose "
            f"another output, or delete {path} to start over"
        )


def _stats_paths(output: str) -> dict[int, str]:
    found = {}
    for meta in FileSystems.match([join(output, "*" + _STATS_SUFFIX)])[0].metadata_list:
        name = meta.path.rsplit("/", 1)[-1][: -len(_STATS_SUFFIX)]
        if name.isdigit():
            found[int(name)] = meta.path
    return found


def complete_shards(output: str, num_shards: int) -> set[int]:
    """Shards of the plan whose stats file and every file it lists are in place."""
    found = _stats_paths(output)
    return {s for s, path in found.items() if s < num_shards and shard_is_complete(output, path)}


def shard_is_complete(output: str, stats_path: str) -> bool:
    """True if the stats file exists and every file it lists has the size it records."""
    stats = read_json(stats_path)
    if stats is None:
        return False
    listed = stats.get("files", {})
    paths = [join(output, rel) for rel in sorted(listed)]
    matches = FileSystems.match(paths) if paths else []
    sizes = [m.metadata_list[0].size_in_bytes if m.metadata_list else None for m in matches]
    return sizes == [listed[rel]["bytes"] for rel in sorted(listed)]


def _read_all_stats(output: str, layout: Layout) -> list[dict[str, Any]]:
    paths = _stats_paths(output)
    missing = [s for s in range(layout.num_shards) if s not in paths]
    if missing:
        names = ", ".join(layout.shard_name(s) for s in missing[:10])
        raise RuntimeError(
            f"{len(missing)} shard(s) have no stats file after the run ({names}); "
            "rerun the same command to finish them"
        )
    return [read_json(paths[s]) for s in range(layout.num_shards)]


def write_summary(
    config: JobConfig,
    layout: Layout,
    file_rows: Sequence[tuple[str, int]],
    written: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """Check every row is accounted for, then write `_dataset.json` and clean temp files."""
    all_stats = _read_all_stats(config.output, layout)
    written = list(written)
    read = sum(s["count"] for s in all_stats)
    generated = sum(s["successes"] for s in all_stats)
    rejected = sum(s["failures"] for s in all_stats)
    if not read == layout.total_rows == generated + rejected:
        raise RuntimeError(
            f"rows read {layout.total_rows}, in shard stats {read} = generated {generated} + "
            f"rejected {rejected}: the counts disagree"
        )
    by_field: Counter[str] = Counter()
    for s in all_stats:
        by_field.update(s["failures_by_field"])
    models = sorted({(s["model_name"], s["model_hash"]) for s in all_stats if s["successes"]})
    devices = {dumps_stable(s["device_info"]) for s in all_stats if s.get("device_info")}
    seconds = sum(s["duration_s"] for s in written)
    images_written = sum(s["images"] for s in written)
    summary = {
        "jaxgen_dataset": 1,
        "complete": True,
        "config": config.to_dict(),
        "manifest": {"files": [{"path": p, "rows": n} for p, n in file_rows], "rows": read},
        "model": {"name": models[0][0], "hash": models[0][1]} if len(models) == 1 else None,
        "models": [{"name": n, "hash": h} for n, h in models],
        "devices": [json.loads(d) for d in sorted(devices)],
        "versions": runtime_versions(),
        "worker_versions": all_stats[-1]["versions"] if all_stats else None,
        "counts": {
            "rows_read": read,
            "rows_generated": generated,
            "rows_rejected": rejected,
            "rejects_by_field": dict(sorted(by_field.items())),
            "images": sum(s["images"] for s in all_stats),
            # Stats written before the image checks existed have no such keys.
            "images_flagged": sum(s.get("images_flagged", 0) for s in all_stats),
            "flagged_by_check": dict(sorted(sum(
                (Counter(s.get("flagged_by_check", {})) for s in all_stats), Counter()).items())),
            "shards": layout.num_shards,
            "shards_written": len(written),
            "shards_skipped": layout.num_shards - len(written),
        },
        "this_run": {
            "images": images_written,
            "shard_seconds": round(seconds, 3),
            "images_per_shard_second": round(images_written / seconds, 3) if seconds else None,
        },
        "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if config.output_format == "imagefolder":
        _write_imagefolder_metadata(config.output, layout)
    _remove_temp(config.output)
    write_json(join(config.output, SUMMARY_FILE), summary)
    return summary


def _write_imagefolder_metadata(output: str, layout: Layout) -> None:
    """Concatenate the per-shard parts into the one `metadata.jsonl` HF `datasets` reads."""
    tmp = join(output, "metadata.jsonl.tmp")
    with FileSystems.create(tmp, compression_type=CompressionTypes.UNCOMPRESSED) as out:
        for shard in range(layout.num_shards):
            part = join(output, IMAGEFOLDER_PARTS_DIR, f"{layout.shard_name(shard)}.jsonl")
            with FileSystems.open(part, compression_type=CompressionTypes.UNCOMPRESSED) as f:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
    FileSystems.rename([tmp], [join(output, "metadata.jsonl")])


def _remove_temp(output: str) -> None:
    # Only once every shard is complete: no attempt can still be writing there.
    tmp = join(output, TMP_DIR)
    if FileSystems.exists(tmp):
        FileSystems.delete([tmp])


def plan_report(
    config: JobConfig,
    layout: Layout,
    file_rows: Sequence[tuple[str, int]],
    shard_counts: Mapping[int, Mapping[str, Any]],
    complete: set[int],
) -> dict[str, Any]:
    """The dry run's report: what a real run would generate, and what it would reject."""
    by_field: Counter[str] = Counter()
    for c in shard_counts.values():
        by_field.update(c["rejects_by_field"])
    valid = sum(c["valid"] for c in shard_counts.values())
    rejected = sum(c["rejected"] for c in shard_counts.values())
    todo = [s for s in range(layout.num_shards) if s not in complete]
    report = {
        "dry_run": True,
        "config": config.to_dict(),
        "manifest": {"files": [{"path": p, "rows": n} for p, n in file_rows]},
        "counts": {
            "rows_read": layout.total_rows,
            "rows_valid": valid,
            "rows_rejected": rejected,
            "rejects_by_field": dict(sorted(by_field.items())),
            "images_planned": sum(c["images"] for c in shard_counts.values()),
            "shards": layout.num_shards,
            "shards_complete": len(complete),
            "shards_to_generate": len(todo),
        },
        "shards_to_generate": [layout.shard_name(s) for s in todo[:1000]],
    }
    if valid + rejected != layout.total_rows:
        raise RuntimeError(
            f"rows read {layout.total_rows} != valid {valid} + rejected {rejected}"
        )
    _remove_temp(config.output)  # the dry run's rejects went through temp names too
    write_json(join(config.output, PLAN_FILE), report)
    return report
