"""Fuzzed manifest rows never crash a job: every row, whatever it holds, is either a request or
a reject with a reason, at the row-parsing layer (many examples) and through a whole job (a few
batches of rows with the fake generator)."""

from __future__ import annotations

import csv
import dataclasses
import io
import json
import pickle
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from jaxgen.dataset.manifest import ManifestFile, iter_rows, scan_ids
from jaxgen.dataset.plan import STAGES, Reject
from jaxgen.dataset.rows import row_to_request
from jaxgen.requests import (
    FIELD_ALIASES,
    MICRO_CONDITIONING,
    REQUEST_FIELDS,
    RequestError,
    validate_request,
)
from tests.hostile import MAX_LINE_BYTES, job, rejects, run_job, write_images

# Any character, lone surrogates included (a JSON escape can carry them).
TEXT = st.text(st.characters(exclude_categories=()), max_size=12)
JSON_ANY = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=8,
)
VALID = {  # a plausible value of each field, so that many rows get through to an image
    "prompt": st.text(min_size=1, max_size=20),
    "negative_prompt": st.text(max_size=10),
    "seed": st.integers(0, 2**63 - 1),
    "guidance": st.floats(0, 100),
    "steps": st.integers(1, 3),
    "height": st.sampled_from([8, 16]),
    "width": st.sampled_from([8, 16]),
    "sampler": st.sampled_from(["ddim", "euler", "DDIM "]),
    "num_images": st.integers(1, 2),
    "id": TEXT | st.integers(),
    "metadata": st.dictionaries(st.text(max_size=5), JSON_ANY, max_size=3),
    "init_image": st.sampled_from(["images/ok.png", "images/notes.png", "images/gone.png",
                                   "images", " "]),
    "mask_image": st.sampled_from(["images/mask.png", "images/ok.png", "images/notes.png"]),
    "strength": st.floats(0, 1.5),
    "prompt_2": st.text(max_size=10),
    **{name: st.lists(st.integers(0, 64), min_size=2, max_size=2)
       for name in MICRO_CONDITIONING},
    "aesthetic_score": st.floats(0, 10),
    "negative_aesthetic_score": st.floats(0, 10),
}
assert set(VALID) == {f.name for f in REQUEST_FIELDS}
NAMES = sorted(VALID) + sorted(FIELD_ALIASES)


@st.composite
def json_rows(draw: st.DrawFn) -> dict[str, Any]:
    """A row of some request fields (each a plausible value or junk), maybe with junk keys."""
    row = {}
    for name in draw(st.lists(st.sampled_from(NAMES), max_size=5, unique=True)):
        field = FIELD_ALIASES.get(name, name)
        row[name] = draw(VALID[field] | JSON_ANY) if draw(st.booleans()) else draw(VALID[field])
    if draw(st.integers(0, 9)):  # mostly with a prompt
        row.setdefault("prompt", draw(VALID["prompt"]))
    row.update(draw(st.dictionaries(TEXT, JSON_ANY, max_size=2)))
    return row


@st.composite
def lines(draw: st.DrawFn) -> bytes:
    """One manifest line: a JSON row (ASCII-escaped, or raw UTF-8 with any surrogates as
    bytes), or raw junk bytes."""
    kind = draw(st.sampled_from(["ascii", "utf-8", "bytes"]))
    if kind == "bytes":
        return draw(st.binary(max_size=40)).replace(b"\n", b" ")
    text = json.dumps(draw(json_rows()), ensure_ascii=kind == "ascii")
    return text.encode("utf-8", "surrogatepass")


CSV_HEADER = b"prompt,steps,guidance,seed,metadata,init_image"
CELLS = st.sampled_from(["x", "2", "7.5", "nan", "-1", "1e999", '{"k": 1}', "[1]", "", " ",
                         "images/ok.png"]) | TEXT


@st.composite
def csv_records(draw: st.DrawFn) -> bytes:
    """One CSV record: cells of any text (maybe too few or too many), or raw junk bytes."""
    if draw(st.integers(0, 4)) == 0:
        return draw(st.binary(max_size=40))
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow(draw(st.lists(CELLS, min_size=1, max_size=8)))
    return out.getvalue().encode("utf-8", "surrogatepass")


def manifest(folder: Path, rows: list[bytes], suffix: str = "jsonl") -> ManifestFile:
    path = folder / f"fuzz.{suffix}"
    path.write_bytes(b"\n".join(rows) + b"\n")
    return ManifestFile(0, str(path), path.stat().st_size, suffix)


def check_file(file: ManifestFile, folder: Path) -> None:
    config = job(file.path, folder / "out")
    read = list(iter_rows(file, MAX_LINE_BYTES))
    assert [r.row_index for r in read] == list(range(len(read)))
    assert [(i, line) for i, line, _ in scan_ids(file, MAX_LINE_BYTES)] == [
        (r.row_index, r.line) for r in read]  # the counting pass agrees
    for raw in read:
        check_row(raw, config, file.path)


def check_row(raw: Any, config: Any, source: str) -> None:
    """The row is a valid, picklable request or a reject that can be written."""
    error = raw.error
    if error is None:
        try:
            request = row_to_request(raw.fields, config, text_values=raw.text_values,
                                     fallback_seed=lambda _: 1, source=source)
        except RequestError as e:
            error = (e.field, str(e))
        else:
            validate_request(request, size_multiple=config.required_multiple)
            pickle.dumps(request)  # what the runner does with it
            json.dumps(dataclasses.asdict(request), ensure_ascii=False, default=repr).encode()
            return
    reject = Reject("k", 0, 0, source, raw.line, raw.raw, *error)
    assert reject.reason and reject.field.strip()  # a reject names what is wrong
    json.dumps(reject.to_json(), ensure_ascii=False).encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(lines(), min_size=1, max_size=8))
def test_every_fuzzed_row_is_a_request_or_a_reject(rows: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_file(manifest(Path(folder), rows), Path(folder))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(csv_records(), min_size=1, max_size=8))
def test_every_fuzzed_csv_record_is_a_request_or_a_reject(records: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        check_file(manifest(Path(folder), [CSV_HEADER, *records], "csv"), Path(folder))


# Not shrunk: a failing job is minimized by the row-layer test above, in a fraction of the time.
@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow],
          phases=[Phase.explicit, Phase.reuse, Phase.generate])
@given(st.lists(lines(), min_size=10, max_size=30))
def test_a_job_over_fuzzed_rows_generates_or_rejects_every_row(rows: list[bytes]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_images(root / "images")
        file = manifest(root, rows)
        summary = run_job(file.path, root / "out")
        c = summary["counts"]
        assert c["rows_read"] == len(list(scan_ids(file, MAX_LINE_BYTES)))
        assert c["rows_read"] == c["rows_generated"] + c["rows_rejected"]
        found = rejects(root / "out") if c["rows_rejected"] else {}
        assert len(found) == c["rows_rejected"]
        for reject in found.values():
            assert reject["reason"] and reject["field"].strip() and reject["stage"] in STAGES
