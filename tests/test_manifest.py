"""Manifests: every format parses into the same requests; every bad row is one reject."""

from __future__ import annotations

import csv
import gzip
import json
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.manifest import ManifestError, iter_rows, match_manifest, scan_ids
from jaxgen.dataset.rows import row_to_request
from jaxgen.requests import ConfigError, GenerationRequest, RequestError
from tests.fake_generator import FakeSpec

ROWS = [
    {"id": "a", "prompt": "a red circle", "seed": 1, "steps": 4, "height": 16, "width": 24,
     "guidance": 3.5, "sampler": "ddim", "negative_prompt": "blurry", "num_images": 2,
     "metadata": {"label": 3}},
    {"id": "b", "prompt": "a blue square, on grey", "steps": 5, "height": 32, "width": 16},
    {"id": "c", "prompt": 'a "quoted" green triangle', "seed": 7, "guidance": 0.0},
    {"id": "d", "prompt": "ünïcödé star ★", "sampler": "euler_ancestral"},
]
COLUMNS = ["id", "prompt", "negative_prompt", "seed", "guidance", "steps", "height", "width",
           "sampler", "num_images", "metadata"]
DEFAULTS = {"steps": 3, "height": 16, "width": 16}


def config(manifest: Path | str, output: Path | str, **kw: object) -> JobConfig:
    return JobConfig(manifest=str(manifest), output=str(output), defaults=DEFAULTS, **kw)


def requests_of(pattern: str, cfg: JobConfig) -> list[GenerationRequest]:
    out = []
    for file in match_manifest([pattern]):
        for raw in iter_rows(file, cfg.max_line_bytes):
            assert raw.error is None, raw.error
            out.append(row_to_request(raw.fields, cfg, text_values=raw.text_values))
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return path


def write_csv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, COLUMNS)
        w.writeheader()
        for r in rows:
            w.writerow({k: json.dumps(v) if k == "metadata" else v for k, v in r.items()})
    return path


def write_parquet(path: Path, rows: list[dict]) -> Path:
    table = pa.Table.from_pylist([{c: r.get(c) for c in COLUMNS} for r in rows])
    pq.write_table(table, path)
    return path


def test_jsonl_csv_parquet_gzip_and_glob_give_the_same_requests(tmp_path: Path) -> None:
    cfg = config(tmp_path / "x", tmp_path / "out")
    expected = requests_of(str(write_jsonl(tmp_path / "m.jsonl", ROWS)), cfg)
    assert len(expected) == 4
    assert expected[0] == GenerationRequest(
        prompt="a red circle", negative_prompt="blurry", seed=1, guidance=3.5, steps=4,
        height=16, width=24, sampler="ddim", num_images=2, id="a", metadata={"label": 3},
    )
    assert expected[1].steps == 5 and expected[1].seed is None and expected[1].sampler == "dpmpp_2m"
    assert requests_of(str(write_csv(tmp_path / "m.csv", ROWS)), cfg) == expected
    # Parquet: nulls in a column are "not given", as missing keys are in JSONL.
    assert requests_of(str(write_parquet(tmp_path / "m.parquet", ROWS)), cfg) == expected
    with gzip.open(tmp_path / "z.jsonl.gz", "wt") as f:
        f.write("".join(json.dumps(r) + "\n" for r in ROWS))
    assert requests_of(str(tmp_path / "z.jsonl.gz"), cfg) == expected
    parts = tmp_path / "parts"
    parts.mkdir()
    write_jsonl(parts / "p0.jsonl", ROWS[:1])
    write_csv(parts / "p1.csv", ROWS[1:3])
    write_parquet(parts / "p2.parquet", ROWS[3:])
    assert requests_of(str(parts / "p*"), cfg) == expected


