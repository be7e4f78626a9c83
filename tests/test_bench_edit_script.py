"""benchmarks/bench_edit.py: its edits, masks and judges are exact on renders; it runs end to end.

The end-to-end run uses a tiny random model: structure only, its scores say nothing.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import bench_edit  # noqa: E402
from jaxgen.shapes import POSITIONS, SHAPES, SIZES, render  # noqa: E402
from jaxgen.shapes.render import object_mask  # noqa: E402


def keep_outside(case: bench_edit.EditCase, factor: int = 4) -> np.ndarray:
    mask = bench_edit.cell_mask(case.source.objects[case.target].position, factor)
    return ~ndimage.binary_dilation(mask, np.ones((3, 3), bool), factor)


def test_img2img_cases_change_exactly_the_asked_attribute():
    cases = bench_edit.img2img_cases(12)
    assert [c.edit for c in cases[:4]] == ["colour", "shape", "colour", "shape"]
    for case in cases:
        (was,), (want,) = case.source.objects, case.edited.objects
        changed = [a for a in ("shape", "colour", "size", "position")
                   if getattr(was, a) != getattr(want, a)]
        assert changed == [case.edit]
        assert want.colour != case.edited.background


def test_judges_pass_the_edited_render_and_fail_the_unedited_one():
    for case in bench_edit.img2img_cases(12):
        assert bench_edit.judge_img2img(case, render(case.edited)) == \
            {"success": True, "preserved": True, "both": True}
        assert bench_edit.judge_img2img(case, render(case.source)) == \
            {"success": False, "preserved": True, "both": False}
    for case in bench_edit.inpaint_cases(12):
        keep = keep_outside(case)
        edited = bench_edit.judge_inpaint(case, render(case.edited), keep)
        assert edited == {"success": True, "preserved": True, "both": True, "pixels_kept": 1.0}
        unedited = bench_edit.judge_inpaint(case, render(case.source), keep)
        assert (unedited["success"], unedited["preserved"]) == (False, True)
        # the new object painted over the other one instead: neither edited nor preserved
        other = 1 - case.target
        painted = replace(case.edited.objects[case.target],
                          position=case.source.objects[other].position)
        wrong = replace(case.source, objects=tuple(
            painted if k == other else o for k, o in enumerate(case.source.objects)))
        misplaced = bench_edit.judge_inpaint(case, render(wrong), keep)
        assert (misplaced["success"], misplaced["preserved"]) == (False, False)
        assert misplaced["pixels_kept"] < 1


def test_cell_mask_covers_its_cells_objects_and_no_other_cells():
    for factor in (2, 4):
        for position in POSITIONS:
            mask = bench_edit.cell_mask(position, factor)
            for other in POSITIONS:
                for shape in SHAPES:
                    for size in SIZES:
                        drawn = object_mask(shape, size, other)
                        if other == position:
                            assert (drawn <= mask).all()
                        else:
                            assert not (drawn & mask).any()


def test_runs_end_to_end_and_writes_the_table(tmp_path, capsys, tiny_sd1_dir):
    out = tmp_path / "edit.json"
    # two steps, one device: the two compiles (image-to-image, inpainting) are the test's time
    bench_edit.main(["--model", str(tiny_sd1_dir), "--n", "2", "--strengths", "0.5", "1.0",
                     "--inpaint-strengths", "1.0", "--steps", "2", "--batch-size", "1",
                     "--out", str(out)])
    report = json.loads(out.read_text())
    assert [(c["mode"], c["strength"]) for c in report["cells"]] == \
        [("image-to-image", 0.5), ("image-to-image", 1.0), ("inpainting", 1.0)]
    for cell in report["cells"]:
        assert cell["summary"]["n"] == len(cell["cases"]) == 2
        assert {"success", "preserved", "both"} <= set(cell["summary"])
    assert 0 <= report["cells"][-1]["summary"]["pixels_kept"] <= 1
    assert 0 <= report["vae_pixels_kept"] <= 1
    printed = capsys.readouterr().out
    assert printed.count("| image-to-image, colour or shape |") == 2
    assert "| inpainting, another object | 1.0 | 2 |" in printed
