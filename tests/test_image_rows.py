"""Image-to-image and inpainting rows through the dataset pipeline (with the fake generator):
every bad input a reject with its reason and the job going on, records naming their sources,
and the same bytes from every local runner."""

from __future__ import annotations

import hashlib
import io
import json
import os
import struct
import tarfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig
from pipelines.generate_dataset import run
from tests.fake_generator import FakeSpec
from tests.test_runners import RUNNERS

REPO = Path(__file__).resolve().parents[1]
GOOD = [  # (row, what its record must say)
    ({"prompt": "plain", "id": "t2i"}, {}),
    ({"prompt": "edit", "id": "img2img", "init_image": "images/photo.png"}, {"size": (16, 24)}),
    ({"prompt": "edit sized", "id": "img2img-16", "init_image": "images/photo.png",
      "height": 16, "width": 16, "strength": 0.6}, {"size": (16, 16), "strength": 0.6}),
    ({"prompt": "repaint", "id": "inpaint", "init_image": "images/photo.png",
      "mask_image": "images/mask.png"}, {"size": (16, 24)}),
]
BAD = [  # (row, field, stage, words of the reason)
    ({"init_image": "images/notes.png"}, "init_image", "image", "not a PNG, JPEG or WebP"),
    ({"init_image": "images/missing.png"}, "init_image", "image", "no such file"),
    ({"init_image": "images/truncated.png"}, "init_image", "image", "truncated"),
    ({"init_image": "images/bomb.png"}, "init_image", "image", "9000x9000"),
    ({"init_image": "images/photo.png", "mask_image": "images/tall-mask.png"},
     "mask_image", "image", "aspect"),
    ({"mask_image": "images/mask.png"}, "mask_image", "parse", "without an init_image"),
    ({"init_image": "images/photo.png", "strength": 1.5}, "strength", "parse", "(0, 1]"),
    ({"init_image": "images/photo.png", "strength": 0}, "strength", "parse", "(0, 1]"),
]


def png_header_only(width: int, height: int) -> bytes:
    """A PNG that claims a size but holds a few bytes of pixel data (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b""))


def write_images(folder: Path) -> None:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    photo = rng.integers(0, 256, (18, 22, 3), dtype=np.uint8)  # rounds to 16x24
    Image.fromarray(photo).save(folder / "photo.png")
    mask = np.zeros((18, 22), np.uint8)
    mask[4:12, 6:16] = 255
    Image.fromarray(mask).save(folder / "mask.png")
    Image.fromarray(np.zeros((40, 10), np.uint8)).save(folder / "tall-mask.png")
    (folder / "notes.png").write_text("not an image")
    data = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(data, "PNG")
    (folder / "truncated.png").write_bytes(data.getvalue()[: len(data.getvalue()) // 2])
    (folder / "bomb.png").write_bytes(png_header_only(9000, 9000))


@pytest.fixture(scope="module")
def manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Good rows of every mode, each bad input between them; image paths relative."""
    root = tmp_path_factory.mktemp("data")
    write_images(root / "images")
    rows = [row for row, _ in GOOD]
    for i, (row, *_) in enumerate(BAD):
        rows.insert(1 + 2 * i % len(rows), {"prompt": f"bad {i}", "id": f"bad-{i}", **row})
    path = root / "m.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


def job(manifest: Path, output: Path, **kw: object) -> JobConfig:
    return JobConfig(manifest=str(manifest), output=str(output), shard_size=5, job_seed=1,
                     defaults={"height": 8, "width": 8, "steps": 2, "strength": 0.5}, **kw)


def records(out: Path) -> dict[str, tuple[dict, bytes]]:
    """id -> (KEY.json record, image bytes) of every image in the webdataset output."""
    found: dict[str, tuple[dict, bytes]] = {}
    for tar in sorted(out.glob("*.tar")):
        with tarfile.open(tar) as t:
            files = {m.name: t.extractfile(m).read() for m in t}
        for name, data in files.items():
            if name.endswith(".json"):
                record = json.loads(data)
                found[record["id"]] = (record, files[name.replace(".json", ".png")])
    return found


def rejects(out: Path) -> dict[int, dict]:
    lines = [json.loads(line) for f in sorted((out / "_rejects").iterdir())
             for line in f.read_text().splitlines()]
    return {r["line"]: r for r in lines}


