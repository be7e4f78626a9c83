"""A job killed with SIGKILL mid-run and rerun ends exactly like an uninterrupted run."""

from __future__ import annotations

import json
import subprocess
import sys
import tarfile

from tests.other_run import kill_after_first_shard

ROWS = 12


def _command(model, manifest, out) -> list[str]:
    return [sys.executable, "-m", "jaxgen.cli", "generate", "--manifest", str(manifest),
            "--out", str(out), "--model", str(model), "--steps", "4", "--shard-size", "1",
            "--no-progress"]


def test_sigkill_mid_run_then_rerun_matches_an_uninterrupted_run(tiny_sd1_dir, tmp_path):
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"a red circle {i}"}) + "\n"
                                for i in range(ROWS)))
    clean, crashed = tmp_path / "clean", tmp_path / "crashed"
    subprocess.run(_command(tiny_sd1_dir, manifest, clean), check=True, capture_output=True)

    done_at_kill = kill_after_first_shard(_command(tiny_sd1_dir, manifest, crashed), crashed)
    assert 1 <= done_at_kill < ROWS, "the kill must land mid-run"
    assert not (crashed / "_dataset.json").exists()

    subprocess.run(_command(tiny_sd1_dir, manifest, crashed), check=True, capture_output=True)
    summary = json.loads((crashed / "_dataset.json").read_text())
    assert summary["counts"]["rows_read"] == ROWS == summary["counts"]["rows_generated"]
    keys = []
    for i in range(ROWS):
        name = f"{i:05d}"
        for part in (f"{name}.tar", f"{name}.parquet"):
            assert (crashed / part).read_bytes() == (clean / part).read_bytes()
        with tarfile.open(crashed / f"{name}.tar") as tar:
            keys += sorted({m.name.split(".")[0] for m in tar.getmembers()})
    assert len(keys) == len(set(keys)) == ROWS
    leftovers = [p for p in crashed.rglob("*") if "tmp" in p.name.lower()]
    assert not leftovers, leftovers
