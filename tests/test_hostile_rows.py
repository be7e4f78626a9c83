"""Poison rows and files, one job per manifest format, each mixed with good rows: every good
row is generated, every poison row is its own reject (file, line, field, stage, reason), rows
read = generated + rejected, and the command exits with the documented status."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.cli import main
from jaxgen.cli.progress import EXIT_NONE_GENERATED, EXIT_OK, EXIT_SOME_REJECTED
from jaxgen.dataset.rows import MAX_ID_CHARS, MAX_NESTING
from jaxgen.engine.spec import GeneratorSpec
from jaxgen.requests import MAX_PROMPT_CHARS, MAX_SEED
from tests.fake_generator import FakeSpec
from tests.hostile import (
    MAX_LINE_BYTES,
    MAX_METADATA_BYTES,
    assert_rows_add_up,
    generated_prompts,
    job,
    rejects,
    run_job,
    write_images,
)


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


# (what it is, the manifest line, field at fault, stage, words of the reason)
JSONL_POISON: list[tuple[str, bytes, str, str, str]] = [
    ("prompt a number", b'{"prompt": 5}', "prompt", "parse", "must be a string"),
    ("prompt null", b'{"prompt": null}', "prompt", "parse", "is missing"),
    ("prompt a bool", b'{"prompt": true}', "prompt", "parse", "must be a string"),
    ("prompt a list", b'{"prompt": ["a", "b"]}', "prompt", "parse", "must be a string"),
    ("prompt an object", b'{"prompt": {"text": "a"}}', "prompt", "parse", "must be a string"),
    ("prompt blank", b'{"prompt": " \\t "}', "prompt", "parse", "is empty"),
    ("prompt too long", b'{"prompt": "%s"}' % (b"\xc3\xa9" * (MAX_PROMPT_CHARS + 1)),
     "prompt", "parse", f"longer than {MAX_PROMPT_CHARS}"),
    ("no prompt", b'{"seed": 1}', "prompt", "parse", "is missing"),
    ("negative_prompt a number", b'{"prompt": "x", "negative_prompt": 0}', "negative_prompt",
     "parse", "must be a string"),
    ("seed a string", b'{"prompt": "x", "seed": "5"}', "seed", "parse", "must be an integer"),
    ("seed negative", b'{"prompt": "x", "seed": -1}', "seed", "parse", "must be an integer"),
    ("seed fractional", b'{"prompt": "x", "seed": 1.5}', "seed", "parse", "must be an integer"),
    ("seed a bool", b'{"prompt": "x", "seed": false}', "seed", "parse", "must be an integer"),
    ("seed past int64", b'{"prompt": "x", "seed": %d}' % (MAX_SEED + 1), "seed", "parse",
     "must be an integer"),
    ("seed of 5000 digits", b'{"prompt": "x", "seed": %s}' % (b"9" * 5000), "line", "parse",
     "Python cannot read"),
    ("steps NaN", b'{"prompt": "x", "steps": NaN}', "steps", "parse", "must be an integer"),
    ("steps -Infinity", b'{"prompt": "x", "steps": -Infinity}', "steps", "parse",
     "must be an integer"),
    ("steps huge", b'{"prompt": "x", "steps": 1e20}', "steps", "parse", "must be an integer"),
    ("steps a list", b'{"prompt": "x", "steps": [2]}', "steps", "parse", "must be an integer"),
    ("steps zero", b'{"prompt": "x", "steps": 0}', "steps", "parse", "must be an integer"),
    ("guidance NaN", b'{"prompt": "x", "guidance": NaN}', "guidance", "parse", "finite"),
    ("guidance overflowing to inf", b'{"prompt": "x", "guidance": 1e999}', "guidance", "parse",
     "finite"),
    ("guidance a string", b'{"prompt": "x", "guidance": "7.5"}', "guidance", "parse", "finite"),
    ("guidance negative", b'{"prompt": "x", "guidance": -1}', "guidance", "parse", "[0, 100]"),
    ("height a bool", b'{"prompt": "x", "height": true}', "height", "parse", "must be an integer"),
    ("height negative", b'{"prompt": "x", "height": -8}', "height", "parse", "must be an integer"),
    ("height huge", b'{"prompt": "x", "height": 1e12}', "height", "parse", "must be an integer"),
    ("height off the size multiple", b'{"prompt": "x", "height": 12}', "height", "parse",
     "multiple of 8"),
    ("width an object", b'{"prompt": "x", "width": {"px": 8}}', "width", "parse",
     "must be an integer"),
    ("sampler unknown", b'{"prompt": "x", "sampler": "plms2"}', "sampler", "parse",
     "is not one of"),
    ("sampler a list", b'{"prompt": "x", "sampler": ["ddim"]}', "sampler", "parse",
     "is not one of"),
    ("num_images zero", b'{"prompt": "x", "num_images": 0}', "num_images", "parse",
     "must be an integer"),
    ("num_images huge", b'{"prompt": "x", "num_images": 100000}', "num_images", "parse",
     "must be an integer"),
    ("id a bool", b'{"prompt": "x", "id": true}', "id", "parse", "string or an integer"),
    ("id fractional", b'{"prompt": "x", "id": 1.5}', "id", "parse", "string or an integer"),
    ("id a list", b'{"prompt": "x", "id": ["a"]}', "id", "parse", "string or an integer"),
    ("id too long", b'{"prompt": "x", "id": "%s"}' % (b"i" * (MAX_ID_CHARS + 1)), "id", "parse",
     f"longer than {MAX_ID_CHARS}"),
    ("id of another row", b'{"prompt": "x", "id": "taken"}', "id", "parse",
     "duplicates the id of line 1"),
    ("id a lone surrogate", b'{"prompt": "x", "id": "\\udc00"}', "id", "parse", "UTF-8"),
    ("prompt a lone surrogate", b'{"prompt": "a \\ud800"}', "prompt", "parse", "UTF-8"),
    ("column name a lone surrogate", b'{"prompt": "x", "\\ud800": 1}', "\\ud800", "parse",
     "not a known field"),
    ("metadata a string", b'{"prompt": "x", "metadata": "k=v"}', "metadata", "parse",
     "JSON object"),
    ("metadata holding NaN", b'{"prompt": "x", "metadata": {"k": [NaN]}}', "metadata", "parse",
     "not plain JSON"),
    ("metadata too large", b'{"prompt": "x", "metadata": {"k": "%s"}}'
     % (b"m" * MAX_METADATA_BYTES),
     "metadata", "parse", "max_metadata_bytes"),
    ("metadata nested past the limit", b'{"prompt": "x", "metadata": {"k": %s}}'
     % deep(MAX_NESTING + 1).encode(), "metadata", "parse", "nested more than"),
    ("prompt nested 900 deep", b'{"prompt": %s}' % deep(900).encode(), "prompt", "parse",
     "nested more than"),
    ("unknown column nested 900 deep", b'{"prompt": "x", "tags": %s}' % deep(900).encode(),
     "tags", "parse", "nested more than"),
    ("a line nested 3000 deep", deep(3000).encode(), "line", "parse", "Python cannot read"),
    ("an id nested 3000 deep", b'{"prompt": "x", "id": %s}' % deep(3000).encode(), "line",
     "parse", "Python cannot read"),
    ("unknown column", b'{"prompt": "x", "colour": "red"}', "colour", "parse",
     "not a known field"),
    ("a key twice", b'{"prompt": "x", "seed": 1, "seed": 2}', "seed", "parse", "appears twice"),
    ("a field under both names", b'{"prompt": "x", "steps": 2, "num_inference_steps": 3}',
     "steps", "parse", "given twice"),
    ("not an object", b'["prompt", "x"]', "row", "parse", "JSON object"),
    ("a bare string", b'"x"', "row", "parse", "JSON object"),
    ("null", b"null", "row", "parse", "JSON object"),
    ("truncated JSON", b'{"prompt": "x"', "line", "parse", "not valid JSON"),
    ("two objects on a line", b'{"prompt": "x"} {"prompt": "y"}', "line", "parse", "Extra data"),
    ("a NUL byte in the line", b'{"prompt": "x\x00"}', "line", "parse", "not valid JSON"),
    ("a BOM inside the file", b'\xef\xbb\xbf{"prompt": "x"}', "line", "parse", "not valid JSON"),
    ("Latin-1 bytes", b'{"prompt": "caf\xe9"}', "line", "parse", "not valid UTF-8"),
    ("a surrogate as UTF-8 bytes", b'{"prompt": "\xed\xa0\x80"}', "line", "parse",
     "not valid UTF-8"),
    ("an over-long line", b'{"prompt": "%s"}' % (b"y" * MAX_LINE_BYTES), "line", "parse",
     "max_line_bytes"),
    ("mask without image", b'{"prompt": "x", "mask_image": "images/mask.png"}', "mask_image",
     "parse", "without an init_image"),
    ("init_image a number", b'{"prompt": "x", "init_image": 5}', "init_image", "parse",
     "non-empty path"),
    ("init_image empty", b'{"prompt": "x", "init_image": ""}', "init_image", "parse",
     "non-empty path"),
    ("strength NaN", b'{"prompt": "x", "init_image": "images/ok.png", "strength": NaN}',
     "strength", "parse", "(0, 1]"),
    ("strength a string", b'{"prompt": "x", "init_image": "images/ok.png", "strength": "0.5"}',
     "strength", "parse", "(0, 1]"),
    ("init_image missing", b'{"prompt": "x", "init_image": "images/gone.png"}', "init_image",
     "image", "no such file"),
    ("init_image a directory", b'{"prompt": "x", "init_image": "images"}', "init_image",
     "image", "directory"),
    ("init_image not an image", b'{"prompt": "x", "init_image": "images/notes.png"}',
     "init_image", "image", "not a PNG, JPEG or WebP"),
    ("init_image empty file", b'{"prompt": "x", "init_image": "images/empty.png"}',
     "init_image", "image", "not a PNG, JPEG or WebP"),
    ("init_image truncated", b'{"prompt": "x", "init_image": "images/truncated.png"}',
     "init_image", "image", "truncated"),
    ("init_image with a NUL", b'{"prompt": "x", "init_image": "images/ok.png\\u0000"}',
     "init_image", "image", "null byte"),
    ("mask_image a directory",
     b'{"prompt": "x", "init_image": "images/ok.png", "mask_image": "images"}', "mask_image",
     "image", "directory"),
]
# Text that is odd but valid: generated, not rejected.
JSONL_ODD_BUT_GOOD = [
    b'{"prompt": "nul \\u0000 inside", "metadata": {"k": "\\u0000"}}',
    b'{"prompt": "escaped key", "\\u0073eed": 7}',
    b'{"prompt": "big integer id", "id": %d}' % 10**40,
    b'{"prompt": "nulls are defaults", "seed": null, "metadata": null, "steps": null, '
    b'"negative_prompt": null, "id": null, "init_image": null}',
    b'{"prompt": "metadata at the nesting limit", "metadata": {"k": %s}}'
    % deep(MAX_NESTING - 1).encode(),
]


def jsonl_manifest(root: Path, poison: list[tuple[str, bytes, str, str, str]]
                   ) -> tuple[Path, set[str], dict[int, tuple]]:
    """BOM first, CRLF endings, blank lines; a good row before each poison row."""
    lines = [b'\xef\xbb\xbf{"prompt": "good first", "id": "taken"}']
    good, bad = {"good first"}, {}
    for i, (kind, line, *expected) in enumerate(poison):
        good.add(f"good {i}")
        lines += [json.dumps({"prompt": f"good {i}"}).encode(), line]
        bad[len(lines)] = (kind, *expected)
        if i % 10 == 0:
            lines += [b"", b"  \t"]  # blank lines are not rows
    lines += JSONL_ODD_BUT_GOOD
    good |= {json.loads(line)["prompt"] for line in JSONL_ODD_BUT_GOOD}
    path = root / "poison.jsonl"
    path.write_bytes(b"\r\n".join(lines) + b"\r\n")
    return path, good, bad


CSV_HEADER = "prompt,steps,guidance,seed,height,metadata"
CSV_POISON: list[tuple[str, str, str, str]] = [  # (what, record, field, words of the reason)
    ("too many cells", "x,2,7,1,8,,extra", "row", "has 7 fields"),
    ("too few cells", "x,2", "row", "has 2 fields"),
    ("bad quoting", '"x"y,2,,,,', "line", "not valid CSV"),
    ("steps a word", "x,two,,,,", "steps", "must be an integer"),
    ("steps nan", "x,nan,,,,", "steps", "must be an integer"),
    ("steps fractional text", "x,2.0,,,,", "steps", "must be an integer"),
    ("guidance nan", "x,,nan,,,", "guidance", "finite"),
    ("guidance inf", "x,,-inf,,,", "guidance", "finite"),
    ("guidance overflowing", "x,,1e999,,,", "guidance", "finite"),
    ("seed negative", "x,,,-1,,", "seed", "must be an integer"),
    ("seed true", "x,,,true,,", "seed", "must be an integer"),
    ("height a word", "x,,,,tall,", "height", "must be an integer"),
    ("metadata not JSON", "x,,,,,k=v", "metadata", "must hold a JSON object"),
    ("metadata a list", 'x,,,,,"[1, 2]"', "metadata", "JSON object"),
    ("metadata with NaN", 'x,,,,,"{""k"": NaN}"', "metadata", "not plain JSON"),
    ("metadata nested past the limit", f"x,,,,,{deep(MAX_NESTING + 1)}", "metadata",
     "nested more than"),
    ("metadata nested 3000 deep", f"x,,,,,{deep(3000)}", "metadata", "Python can read"),
    ("empty prompt cell", ",2,,,,", "prompt", "is missing"),
    ("blank prompt", "   ,2,,,,", "prompt", "is empty"),
    ("an over-long record", "y" * MAX_LINE_BYTES + ",2,,,,", "line", "max_line_bytes"),
]


def csv_manifests(root: Path) -> tuple[set[str], dict[tuple[str, int], tuple]]:
    """poison.csv (BOM, CRLF) with a good row before each poison row, one row of Latin-1
    bytes; header-twice.csv, whose every row is rejected for its header."""
    lines = [b"\xef\xbb\xbf" + CSV_HEADER.encode()]
    good, bad = set(), {}
    for i, (kind, record, field, words) in enumerate(CSV_POISON):
        good.add(f"good {i}")
        lines += [f"good {i},2,7.5,,8,".encode(), record.encode()]
        bad[("poison.csv", len(lines))] = (kind, field, "parse", words)
    lines.append(b"caf\xe9,2,,,,")
    bad[("poison.csv", len(lines))] = ("Latin-1 bytes", "line", "parse", "not valid UTF-8")
    lines.append(b'"a prompt over\r\ntwo lines",2,,,,')  # a quoted newline is not a new row
    lines.append(b"a NUL \x00 byte,2,,,,")  # odd, but text
    good |= {"a prompt over\ntwo lines", "a NUL \x00 byte"}
    (root / "poison.csv").write_bytes(b"\r\n".join(lines) + b"\r\n")
    (root / "header-twice.csv").write_text("prompt,seed,seed\nx,1,2\ny,3,4\n")
    for line in (2, 3):
        bad[("header-twice.csv", line)] = ("a column twice in the header", "header", "parse",
                                           "appears twice")
    return good, bad


def check_job(out: Path, summary: dict, good: set[str],
              bad: dict[tuple[str, int], tuple]) -> None:
    assert sorted(generated_prompts(out)) == sorted(good)
    found = rejects(out)
    assert set(found) == set(bad), set(found) ^ set(bad)
    for place, (kind, field, stage, words) in bad.items():
        reject = found[place]
        assert (reject["field"], reject["stage"]) == (field, stage), (kind, reject)
        assert words in reject["reason"], (kind, reject)
        assert reject["row"] and reject["key"], (kind, reject)
    assert_rows_add_up(summary, len(good), len(bad))


@pytest.fixture(scope="module")
def jsonl_job(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, dict, set, dict]:
    root = tmp_path_factory.mktemp("jsonl")
    write_images(root / "images")
    path, good, bad = jsonl_manifest(root, JSONL_POISON)
    out = root / "out"
    return root, path, run_job(str(path), out), good, {(path.name, k): v for k, v in bad.items()}


def test_there_are_forty_kinds_of_poison_at_least() -> None:
    kinds = [f"jsonl: {k}" for k, *_ in JSONL_POISON] + [f"csv: {k}" for k, *_ in CSV_POISON]
    kinds += PARQUET_KINDS + TXT_KINDS
    assert len(kinds) == len(set(kinds)) >= 40


def test_jsonl_poison_rows_are_each_their_own_reject(jsonl_job) -> None:
    _, _, summary, good, bad = jsonl_job
    check_job(jsonl_job[0] / "out", summary, good, bad)


def test_csv_poison_rows_are_each_their_own_reject(tmp_path: Path) -> None:
    good, bad = csv_manifests(tmp_path)
    summary = run_job(f"{tmp_path}/*.csv", tmp_path / "out")
    check_job(tmp_path / "out", summary, good, bad)


TXT_KINDS = ["txt: Latin-1 bytes", "txt: an over-long line", "txt: a prompt too long",
             "txt: a lone surrogate as bytes"]


def test_txt_poison_lines_are_each_their_own_reject(tmp_path: Path) -> None:
    lines = [b"\xef\xbb\xbfgood first", b"caf\xe9", b"good a", b"z" * (MAX_LINE_BYTES + 1),
             b"", b"   ", b"good b", b"p" * (MAX_PROMPT_CHARS + 1), b"good c\x00with NUL",
             b"\xed\xb0\x80 surrogate"]
    (tmp_path / "p.txt").write_bytes(b"\r\n".join(lines) + b"\r\n")
    summary = run_job(str(tmp_path / "p.txt"), tmp_path / "out")
    bad = {("p.txt", 2): ("latin-1", "line", "parse", "not valid UTF-8"),
           ("p.txt", 4): ("over-long", "line", "parse", "max_line_bytes"),
           ("p.txt", 8): ("too long", "prompt", "parse", f"longer than {MAX_PROMPT_CHARS}"),
           ("p.txt", 10): ("surrogate", "line", "parse", "not valid UTF-8")}
    check_job(tmp_path / "out", summary,
              {"good first", "good a", "good b", "good c\x00with NUL"}, bad)


# Each poison column is null (not given) in the good rows: one file holds them all.
PARQUET_COLUMNS = {  # column: (arrow type, the poison value, field, words of the reason)
    "steps": ("string", "two", "steps", "must be an integer"),
    "seed": ("float64", float("nan"), "seed", "must be an integer"),
    "guidance": ("timestamp[s]", 0, "guidance", "finite"),
    "height": ("bool", True, "height", "must be an integer"),
    "negative_prompt": ("binary", b"neg", "negative_prompt", "must be a string"),
    "id": ("list<item: int64>", [1, 2], "id", "string or an integer"),
    "metadata": ("string", '{"k": 1}', "metadata", "JSON object"),
    "strength": ("decimal128(3, 2)", 0.5, "strength", "(0, 1]"),
    "sampler": ("struct<name: string>", {"name": "ddim"}, "sampler", "is not one of"),
    "colour": ("string", "red", "colour", "not a known field"),
    "width": ("int64", 2**62, "width", "must be an integer"),
}
PARQUET_KINDS = [f"parquet: {column} as {kind[0]}" for column, kind in PARQUET_COLUMNS.items()]


def test_parquet_columns_of_the_wrong_type_reject_their_rows(tmp_path: Path) -> None:
    import decimal

    import pyarrow as pa
    import pyarrow.parquet as pq

    n = 2 * len(PARQUET_COLUMNS) + 2
    prompts = [f"good {i}" if i % 2 == 0 else f"bad {i}" for i in range(n)]
    prompts[-1] = None  # a null prompt: the prompt is missing
    columns = {"prompt": pa.array(prompts, pa.string())}
    bad = {("p.parquet", n): ("null prompt", "prompt", "parse", "is missing")}
    for j, (column, (type_name, value, field, words)) in enumerate(PARQUET_COLUMNS.items()):
        values = [None] * n
        row = 2 * j + 1
        values[row] = decimal.Decimal(str(value)) if type_name.startswith("decimal") else value
        arrow_type = {"timestamp[s]": pa.timestamp("s"), "list<item: int64>": pa.list_(pa.int64()),
                      "decimal128(3, 2)": pa.decimal128(3, 2),
                      "struct<name: string>": pa.struct([("name", pa.string())])}.get(
                          type_name) or pa.type_for_alias(type_name)
        columns[column] = pa.array(values, arrow_type)
        bad[("p.parquet", row + 1)] = (column, field, "parse", words)
    pq.write_table(pa.table(columns), tmp_path / "p.parquet")
    summary = run_job(str(tmp_path / "p.parquet"), tmp_path / "out")
    check_job(tmp_path / "out", summary, {p for p in prompts if p and p.startswith("good")}, bad)


def test_a_rerun_of_the_poisoned_job_goes_on_and_changes_nothing(jsonl_job) -> None:
    root, path, summary, *_ = jsonl_job
    before = {p.name: p.read_bytes() for p in (root / "out" / "_rejects").iterdir()}
    rerun = run_job(str(path), root / "out")
    assert rerun["counts"]["shards_skipped"] == summary["counts"]["shards"]
    assert {p.name: p.read_bytes() for p in (root / "out" / "_rejects").iterdir()} == before


def test_the_dry_run_finds_the_same_rejects(jsonl_job, tmp_path: Path) -> None:
    root, path, _, good, bad = jsonl_job
    cfg_out = tmp_path / "dry"
    report = run_pipeline(job(str(path), cfg_out, dry_run=True))
    assert (report["counts"]["rows_valid"], report["counts"]["rows_rejected"]) == (
        len(good), len(bad))
    dry, real = rejects(cfg_out), rejects(root / "out")
    assert {k: (r["field"], r["stage"]) for k, r in dry.items()} == {
        k: (r["field"], r["stage"]) for k, r in real.items()}


@pytest.fixture
def fake_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's model spec builds the fake generator: its checks run, no weights load."""
    monkeypatch.setattr(GeneratorSpec, "build", lambda self: FakeSpec().build())