def test_txt_is_one_prompt_a_line_and_blank_lines_are_not_rows(tmp_path: Path) -> None:
    cfg = config(tmp_path / "x", tmp_path / "out")
    txt = tmp_path / "m.txt"
    txt.write_bytes("\ufeffa red circle\r\n\n  a blue square  \n\nünïcödé star ★".encode())
    got = requests_of(str(txt), cfg)
    prompts_only = [{"prompt": p} for p in ("a red circle", "a blue square", "ünïcödé star ★")]
    assert got == requests_of(str(write_jsonl(tmp_path / "p.jsonl", prompts_only)), cfg)
    [file] = match_manifest([str(txt)])
    assert [(i, line) for i, line, _ in scan_ids(file, 1000)] == [(0, 1), (1, 3), (2, 5)]


def test_unknown_columns_become_metadata_or_rejects(tmp_path: Path) -> None:
    cfg = config(tmp_path / "x", tmp_path / "out")
    for carried in (config(tmp_path / "x", tmp_path / "out", metadata_columns=("label",)),
                    config(tmp_path / "x", tmp_path / "out", unknown_columns="metadata")):
        r = row_to_request({"prompt": "p", "label": 2, "metadata": {"a": 1}}, carried)
        assert r.metadata == {"a": 1, "label": 2}
    with pytest.raises(RequestError, match="label"):
        row_to_request({"prompt": "p", "label": 2}, cfg)  # rejected by default
    with pytest.raises(RequestError, match="label"):
        row_to_request({"prompt": "p", "label": 2}, config("m", "o", unknown_columns="reject"))
    assert row_to_request(
        {"prompt": "p", "label": 2}, config(tmp_path, tmp_path, unknown_columns="ignore")
    ).metadata is None
    cells = {"prompt": "p", "steps": "7", "guidance": "2", "id": "9"}
    r = row_to_request(cells, cfg, text_values=True)
    assert (r.steps, r.guidance, r.id) == (7, 2.0, "9")
    assert row_to_request({"prompt": "p", "id": 12, "steps": 6.0}, cfg).id == "12"


def test_bad_config_and_patterns_name_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="shard_size 0"):
        JobConfig(manifest="m", output="o", shard_size=0)
    with pytest.raises(ConfigError, match="defaults.height 100"):
        JobConfig(manifest="m", output="o", defaults={"height": 100})
    with pytest.raises(ConfigError, match="defaults.step: "):
        JobConfig(manifest="m", output="o", defaults={"step": 1})
    with pytest.raises(ManifestError, match="matched no files"):
        match_manifest([str(tmp_path / "nothing*.jsonl")])


# (manifest line, the field its reject must name). Every line is a bad row.
BAD_JSONL: list[tuple[bytes, str]] = [
    (b'{"prompt": "a", "steps": 3', "line"),  # malformed JSON
    (b'["a list", "not an object"]', "row"),
    (b'{"negative_prompt": "no prompt at all"}', "prompt"),
    (b'{"prompt": "   "}', "prompt"),  # empty
    (b'{"prompt": 42}', "prompt"),  # wrong type
    (json.dumps({"prompt": "x" * 4001}).encode(), "prompt"),  # oversized field
    (b'{"prompt": "a", "negative_prompt": ["x"]}', "negative_prompt"),
    (b'{"prompt": "a", "seed": -1}', "seed"),
    (b'{"prompt": "a", "seed": "12"}', "seed"),
    (b'{"prompt": "a", "guidance": NaN}', "guidance"),
    (b'{"prompt": "a", "guidance": 101}', "guidance"),
    (b'{"prompt": "a", "guidance": "high"}', "guidance"),
    (b'{"prompt": "a", "steps": 0}', "steps"),
    (b'{"prompt": "a", "steps": 2.5}', "steps"),
    (b'{"prompt": "a", "height": 20}', "height"),  # not a multiple of 8
    (b'{"prompt": "a", "width": 8192}', "width"),
    (b'{"prompt": "a", "sampler": "plms"}', "sampler"),
    (b'{"prompt": "a", "num_images": 0}', "num_images"),
    (b'{"prompt": "a", "num_images": true}', "num_images"),
    (b'{"prompt": "a", "id": "good-1"}', "id"),  # duplicate of the good row's id
    (b'{"prompt": "caf\xe9"}', "line"),  # Latin-1 byte: not UTF-8
    (b'{"prompt": "' + b"y" * 10_000 + b'"}', "line"),  # longer than max_line_bytes
    (b'{"prompt": "a", "metadata": [1, 2]}', "metadata"),
    (b'{"prompt": "a", "id": ""}', "id"),
    (b'{"prompt": "a", "prompt": "b"}', "prompt"),  # a key twice
    (b'{"prompt": "a", "label": 1, "metadata": {"label": 2}}', "metadata"),  # both ways
    (b'{"prompt": "a", "metadata": {"x": NaN}}', "metadata"),
    (b'{"prompt": "a", "id": {"k": 1}}', "id"),
    (b'"just a string"', "row"),
]
GOOD_JSONL = [b'{"prompt": "good one", "id": "good-1"}', b'{"prompt": "good two", "seed": 5}']
BAD_CSV: list[tuple[str, str]] = [
    ("abc,a,", "steps"),  # not an integer
    ("4,a,,extra", "row"),  # too many fields
    ('4,"a"b,', "line"),  # bad quoting
    ("4,a,not json", "metadata"),
    ("4,,", "prompt"),  # empty cell = missing prompt
]