@pytest.fixture(scope="module")
def generated(manifest: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    cfg = job(manifest, tmp_path_factory.mktemp("out") / "ds")
    return Path(cfg.output), run_pipeline(cfg, FakeSpec())


def test_rows_read_are_generated_plus_rejected(generated: tuple[Path, dict]) -> None:
    _, summary = generated
    c = summary["counts"]
    assert (c["rows_read"], c["rows_generated"], c["rows_rejected"]) == (
        len(GOOD) + len(BAD), len(GOOD), len(BAD))


def test_every_bad_input_is_rejected_with_its_field_stage_and_reason(
    generated: tuple[Path, dict], manifest: Path
) -> None:
    out, _ = generated
    lines = manifest.read_text().splitlines()
    found = rejects(out)
    assert len(found) == len(BAD)
    for i, (_, field, stage, words) in enumerate(BAD):
        line = 1 + next(n for n, text in enumerate(lines) if json.loads(text)["id"] == f"bad-{i}")
        reject = found[line]
        assert (reject["field"], reject["stage"]) == (field, stage), reject
        assert words in reject["reason"], reject
        assert reject["source"] == str(manifest)


def test_image_rows_record_their_sources_hashes_and_strength(
    generated: tuple[Path, dict], manifest: Path
) -> None:
    out, _ = generated
    found = records(out)
    assert sorted(found) == sorted(row["id"] for row, _ in GOOD)
    images = manifest.parent / "images"
    sha = {name: hashlib.sha256((images / name).read_bytes()).hexdigest()
           for name in ("photo.png", "mask.png")}
    for row, want in GOOD:
        record, png = found[row["id"]]
        parameters = Image.open(io.BytesIO(png)).info["parameters"]
        if "init_image" not in row:
            assert not {"init_image", "strength", "resize"} & set(record)
            assert "Denoising strength" not in parameters
            continue
        assert record["init_image"] == str(images / "photo.png")  # resolved at parse time
        assert record["init_image_sha256"] == sha["photo.png"]
        assert (record["height"], record["width"]) == want["size"]
        assert Image.open(io.BytesIO(png)).size == want["size"][::-1]
        strength = want.get("strength", 0.5)  # the job default when the row gives none
        assert record["strength"] == strength and record["resize"] == "crop"
        assert f"Denoising strength: {strength:g}" in parameters
        assert f"Init image hash: {sha['photo.png']}" in parameters
        if "mask_image" in row:
            assert record["mask_image_sha256"] == sha["mask.png"]
            assert f"Mask image hash: {sha['mask.png']}" in parameters
        else:
            assert "mask_image" not in record


def test_resize_policy_reaches_the_generator(manifest: Path, tmp_path: Path,
                                             generated: tuple[Path, dict]) -> None:
    cfg = job(manifest, tmp_path / "fit", resize="fit")
    run_pipeline(cfg, FakeSpec())
    crop, fit = records(generated[0]), records(tmp_path / "fit")
    assert fit["img2img-16"][0]["resize"] == "fit"
    assert fit["img2img-16"][1] != crop["img2img-16"][1]  # a square frame: fit pads, crop cuts
    assert fit["t2i"] == crop["t2i"]


def test_parquet_output_has_the_image_columns(manifest: Path, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    cfg = job(manifest, tmp_path / "pq", output_format="parquet")
    run_pipeline(cfg, FakeSpec())
    table = pq.read_table(sorted((tmp_path / "pq").glob("*.parquet")))
    rows = {r["id"]: r for r in table.drop(["image"]).to_pylist()}
    assert rows["t2i"]["init_image"] is None and rows["t2i"]["strength"] is None
    assert rows["inpaint"]["mask_image"].endswith("mask.png")
    assert rows["img2img"]["strength"] == 0.5




def test_mixed_manifest_gives_the_same_shards_on_every_runner(
    manifest: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_sd1_dir: Path
) -> None:
    """The real engine (the tiny model): text-to-image, image-to-image and inpainting rows."""
    # Worker processes are fresh interpreters: they must find jaxgen and tests.*.
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]))
    digests = {}
    for name, flags in RUNNERS.items():
        out = tmp_path / name
        summary = run(["--manifest", str(manifest), "--output", str(out), "--shard_size", "5",
                       "--job_seed", "1", "--height", "16", "--width", "16", "--steps", "2",
                       "--strength", "0.5", "--generator", "jaxgen.engine.spec:GeneratorSpec",
                       "--generator_args", json.dumps({"model": str(tiny_sd1_dir)}), *flags])
        assert summary["counts"]["rows_rejected"] == len(BAD)
        digests[name] = {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
                         for p in sorted(out.rglob("*")) if p.suffix in (".tar", ".parquet")
                         or p.parent.name == "_rejects"}
    assert len(digests["in_memory"]) == 3 * 2 + 3
    assert digests["multi_processing"] == digests["in_memory"] == digests["portable"]


def test_the_dry_run_reads_the_images_and_finds_the_same_rejects(
    generated: tuple[Path, dict], manifest: Path, tmp_path: Path
) -> None:
    report = run_pipeline(job(manifest, tmp_path / "dry", dry_run=True))
    assert (report["counts"]["rows_valid"], report["counts"]["rows_rejected"]) == (
        len(GOOD), len(BAD))
    dry, real = rejects(tmp_path / "dry"), rejects(generated[0])
    assert {line: (r["field"], r["stage"], r["reason"]) for line, r in dry.items()} == {
        line: (r["field"], r["stage"], r["reason"]) for line, r in real.items()}
