"""Resume and summary: which shards are complete, is this the same job, what was made.

- A shard is complete when its `NAME_stats.json` exists and every file it lists (and the
  folder of images it sums up, for imagefolder) has the sha256 it records. The stats file
  is written last, so a crash leaves none. A run starts by checking its shards' hashes
  (verify_shards): a damaged shard loses its stats file, is generated again, and is named
  in the log and in the summary. Checks during the run (a retried bundle) compare sizes.
- `_job.json` (written at the first real run) holds the settings that change pixels, the
  model's content hash and dtype, and each manifest file's sha256; a rerun into the same
  output must match it, since resuming another job would mix two in one dataset. The way
  to start over is `--restart`.
- `_dataset.json` (written when every shard is complete) sums the stats of all shards,
  including those written by earlier runs, and records each manifest file's sha256 and rows.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import logging
import os
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from apache_beam.io.filesystems import FileSystems

from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.manifest import ManifestFile
from jaxgen.dataset.plan import Layout
from jaxgen.dataset.records import dumps_stable, runtime_versions
from jaxgen.dataset.safe_io import (
    check_no_link,
    create_new,
    is_local,
    open_read,
    publish,
    read_bytes,
    write_file,
)
from jaxgen.dataset.writers import IMAGEFOLDER_PARTS_DIR, TMP_DIR, bulk_digest, join
from jaxgen.requests import ConfigError

JOB_FILE = "_job.json"
SUMMARY_FILE = "_dataset.json"
PLAN_FILE = "_plan.json"
_STATS_SUFFIX = "_stats.json"
_HASH_CHUNK = 1 << 20
RESTART_HINT = "rerun with --restart to start over (it removes what jaxgen wrote there)"
log = logging.getLogger("jaxgen.dataset")


class JobMismatch(ConfigError):
    """The output directory holds (part of) a job with other settings or another manifest.

    A ConfigError: the command line ends in its one-line message, not a traceback."""


class UnreadableFile(ValueError):
    """A file jaxgen wrote is there but is not what it wrote (empty, truncated, not JSON)."""


def _root(path: str) -> str:
    return path.rsplit("/", 1)[0] if not is_local(path) else os.path.dirname(path)


def read_json(path: str, root: str | None = None) -> Any | None:
    """The JSON in `path` (never read through a link under `root`), or None if absent;
    UnreadableFile naming the path when it holds no valid JSON."""
    data = read_bytes(root or _root(path), path)
    if data is None:
        return None
    try:
        return json.loads(data.decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise UnreadableFile(f"{path}: unreadable ({len(data)} bytes, {e})") from None


def write_json(path: str, value: Any, root: str | None = None) -> None:
    """Write via a fresh temp file, fsync and a rename: a reader never sees half a file."""
    text = json.dumps(value, indent=1, sort_keys=True, ensure_ascii=False) + "\n"
    write_file(root or _root(path), path, text.encode())


def job_record(config: JobConfig, files: Sequence[ManifestFile],
               model: Mapping[str, Any]) -> dict[str, Any]:
    """What `_job.json` holds: settings, model (content hash, dtype, ...) and manifest files."""
    return {
        "config": config.comparable(),
        "model": dict(sorted(model.items())),
        "manifest_files": [{"path": f.path, "bytes": f.size, "sha256": f.sha256} for f in files],
    }


def check_or_record_job(config: JobConfig, files: Sequence[ManifestFile],
                        model: Mapping[str, Any] | None = None) -> None:
    """Raise JobMismatch if the output holds another job; record this one if it is new.

    `model`: what of the generator changes pixels (content hash, dtype, ...), from the spec.
    """
    path = join(config.output, JOB_FILE)
    record = job_record(config, files, model or {})
    try:
        existing = read_json(path, config.output)
        if existing is not None and not isinstance(existing, dict):
            raise UnreadableFile(f"{path}: unreadable (not a JSON object)")
    except UnreadableFile as e:
        if _stats_paths(config.output):
            raise JobMismatch(f"{e}; it records the job that wrote the shards of "
                              f"{config.output}, so it cannot be resumed: {RESTART_HINT}") from None
        log.warning("%s; no shard is complete yet, so it is written again", e)
        existing = None
    if existing is None:
        write_json(path, record, config.output)
        return
    difference = _first_difference(existing, record)
    if difference:
        raise JobMismatch(f"{difference}: the output {config.output} holds another job; rerun "
                          f"with the same settings to resume, choose another output, or "
                          f"{RESTART_HINT}")


def _first_difference(old: Mapping[str, Any], new: Mapping[str, Any]) -> str | None:
    for section, label in (("config", "{key}"), ("model", "model {key}")):
        was, now = old.get(section) or {}, new.get(section) or {}
        for key in sorted(set(was) | set(now)):
            if was.get(key) != now.get(key):
                return f"{label.format(key=key)} {now.get(key)!r} (the job has {was.get(key)!r})"
    was_files = {f["path"]: f for f in old.get("manifest_files") or [] if isinstance(f, dict)}
    now_files = {f["path"]: f for f in new["manifest_files"]}
    for name in sorted(set(was_files) | set(now_files)):
        a, b = was_files.get(name), now_files.get(name)
        if a is None:
            return f"manifest file {name}: not in the job"
        if b is None:
            return f"manifest file {name}: in the job, not in this run's manifest"
        if (a.get("sha256"), a.get("bytes")) != (b["sha256"], b["bytes"]):
            return (f"manifest file {name}: its content changed (sha256 {b['sha256'][:12]}..., "
                    f"the job read {str(a.get('sha256'))[:12]}...)")
    return None


def _stats_paths(output: str) -> dict[int, str]:
    found = {}
    for meta in FileSystems.match([join(output, "*" + _STATS_SUFFIX)])[0].metadata_list:
        name = meta.path.rsplit("/", 1)[-1][: -len(_STATS_SUFFIX)]
        if name.isdigit():
            found[int(name)] = meta.path
    return found


def complete_shards(output: str, num_shards: int) -> set[int]:
    """Shards of the plan whose stats file and every file it lists are in place (sizes:
    a check during the run, after verify_shards checked the hashes at its start)."""
    found = _stats_paths(output)
    return {s for s, path in found.items() if s < num_shards and shard_is_complete(output, path)}


def shard_is_complete(output: str, stats_path: str) -> bool:
    """True if the stats file is readable and every file it lists has the size it records."""
    return shard_problem(output, stats_path, hashes=False) is None


def shard_problem(output: str, stats_path: str, *, hashes: bool = True) -> str | None:
    """None if the shard is complete; else why not, naming the file. `hashes`: compare every
    file's sha256 (else only its size)."""
    try:
        stats = read_json(stats_path, output)
    except UnreadableFile as e:
        return str(e)
    if not isinstance(stats, dict):
        return f"{stats_path}: missing" if stats is None else f"{stats_path}: not a JSON object"
    for rel, want in sorted((stats.get("files") or {}).items()):
        got = _digest(output, join(output, rel), hashes)
        if got is None:
            return f"{join(output, rel)}: missing"
        if got["bytes"] != want.get("bytes") or (hashes and got["sha256"] != want.get("sha256")):
            return f"{join(output, rel)}: its bytes differ from those {stats_path} records"
    bulk = stats.get("bulk_files") or {}
    if bulk.get("dir") and hashes:
        folder = join(output, bulk["dir"])
        found = {p: d["sha256"] for p, d in _folder_digests(output, folder).items()}
        if len(found) != bulk.get("count") or bulk_digest(found) != bulk.get("sha256"):
            return (f"{folder}: its {len(found)} files differ from the {bulk.get('count')} "
                    f"{stats_path} records")
    return None


