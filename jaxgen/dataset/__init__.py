"""Manifests in, dataset shards out: parsing, planning, writers, resume (no Beam, no model).

Modules: config (JobConfig), manifest (read rows), rows (row -> request), plan (keys,
seeds, shards), records (per-image record, PNG parameters), writers (webdataset, parquet,
imagefolder), shard (generate + write one shard), resume (complete shards, summary).
"""

from jaxgen.dataset.config import JobConfig

__all__ = ["JobConfig"]
