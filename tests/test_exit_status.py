"""`jaxgen generate`'s exit status: 0 when every row was generated, 3 when --strict and some
rows were rejected, 4 when no row could be generated (and then no model is loaded)."""

from __future__ import annotations

import json

import pytest

from jaxgen.cli import main
from jaxgen.engine.spec import GeneratorSpec


def _manifest(tmp_path, rows):
    path = tmp_path / "rows.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _generate(model, manifest, out, *flags: str) -> int:
    return main(["generate", "--manifest", str(manifest), "--out", str(out), "--model",
                 str(model), "--steps", "2", "--no-progress", *flags])


GOOD = [{"prompt": "a red circle"}, {"prompt": "a blue square"}]
BAD = [{"prompt": "a green triangle", "steps": -1}]


def test_rejected_rows_exit_0_but_3_with_strict_which_passes_a_clean_job(tiny_sd1_dir,
                                                                         tmp_path):
    assert _generate(tiny_sd1_dir, _manifest(tmp_path, GOOD), tmp_path / "clean", "--strict") == 0
    mixed = _manifest(tmp_path, GOOD + BAD)
    assert _generate(tiny_sd1_dir, mixed, tmp_path / "ds") == 0
    assert _generate(tiny_sd1_dir, mixed, tmp_path / "ds", "--strict") == 3  # a resume


def test_every_row_rejected_exits_4_without_loading_the_model(tiny_sd1_dir, tmp_path,
                                                              monkeypatch, capsys):
    def build(self):
        raise AssertionError("the model was loaded for a job with nothing to generate")

    monkeypatch.setattr(GeneratorSpec, "build", build)
    out = tmp_path / "ds"
    assert _generate(tiny_sd1_dir, _manifest(tmp_path, BAD * 3), out) == 4
    assert "rows read 3 = generated 0 + rejected 3" in capsys.readouterr().out
    assert json.loads((out / "_dataset.json").read_text())["counts"]["rows_rejected"] == 3


def test_a_dry_run_with_no_valid_row_exits_4(tiny_sd1_dir, tmp_path):
    assert _generate(tiny_sd1_dir, _manifest(tmp_path, BAD), tmp_path / "ds", "--dry-run") == 4


def test_help_lists_the_exit_statuses(capsys):
    with pytest.raises(SystemExit):
        main(["generate", "--help"])
    text = capsys.readouterr().out
    for status in ("0 ", "2 ", "3 ", "4 ", "130 "):
        assert f"\n  {status}" in text
    assert "--strict" in text