def _digest(root: str, path: str, hashes: bool) -> dict[str, Any] | None:
    if not hashes:
        matched = FileSystems.match([path])[0].metadata_list
        return {"bytes": matched[0].size_in_bytes, "sha256": None} if matched else None
    h, size = hashlib.sha256(), 0
    try:
        with open_read(root, path) as f:
            while chunk := f.read(_HASH_CHUNK):
                h.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        return None
    return {"bytes": size, "sha256": h.hexdigest()}


def _folder_digests(root: str, folder: str) -> dict[str, dict[str, Any]]:
    check_no_link(root, folder)
    if is_local(folder):
        if not os.path.isdir(folder):
            return {}
        paths = sorted(e.path for e in os.scandir(folder))
    else:
        paths = sorted(m.path for m in FileSystems.match([join(folder, "*")])[0].metadata_list)
    out = {}
    for path in paths:
        digest = _digest(root, path, True)
        if digest is not None:
            out[path] = digest
    return out


def verify_shards(config: JobConfig) -> dict[str, str]:
    """Check the hashes of this host's finished shards; a damaged one loses its stats file
    (so this run generates it again). Returns {shard name: what was wrong}, also logged."""
    damaged = {}
    for shard, path in sorted(_stats_paths(config.output).items()):
        if shard % config.host_count != config.host_index:
            continue
        problem = shard_problem(config.output, path)
        if problem is not None:
            name = path.rsplit("/", 1)[-1][: -len(_STATS_SUFFIX)]
            log.warning("shard %s is damaged and will be generated again: %s", name, problem)
            damaged[name] = problem
            check_no_link(config.output, path)
            FileSystems.delete([path])
    return damaged


