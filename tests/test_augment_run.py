"""`jaxgen augment` end to end from every input format: counts, labels and source keys come
through, filtered images are recorded, a partial run resumes to the same bytes. The webdataset
input runs the command on a tiny random Stable Diffusion model (the recipe, not the shapes
domain, is what augment knows); the other formats run the same job through the Python API on
the tests' numpy generator, which keeps the generator's contract in a fraction of the time."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tarfile

import pytest

from jaxgen.augment import run as augment
from jaxgen.augment.recipe import load_recipe
from jaxgen.cli import main
from jaxgen.dataset.read import dataset_images
from jaxgen.dataset.records import ImageRecord
from tests import augment_inputs
from tests.fake_generator import FakeSpec
from tests.other_run import kill_after_first_shard, lock_held_elsewhere

RECIPE = """\
prompt: "a photo of a {label}"
steps: 2
filter: tests.test_augment_run:drop_second_image
entries:
  - {kind: img2img, n: 2, strength: 0.5}
  - {kind: text2img, n: 1}
"""
SIDE = 16
OUTPUTS = {"folders": "imagefolder", "metadata": "webdataset", "webdataset": "webdataset",
           "parquet": "parquet"}
IMAGES = len(augment_inputs.LABELS) * augment_inputs.PER_CLASS
KEPT = IMAGES + len(augment_inputs.LABELS)  # img2img image 0 of each source, text2img's one
DROPPED = IMAGES  # img2img image 1 of each source


def drop_second_image(image, record: dict):
    """A test filter: drops every second image of a row, with a reason and a score."""
    if record["image_index"] == 1:
        return False, "second image", 0.25
    return True, ""


def _augment(model, source, out, recipe, output_format) -> int:
    return main(["augment", "--input", source, "--out", str(out), "--recipe", str(recipe),
                 "--model", str(model), "--format", output_format, "--shard-size", "3",
                 "--no-progress"])


@pytest.fixture(scope="module")
def runs(tiny_sd1_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("augment")
    recipe = root / "recipe.yaml"
    recipe.write_text(RECIPE)
    done = {}
    for fmt, output_format in OUTPUTS.items():
        source = augment_inputs.write(root / f"in-{fmt}", fmt, side=SIDE)
        out = root / f"out-{fmt}"
        if fmt == "webdataset":
            assert _augment(tiny_sd1_dir, source, out, recipe, output_format) == 0
        else:
            job = augment.prepare(source, load_recipe(str(recipe)), str(out),
                                  settings={"output_format": output_format, "shard_size": 3},
                                  model_defaults={"height": SIDE, "width": SIDE})
            augment.run(job, FakeSpec())
        done[fmt] = (source, out)
    return tiny_sd1_dir, recipe, done


@pytest.mark.parametrize("fmt", list(OUTPUTS))
def test_counts_labels_and_source_keys_come_through(runs, fmt):
    _, _, done = runs
    out = done[fmt][1]
    records = [record for record, _ in dataset_images(out)]
    assert len(records) == KEPT
    sources = {key for key, _, _ in augment_inputs.images()}
    for record in records:
        metadata = json.loads(record["metadata"])
        assert record["label"] == metadata["label"] in augment_inputs.LABELS
        assert record["cls"] == augment_inputs.LABELS.index(record["label"])
        assert record["prompt"] == f"a photo of a {record['label']}"
        if metadata["kind"] == "img2img":
            assert metadata["source_key"] in sources and record["strength"] == 0.5
            assert metadata["source_key"].startswith(record["label"])
            assert metadata["source_sha256"] == record["init_image_sha256"]
    by_kind = [json.loads(r["metadata"])["kind"] for r in records]
    assert by_kind.count("img2img") == IMAGES and by_kind.count("text2img") == 2
    summary = json.loads((out / "_dataset.json").read_text())
    assert summary["counts"]["images_dropped"] == DROPPED
    dropped = [json.loads(line) for f in sorted((out / "_dropped").glob("*.jsonl"))
               for line in f.read_text().splitlines()]
    assert len(dropped) == DROPPED
    assert {(d["reason"], d["score"], d["image_index"]) for d in dropped} == {
        ("second image", 0.25, 1)}
    assert not {d["key"] for d in dropped} & {r["key"] for r in records}


def test_webdataset_output_has_cls_members(runs):
    out = runs[2]["webdataset"][1]
    with tarfile.open(out / "00000.tar") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    for name, data in members.items():
        if name.endswith(".cls"):
            record = json.loads(members[name[:-4] + ".json"])
            assert data == str(record["cls"]).encode()
    assert any(name.endswith(".cls") for name in members)


def test_imagefolder_output_loads_in_hf_datasets_with_a_label_column(runs):
    datasets = pytest.importorskip("datasets")
    out = runs[2]["folders"][1]
    loaded = datasets.load_dataset("imagefolder", data_dir=str(out), split="train")
    assert len(loaded) == KEPT
    assert sorted(set(loaded["label"])) == list(augment_inputs.LABELS)


def test_a_partial_run_resumes_to_the_same_bytes(runs):
    model, recipe, done = runs
    source, out = done["webdataset"]
    names = sorted(p.name for p in out.glob("0000*")) + ["_dropped/00001.jsonl"]
    clean = {name: (out / name).read_bytes() for name in names}
    # What a kill mid-run leaves: a shard without its stats, no summary.
    for name in ("00001_stats.json", "00001.tar", "_dataset.json", "_dropped/00001.jsonl"):
        (out / name).unlink()
    assert _augment(model, source, out, recipe, "webdataset") == 0
    summary = json.loads((out / "_dataset.json").read_text())
    assert summary["counts"]["shards_written"] == 1
    for name in names:
        if not name.endswith("_stats.json"):  # stats hold times
            assert (out / name).read_bytes() == clean[name], name


def test_sigkill_mid_run_then_rerun_matches_an_uninterrupted_run(runs, tmp_path):
    """A real kill: the command in a subprocess, SIGKILL once a shard is done, then rerun."""
    model, recipe, done = runs
    source = done["webdataset"][0]
    clean, crashed = tmp_path / "clean", tmp_path / "out"
    command = [sys.executable, "-m", "jaxgen.cli", "augment", "--input", source, "--recipe",
               str(recipe), "--model", str(model), "--shard-size", "1", "--no-progress"]
    # Both runs write to one path: records name their source image under OUT/_augment/.
    assert main(command[3:] + ["--out", str(crashed)]) == 0
    crashed.rename(clean)
    done_at_kill = kill_after_first_shard(command + ["--out", str(crashed)], crashed)
    assert 1 <= done_at_kill < len(list(clean.glob("*_stats.json"))), "the kill must land mid-run"
    assert not (crashed / "_dataset.json").exists()

    subprocess.run(command + ["--out", str(crashed)], check=True, capture_output=True)
    assert json.loads((crashed / "_dataset.json").read_text())["complete"]
    names = sorted(p.relative_to(clean).as_posix() for p in clean.rglob("*") if p.is_file()
                   and not p.name.endswith(("_stats.json", "_dataset.json", "_job.json")))
    assert any(n.startswith("_dropped/") for n in names) and any(n.endswith(".tar")
                                                                  for n in names)
    for name in names:  # stats and summaries hold times
        assert (crashed / name).read_bytes() == (clean / name).read_bytes(), name


def test_a_restart_on_an_output_another_run_holds_changes_nothing(runs, tmp_path):
    """The plan is written under the output's lock: a second job (here --restart, which
    would delete it) stops at once, naming the holder, and the first job's files stay."""
    from jaxgen.dataset.lock import OutputLocked

    _, recipe, done = runs
    source, clean = done["folders"]
    out = tmp_path / "held"
    shutil.copytree(clean, out)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with lock_held_elsewhere(str(out)):
        job = augment.prepare(source, load_recipe(str(recipe)), str(out),
                              settings={"output_format": "imagefolder", "shard_size": 3},
                              model_defaults={"height": SIDE, "width": SIDE})
        with pytest.raises(OutputLocked, match="in use by another run"):
            augment.run(job, FakeSpec(), restart=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before


def test_another_recipe_over_a_started_output_stops_naming_the_plan(runs, tmp_path, capsys):
    model, recipe, done = runs
    source, clean = done["webdataset"]
    out = tmp_path / "other"
    shutil.copytree(clean, out)
    other = tmp_path / "recipe.yaml"
    other.write_text(RECIPE.replace("n: 2", "n: 3"))
    assert _augment(model, source, out, other, "webdataset") == 2
    assert "plan.jsonl: this output holds the plan of another input or recipe" in \
        capsys.readouterr().err


def test_a_bad_recipe_stops_at_once_naming_the_key(tmp_path, capsys):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("entries:\n  - {kind: img2img, n: 0}\n")
    source = augment_inputs.write(tmp_path / "in", "folders", side=SIDE)
    assert main(["augment", "--input", source, "--out", str(tmp_path / "o"),
                 "--recipe", str(recipe)]) == 2
    assert "entries[0].n 0: must be an integer in [1, 10000]" in capsys.readouterr().err


def test_parquet_records_have_the_record_fields_and_no_more(runs):
    record, _ = next(dataset_images(runs[2]["parquet"][1]))
    assert set(ImageRecord.__dataclass_fields__) == set(record)