def test_each_bad_row_is_one_reject_naming_its_field(tmp_path: Path) -> None:
    manifests = tmp_path / "m"
    manifests.mkdir()
    lines = [GOOD_JSONL[0]] + [line for line, _ in BAD_JSONL] + [b"", GOOD_JSONL[1]]
    (manifests / "a.jsonl").write_bytes(b"\n".join(lines) + b"\n")
    csv_lines = ["steps,prompt,metadata", "4,good csv,"] + [line for line, _ in BAD_CSV]
    (manifests / "b.csv").write_text("\n".join(csv_lines) + "\n")
    (manifests / "c.txt").write_bytes(b"good txt\n\xff\xfe bad bytes\n")
    assert len(BAD_JSONL) + len(BAD_CSV) >= 20
    out = tmp_path / "out"
    cfg = config(f"{manifests}/*", out, shard_size=8, max_line_bytes=8192,
                 metadata_columns=("label",))
    summary = run_pipeline(cfg, FakeSpec())

    rejects = [json.loads(line) for p in sorted(out.glob("_rejects/*.jsonl"))
               for line in p.read_text().splitlines()]
    by_place = {(Path(r["source"]).name, r["line"]): r for r in rejects}
    assert len(by_place) == len(rejects)  # one reject per row
    expected = {("a.jsonl", i + 2): field for i, (_, field) in enumerate(BAD_JSONL)}
    expected.update({("b.csv", i + 3): field for i, (_, field) in enumerate(BAD_CSV)})
    expected[("c.txt", 2)] = "line"
    assert set(by_place) == set(expected)
    for place, field in expected.items():
        r = by_place[place]
        assert r["field"] == field, (place, r)
        assert r["reason"].startswith(field), (place, r)
        assert r["row"], place
    # The row text is kept (truncated for huge lines), bad bytes shown replaced.
    assert by_place[("a.jsonl", 22)]["row"].startswith('{"prompt": "caf')
    assert "duplicates the id of line 1" in by_place[("a.jsonl", 21)]["reason"]

    c = summary["counts"]
    assert c["rows_rejected"] == len(expected)
    assert c["rows_generated"] == 4  # 2 JSONL + 1 CSV + 1 TXT
    assert c["rows_read"] == c["rows_generated"] + c["rows_rejected"]
    assert summary["metrics"]["rows_read"] == c["rows_read"]
    prompts = set()
    for shard in sorted(out.glob("*.tar")):
        with tarfile.open(shard) as tar:
            prompts |= {tar.extractfile(m).read().decode() for m in tar if m.name.endswith(".txt")}
    assert prompts == {"good one", "good two", "good csv", "good txt"}