def cli(manifest: Path, out: Path, model: Path, *flags: str) -> int:
    return main(["generate", "--manifest", str(manifest), "--out", str(out), "--model",
                 str(model), "--height", "8", "--width", "8", "--steps", "2", "--shard-size",
                 "8", "--no-progress", *flags])


def test_the_command_exits_as_documented_on_poisoned_jobs(
    jsonl_job, tiny_sd1_dir, fake_model, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    root = jsonl_job[0]
    chosen = ("prompt a list", "seed of 5000 digits", "a line nested 3000 deep",
              "column name a lone surrogate", "init_image truncated", "mask without image")
    some = [p for p in JSONL_POISON if p[0] in chosen]
    (root / "cli").mkdir()
    (root / "cli" / "images").symlink_to(root / "images")
    path, _, bad = jsonl_manifest(root / "cli", some)
    out = tmp_path / "ds"
    assert cli(path, out, tiny_sd1_dir) == EXIT_OK  # rejected rows fail a job only if --strict
    assert f"rejected {len(bad)}" in capsys.readouterr().out
    assert cli(path, out, tiny_sd1_dir, "--strict") == EXIT_SOME_REJECTED  # a resume
    only_poison = root / "cli" / "only-poison.jsonl"
    only_poison.write_bytes(b"\n".join(line for _, line, *_ in some) + b"\n")
    assert cli(only_poison, tmp_path / "none", tiny_sd1_dir) == EXIT_NONE_GENERATED