def _read_all_stats(output: str, layout: Layout) -> list[dict[str, Any]]:
    paths = _stats_paths(output)
    missing = [s for s in range(layout.num_shards) if s not in paths]
    if missing:
        names = ", ".join(layout.shard_name(s) for s in missing[:10])
        raise RuntimeError(
            f"{len(missing)} shard(s) have no stats file after the run ({names}); "
            "rerun the same command to finish them"
        )
    return [read_json(paths[s], output) for s in range(layout.num_shards)]


def write_summary(
    config: JobConfig,
    layout: Layout,
    file_rows: Sequence[tuple[str, int]],
    written: Iterable[Mapping[str, Any]],
    repaired: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """Check every row is accounted for, then write `_dataset.json` and clean temp files.

    `repaired`: shards found damaged at the start of this run and generated again."""
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
        "manifest": {"files": _manifest_files(config.output, file_rows), "rows": read},
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
            **({"images_dropped": sum(s.get("images_dropped", 0) for s in all_stats)}
               if config.filter else {}),
            "shards": layout.num_shards,
            "shards_written": len(written),
            "shards_skipped": layout.num_shards - len(written),
            "shards_repaired": len(repaired or {}),
        },
        "this_run": {
            "images": images_written,
            "shard_seconds": round(seconds, 3),
            "images_per_shard_second": round(images_written / seconds, 3) if seconds else None,
            "repaired_shards": dict(sorted((repaired or {}).items())),
        },
        "updated": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    if config.output_format == "imagefolder":
        _write_imagefolder_metadata(config.output, layout)
    _remove_temp(config.output)
    write_json(join(config.output, SUMMARY_FILE), summary, config.output)
    return summary


def _manifest_files(output: str, file_rows: Sequence[tuple[str, int]]) -> list[dict[str, Any]]:
    """Each manifest file's path, rows, bytes and sha256 (the latter two from `_job.json`)."""
    job = read_json(join(output, JOB_FILE), output) or {}
    known = {f["path"]: f for f in job.get("manifest_files") or [] if isinstance(f, dict)}
    return [{"path": p, "rows": n, "bytes": known.get(p, {}).get("bytes"),
             "sha256": known.get(p, {}).get("sha256")} for p, n in file_rows]


def _write_imagefolder_metadata(output: str, layout: Layout) -> None:
    """Concatenate the per-shard parts into the one `metadata.jsonl` HF `datasets` reads."""
    tmp = join(output, TMP_DIR, f"metadata.{uuid.uuid4().hex[:12]}.jsonl")
    with create_new(output, tmp) as out:
        for shard in range(layout.num_shards):
            part = join(output, IMAGEFOLDER_PARTS_DIR, f"{layout.shard_name(shard)}.jsonl")
            with open_read(output, part) as f:
                while chunk := f.read(1 << 20):
                    out.write(chunk)
    publish(output, [tmp], [join(output, "metadata.jsonl")])


def _remove_temp(output: str) -> None:
    # Only once every shard is complete: no attempt can still be writing there.
    tmp = join(output, TMP_DIR)
    check_no_link(output, tmp)
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
    write_json(join(config.output, PLAN_FILE), report, config.output)
    return report
