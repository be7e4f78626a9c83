"""Progress in images, with the rate and ETA of this run's images only, and a summary that
names where everything went."""

from __future__ import annotations

import json

from jaxgen.cli import main
from jaxgen.cli.progress import Progress
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.progress import count_images


def test_count_images_sums_each_rows_num_images_with_the_jobs_default(tmp_path):
    jsonl = tmp_path / "a.jsonl"
    jsonl.write_text('{"prompt": "x", "num_images": 3}\n{"prompt": "y"}\n\n'
                     '{"prompt": "z", "num_images": -1}\n')
    csv = tmp_path / "b.csv"
    csv.write_text('prompt,num_images\n"a red circle",4\n"a blue square",\n')
    config = JobConfig(manifest=f"{jsonl},{csv}", output=str(tmp_path / "out"))
    assert count_images(config) == 3 + 1 + 0 + 4 + 1
    with_default = JobConfig(manifest=f"{jsonl},{csv}", output=str(tmp_path / "out"),
                             defaults={"num_images": 2})
    assert count_images(with_default) == 3 + 2 + 0 + 4 + 2


def test_a_resumes_bar_starts_at_the_images_done_but_its_rate_counts_only_this_runs(tmp_path):
    manifest = tmp_path / "rows.txt"
    manifest.write_text("".join(f"prompt {i}\n" for i in range(100)))
    out = tmp_path / "out"
    out.mkdir()
    for shard in range(3):  # three shards an earlier run finished
        (out / f"0000{shard}_stats.json").write_text(json.dumps({"images": 10}))
    progress = Progress(JobConfig(manifest=str(manifest), output=str(out)))
    (out / "00003_stats.json").write_text(json.dumps({"images": 10}))  # this run's first
    progress.stop(finished=False)
    meter = {**progress.bar.format_dict, "elapsed": 10.0}  # 10 images in this run's 10 s
    assert (meter["n"], meter["initial"], meter["total"]) == (40, 30, 100)
    shown = progress.bar.format_meter(**meter)
    assert "40/100" in shown and "1.00img/s" in shown  # not 4.00: the 30 skipped don't count
    assert "<01:00" in shown  # 60 images left at 1 img/s


def test_the_summary_names_output_rows_images_time_rate_and_rejects(tiny_sd1_dir, tmp_path,
                                                                   capsys):
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text('{"prompt": "a red circle", "num_images": 2}\n'
                        '{"prompt": "a blue square", "steps": -1}\n')
    out = tmp_path / "ds"
    assert main(["generate", "--manifest", str(manifest), "--out", str(out), "--model",
                 str(tiny_sd1_dir), "--steps", "2", "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f"  output  {out}" in lines
    assert "  rows    2 read, 1 generated, 1 rejected" in lines
    assert "  images  2 (2 made by this run)" in lines
    time_line = next(line for line in lines if line.startswith("  time    "))
    assert time_line.endswith(" img/s") and " s wall, " in time_line
    assert f"  rejects {out / '_rejects'}/ (by field: steps 1)" in lines
    assert f"  report  {out / 'report.html'}" in lines
