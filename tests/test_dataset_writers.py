"""Every output format is read back by the library its users would read it with."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from PIL import Image

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.plan import Layout, image_key
from jaxgen.dataset.records import encode_image
from tests.fake_generator import FakeSpec, draw

ROWS = [
    {"prompt": "a red circle", "id": "x1", "seed": 11, "metadata": {"label": 1}},
    {"prompt": "a blue square", "num_images": 2, "metadata": {"label": 2}},
    {"prompt": "bad row", "steps": 0, "metadata": {"label": 3}},
    {"prompt": "ünï ★ prompt", "negative_prompt": "blurry", "sampler": "euler_ancestral",
     "guidance": 5.0, "metadata": {"label": 4}},
    {"prompt": "a green star", "width": 24, "metadata": {"label": 5}},
]
# 9-digit keys, shard_size 2: rows 0-1 in shard 0, rows 2-3 in shard 1, row 4 in shard 2.
IMAGE_KEYS = ["000000000", "000000001_0", "000000001_1", "000010001", "000020000"]
PROMPTS = {"000000000": "a red circle", "000000001_0": "a blue square",
           "000000001_1": "a blue square", "000010001": "ünï ★ prompt",
           "000020000": "a green star"}


def make_dataset(tmp_path: Path, output_format: str, **kw: object) -> tuple[Path, dict]:
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    out = tmp_path / output_format
    cfg = JobConfig(
        manifest=str(manifest), output=str(out), output_format=output_format, shard_size=2,
        defaults={"height": 16, "width": 16, "steps": 2}, **kw,
    )
    return out, run_pipeline(cfg, FakeSpec())


@pytest.fixture(scope="module")
def webdataset_out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_dataset(tmp_path_factory.mktemp("wds"), "webdataset")[0]


def test_keys_are_shard_then_index_without_dots() -> None:
    layout = Layout(total_rows=25_000, shard_size=10_000)
    assert (layout.num_shards, layout.key(0), layout.key(12_345)) == (3, "000000000", "000012345")
    assert image_key("000012345", 1, 3) == "000012345_1"
    assert image_key("000012345", 0, 1) == "000012345"
    big = Layout(total_rows=10**6, shard_size=5)  # 200,000 shards: one more shard digit
    assert big.key(10**6 - 1) == "1999990004" and "." not in big.key(7)


def test_webdataset_reads_back_with_webdataset(webdataset_out: Path) -> None:
    import webdataset as wds

    urls = [str(p) for p in sorted(webdataset_out.glob("*.tar"))]
    assert [Path(u).name for u in urls] == ["00000.tar", "00001.tar", "00002.tar"]
    samples = list(wds.WebDataset(urls, shardshuffle=False).decode("pil"))
    assert [s["__key__"] for s in samples] == IMAGE_KEYS
    for s in samples:
        record = s["json"]
        assert record["key"] == s["__key__"] and s["txt"] == PROMPTS[s["__key__"]]
        assert s["png"].size == (record["width"], record["height"])
        assert record["model_name"] == "fake-model" and record["model_hash"] == "0123abcd"
        assert set(record) >= {"id", "seed", "image_index", "steps", "guidance", "sampler",
                               "negative_prompt", "jaxgen_version", "metadata"}
    first = samples[0]["json"]
    assert (first["id"], first["seed"], json.loads(first["metadata"])) == ("x1", 11, {"label": 1})
    assert samples[1]["json"]["id"] == "000000001"  # no id in the row: its key
    assert [s["json"]["image_index"] for s in samples[1:3]] == [0, 1]


def test_webdataset_tar_members_are_fixed_and_audit_parquet_lists_every_input(
    webdataset_out: Path,
) -> None:
    with tarfile.open(webdataset_out / "00000.tar") as tar:
        members = tar.getmembers()
    assert [m.name for m in members[:3]] == ["000000000.png", "000000000.json", "000000000.txt"]
    assert {(m.mtime, m.uid, m.gid, m.uname, m.gname, m.mode) for m in members} == {
        (0, 0, 0, "", "", 0o644)
    }
    audit = pq.read_table(webdataset_out / "00001.parquet").to_pylist()
    assert [(r["key"], r["status"]) for r in audit] == [
        ("000010000", "rejected"), ("000010001", "success")
    ]
    assert audit[0]["error"].startswith("steps 0") and audit[1]["image_keys"] == ["000010001"]
    stats = json.loads((webdataset_out / "00001_stats.json").read_text())
    assert (stats["count"], stats["successes"], stats["failures"]) == (2, 1, 1)
    assert stats["failures_by_field"] == {"steps": 1}
    rejects = (webdataset_out / "_rejects" / "00001.jsonl").read_text().splitlines()
    assert [json.loads(r)["key"] for r in rejects] == ["000010000"]


def test_hf_datasets_reads_webdataset(webdataset_out: Path, tmp_path: Path) -> None:
    import datasets

    tars = [str(p) for p in sorted(webdataset_out.glob("*.tar"))]
    ds = datasets.load_dataset(
        "webdataset", data_files={"train": tars}, split="train", cache_dir=str(tmp_path)
    )
    assert ds.num_rows == len(IMAGE_KEYS)
    row = ds[3]
    assert row["__key__"] == "000010001" and row["txt"] == "ünï ★ prompt"
    assert row["json"]["negative_prompt"] == "blurry" and row["png"].size == (16, 16)


def test_hf_datasets_reads_parquet_output_as_images(tmp_path: Path) -> None:
    import datasets

    out, summary = make_dataset(tmp_path, "parquet")
    assert summary["counts"]["images"] == len(IMAGE_KEYS)
    files = [str(p) for p in sorted(out.glob("*.parquet"))]
    ds = datasets.load_dataset(
        "parquet", data_files={"train": files}, split="train", cache_dir=str(tmp_path / "hf")
    )
    assert isinstance(ds.features["image"], datasets.Image)
    assert ds["key"] == IMAGE_KEYS
    row = ds[4]
    assert row["image"].size == (24, 16) and row["prompt"] == "a green star"
    assert json.loads(row["metadata"]) == {"label": 5}
    assert (out / "_rejects" / "00001.jsonl").exists()


def test_hf_datasets_reads_imagefolder_output(tmp_path: Path) -> None:
    import datasets

    out, _ = make_dataset(tmp_path, "imagefolder")
    assert sorted(p.name for p in (out / "00000").iterdir()) == [
        "000000000.png", "000000001_0.png", "000000001_1.png"
    ]
    ds = datasets.load_dataset(
        "imagefolder", data_dir=str(out), split="train", cache_dir=str(tmp_path / "hf")
    )
    assert sorted(ds["key"]) == IMAGE_KEYS
    row = ds[ds["key"].index("000000000")]
    assert row["prompt"] == "a red circle" and row["image"].size == (16, 16)
    assert not (out / "_tmp").exists()


def test_png_parameters_chunk_is_automatic1111_style(webdataset_out: Path) -> None:
    with tarfile.open(webdataset_out / "00001.tar") as tar:
        png = tar.extractfile("000010001.png").read()
        record = json.loads(tar.extractfile("000010001.json").read())
    image = Image.open(io.BytesIO(png))
    assert image.info["parameters"] == (
        "ünï ★ prompt\nNegative prompt: blurry\n"
        f"Steps: 2, Sampler: Euler a, CFG scale: 5, Seed: {record['seed']}, Size: 16x16, "
        "Model hash: 0123abcd, Model: fake-model, Version: jaxgen " + record["jaxgen_version"]
    )
    with tarfile.open(webdataset_out / "00000.tar") as tar:
        latin = Image.open(io.BytesIO(tar.extractfile("000000001_1.png").read()))
    text = latin.text["parameters"]  # tEXt chunk (Latin-1 text)
    assert text.startswith("a blue square\nSteps: 2, Sampler: DPM++ 2M, CFG scale: 7.5, Seed: ")
    assert "Image index: 1" in text
    assert b"tIME" not in png  # no timestamp inside image files


@pytest.mark.parametrize("image_format", ["webp", "jpeg"])
def test_webp_and_jpeg_carry_parameters_in_exif(tmp_path: Path, image_format: str) -> None:
    out, _ = make_dataset(tmp_path, "webdataset", image_format=image_format, image_quality=80)
    ext = {"webp": "webp", "jpeg": "jpg"}[image_format]
    with tarfile.open(out / "00000.tar") as tar:
        data = tar.extractfile(f"000000000.{ext}").read()
    image = Image.open(io.BytesIO(data))
    assert image.format == image_format.upper()
    comment = image.getexif().get_ifd(0x8769)[0x9286]
    assert comment[:8] == b"UNICODE\x00"
    assert comment[8:].decode("utf-16-be").startswith("a red circle\nSteps: 2")


def test_encode_image_is_deterministic_and_checks_the_array() -> None:
    from jaxgen.requests import GenerationRequest

    pixels = draw(GenerationRequest("p", seed=3, height=16, width=8), 0)
    assert encode_image(pixels, "png", 90, "x") == encode_image(pixels, "png", 90, "x")
    with pytest.raises(ValueError, match="uint8"):
        encode_image(pixels.astype("float32"), "png", 90, "x")
