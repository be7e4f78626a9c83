"""What a user sees on the console: jaxgen's own lines, and one line for each way a job
ends early (a changed setting on resume, Ctrl-C, a directory that is not a model)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from jaxgen.cli import main

ROWS = 12


def _jaxgen(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxgen.cli", *args]


@pytest.fixture
def manifest(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps({"id": f"r{i}", "prompt": f"a red circle {i}"}) + "\n"
                            for i in range(ROWS)))
    return path


def _foreign(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines()
            if "WARNING:root" in line or "apache_beam" in line or "absl" in line]


def test_generate_shows_only_jaxgen_lines_and_a_changed_setting_ends_in_one_line(
        tiny_sd1_dir, manifest, tmp_path):
    out = tmp_path / "ds"
    first = subprocess.run(_jaxgen("generate", "--manifest", str(manifest), "--out", str(out),
                                   "--model", str(tiny_sd1_dir), "--steps", "2",
                                   "--shard-size", "6"), capture_output=True, text=True)
    assert first.returncode == 0, first.stderr
    assert _foreign(first.stderr) == []
    assert f"output  {out}" in first.stdout

    rerun = subprocess.run(_jaxgen("generate", "--manifest", str(manifest), "--out", str(out),
                                   "--model", str(tiny_sd1_dir), "--steps", "3",
                                   "--no-progress"), capture_output=True, text=True)
    assert rerun.returncode == 2
    assert "Traceback" not in rerun.stderr
    lines = rerun.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("jaxgen generate: error: defaults")
    assert "'steps': 2" in lines[0] and "rerun with the same settings" in lines[0]


def test_verbose_shows_the_foreign_warnings_again(tiny_sd1_dir, manifest, tmp_path):
    args = ("generate", "--manifest", str(manifest), "--model", str(tiny_sd1_dir), "--dry-run")
    quiet = subprocess.run(_jaxgen(*args, "--out", str(tmp_path / "q")), capture_output=True,
                           text=True)
    loud = subprocess.run(_jaxgen("-v", *args, "--out", str(tmp_path / "v")),
                          capture_output=True, text=True)
    assert quiet.returncode == loud.returncode == 0
    assert _foreign(quiet.stderr) == []
    assert any("WARNING:root" in line for line in loud.stderr.splitlines())


def test_ctrl_c_says_what_finished_and_how_to_resume(tiny_sd1_dir, manifest, tmp_path):
    out = tmp_path / "ds"
    proc = subprocess.Popen(_jaxgen("generate", "--manifest", str(manifest), "--out", str(out),
                                    "--model", str(tiny_sd1_dir), "--steps", "2",
                                    "--shard-size", "1", "--no-progress"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 300
    while not list(out.glob("*_stats.json")) and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    done = len(list(out.glob("*_stats.json")))
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr and _foreign(stderr) == []
    assert 1 <= done < ROWS, "the interrupt must land mid-run"
    assert stderr.strip().splitlines() == [
        f"jaxgen generate: interrupted: {done} shards ({done} images) complete in {out}; "
        "rerun the same command to resume"]


def test_a_directory_that_is_not_a_model_gets_one_message_from_every_command(
        tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rows.jsonl").write_text('{"prompt": "a red circle"}\n')
    (tmp_path / "not-a-model" / "unet").mkdir(parents=True)
    message = (f"{tmp_path / 'not-a-model'}: no model_index.json; not a diffusers-format model "
               "directory\n")
    for command in (["info"], ["preview", "a red circle"], ["eval"],
                    ["generate", "--manifest", "rows.jsonl", "--out", "ds"]):
        assert main([*command, "--model", str(tmp_path / "not-a-model")]) == 2
        assert capsys.readouterr().err == f"jaxgen {command[0]}: error: {message}"
