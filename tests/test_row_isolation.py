"""One row that fails on its way to an image is that row's reject, with its file, line, stage and
reason; the good rows beside it are generated and a rerun goes on."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from jaxgen.beam.pipeline import run_pipeline
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.plan import PlannedRow, Reject
from jaxgen.dataset.shard import GeneratorContractError, generate_shard
from jaxgen.engine.types import GeneratedImage
from jaxgen.requests import GenerationRequest
from tests.fake_generator import FakeSpec


def config(out: Path, **kw: object) -> JobConfig:
    return JobConfig(manifest="m.jsonl", output=str(out), shard_size=100, **kw)


def planned(prompts: list[str]) -> list[PlannedRow]:
    return [PlannedRow(f"{i:09d}", i, 0, "m.jsonl", i + 1,
                       GenerationRequest(p, seed=i, height=8, width=8, steps=2))
            for i, p in enumerate(prompts)]


def shard_rejects(out: Path) -> list[dict]:
    text = (out / "_rejects" / "00000.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines()]


def image_keys(out: Path) -> list[str]:
    with tarfile.open(out / "00000.tar") as t:
        return sorted(m.name.split(".")[0] for m in t if m.name.endswith(".png"))


def test_a_batch_failing_on_the_device_is_retried_row_by_row(tmp_path: Path) -> None:
    rows = planned([f"good {i}" for i in range(9)] + ["poison"] + ["good 10", "good 11"])
    stats = generate_shard(rows, shard=0, shard_name="00000", config=config(tmp_path),
                           generator=FakeSpec(failing_prompt="poison").build())
    assert (stats["successes"], stats["failures"], stats["images"]) == (11, 1, 11)
    assert stats["failures_by_stage"] == {"generate": 1}
    [reject] = shard_rejects(tmp_path)
    assert (reject["line"], reject["source"], reject["stage"]) == (10, "m.jsonl", "generate")
    assert "device failed" in reject["reason"] and json.loads(reject["row"])["prompt"] == "poison"
    assert len(image_keys(tmp_path)) == 11


class _Broken:
    """A generator whose every call fails: the device's fault, never a row's."""

    model_name, model_hash, batch_size = "broken", "0", 2

    def generate(self, requests, window=None, on_reject=None):
        raise RuntimeError("device lost")
        yield


def test_a_failure_every_row_reproduces_stops_the_shard_for_a_retry(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="device lost"):
        generate_shard(planned(["a", "b", "c"]), shard=0, shard_name="00000",
                       config=config(tmp_path), generator=_Broken())
    assert not (tmp_path / "00000_stats.json").exists()


class _WrongImage:
    """Yields a float image for one prompt: that row's record cannot be encoded."""

    model_name, model_hash, batch_size = "wrong", "0", 1

    def generate(self, requests, window=None, on_reject=None):
        for r in requests:
            dtype = np.float32 if r.prompt == "float" else np.uint8
            varied = np.arange(8 * 8 * 3).reshape(8, 8, 3)  # not flagged as a constant image
            yield GeneratedImage(r, 0, varied.astype(dtype))


def test_an_image_that_cannot_be_encoded_is_its_rows_reject(tmp_path: Path) -> None:
    stats = generate_shard(planned(["a", "float", "b"]), shard=0, shard_name="00000",
                           config=config(tmp_path), generator=_WrongImage())
    assert (stats["successes"], stats["failures"]) == (2, 1)
    [reject] = shard_rejects(tmp_path)
    assert (reject["line"], reject["stage"]) == (2, "encode") and "uint8" in reject["reason"]


class _Silent:
    """Drops a request without reporting it: the generator's fault, the job's to stop."""

    model_name, model_hash, batch_size = "silent", "0", 1

    def generate(self, requests, window=None, on_reject=None):
        for r in list(requests)[1:]:
            yield GeneratedImage(r, 0, np.zeros((8, 8, 3), np.uint8))


def test_a_generator_that_drops_a_request_unreported_stops_the_job(tmp_path: Path) -> None:
    with pytest.raises(GeneratorContractError, match="expected image 0 of prompt 'a'"):
        generate_shard(planned(["a", "b"]), shard=0, shard_name="00000",
                       config=config(tmp_path), generator=_Silent())


def test_a_reject_is_written_whatever_text_its_row_held() -> None:
    raw = '{"prompt": "\ud800"}'
    reject = Reject("k", 0, 0, "m.jsonl", 3, raw, "prompt", "bad \udcff", "parse")
    line = json.dumps(reject.to_json(), ensure_ascii=False).encode()
    assert b"\\\\ud800" in line and json.loads(line)["stage"] == "parse"


POISON = [  # (manifest line text, field at fault): each passes JSON, fails later
    ('{"prompt": "lone \\ud800 surrogate"}', "prompt"),
    ('{"prompt": "x", "negative_prompt": "\\udfff"}', "negative_prompt"),
    ('{"prompt": "x", "metadata": {"k": "\\ud83d"}}', "metadata"),
    ('{"prompt": "x", "metadata": {"\\ud83d": 1}}', "metadata"),
    ('{"prompt": "x", "id": "\\ud800"}', "id"),
    ('{"prompt": "x", "init_image": "\\ud800.png"}', "init_image"),
    ('{"prompt": "x", "metadata": {"n": NaN}}', "metadata"),
    ('{"prompt": "x", "metadata": {"n": Infinity}}', "metadata"),
    ('{"prompt": "x", "metadata": {"n": 1e999}}', "metadata"),
    ('{"prompt": "x", "steps": 1e300}', "steps"),
    ('{"prompt": "x", "init_image": " "}', "init_image"),
]


def test_poison_rows_are_rejected_and_the_job_and_its_rerun_go_on(tmp_path: Path) -> None:
    lines = []
    for i, (line, _) in enumerate(POISON):
        lines += [json.dumps({"prompt": f"good {i}"}), line]
    (tmp_path / "m.jsonl").write_text("\n".join(lines) + "\n")
    cfg = JobConfig(manifest=str(tmp_path / "m.jsonl"), output=str(tmp_path / "out"),
                    shard_size=4, defaults={"height": 8, "width": 8, "steps": 2})
    spec = FakeSpec(failing_prompt="good 3")
    summary = run_pipeline(cfg, spec)
    c = summary["counts"]
    n = len(POISON)
    assert (c["rows_read"], c["rows_generated"], c["rows_rejected"]) == (2 * n, n - 1, n + 1)
    found = {}
    for f in sorted((tmp_path / "out" / "_rejects").iterdir()):
        for text in f.read_text().splitlines():
            reject = json.loads(text)
            found[reject["line"]] = (reject["field"], reject["stage"])
    expected = {2 * i + 2: (field, "parse") for i, (_, field) in enumerate(POISON)}
    assert found == {**expected, 7: ("request", "generate")}
    rerun = run_pipeline(cfg, spec)
    rows = ("rows_read", "rows_generated", "rows_rejected", "images")
    assert [rerun["counts"][k] for k in rows] == [c[k] for k in rows]
    assert rerun["counts"]["shards_skipped"] == c["shards"]


def test_the_dry_run_tokenizes_every_row_with_the_models_tokenizer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from jaxgen.beam import transforms
    from jaxgen.weights.tokenizer import tokenize, write_clip_tokenizer

    write_clip_tokenizer(tmp_path / "model" / "tokenizer", ["square"])
    seen = []

    def tokenize_or_fail(tokenizer, prompts):  # the tokenizer failing on one row's text
        seen.extend(prompts)
        if "untokenizable" in prompts:
            raise ValueError("no tokens for this text")
        return tokenize(tokenizer, prompts)

    monkeypatch.setattr(transforms, "tokenize", tokenize_or_fail)
    (tmp_path / "m.jsonl").write_text('{"prompt": "square"}\n{"prompt": "untokenizable"}\n')
    cfg = JobConfig(manifest=str(tmp_path / "m.jsonl"), output=str(tmp_path / "out"),
                    dry_run=True, defaults={"height": 8, "width": 8})
    report = run_pipeline(cfg, FakeSpec(model_path=str(tmp_path / "model")))
    assert (report["counts"]["rows_valid"], report["counts"]["rows_rejected"]) == (1, 1)
    [reject] = shard_rejects(tmp_path / "out")
    assert (reject["line"], reject["field"], reject["stage"]) == (2, "prompt", "tokenize")
    assert "no tokens for this text" in reject["reason"] and "square" in seen
