"""One table of row fields: the CLI, the Beam launcher and manifest parsing read the same types."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest
from apache_beam.options.pipeline_options import PipelineOptions

from jaxgen.cli import generate
from jaxgen.dataset.config import JobConfig
from jaxgen.dataset.rows import row_to_request
from jaxgen.requests import (
    DEFAULTABLE_FIELDS,
    REQUEST_FIELDS,
    SAMPLER_DISPLAY_NAMES,
    SAMPLERS,
    GenerationRequest,
)
from pipelines import generate_dataset

DEFAULTABLE = [f for f in REQUEST_FIELDS if f.defaultable]


def cli_args(*flags: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    generate.add_parser(parser)
    return parser.parse_args(["--manifest", "m.jsonl", "--out", "out", *flags])


def beam_options(*flags: str) -> generate_dataset.GenerateDatasetOptions:
    argv = ["--manifest", "m.jsonl", "--output", "out", *flags]
    return PipelineOptions(argv).view_as(generate_dataset.GenerateDatasetOptions)


def test_the_table_lists_every_request_field_in_order_with_its_default():
    fields = dataclasses.fields(GenerationRequest)
    assert [f.name for f in REQUEST_FIELDS] == [f.name for f in fields]
    assert [f.default for f in REQUEST_FIELDS] == [f.default for f in fields]
    assert DEFAULTABLE_FIELDS == ("negative_prompt", "guidance", "steps", "height", "width",
                                  "sampler", "num_images", "strength")


def test_cli_and_beam_launcher_expose_the_same_defaultable_fields():
    cli = {k.removeprefix("default_") for k in vars(cli_args()) if k.startswith("default_")}
    beam = set(beam_options().get_all_options()) & {f.name for f in REQUEST_FIELDS}
    assert cli == beam == set(DEFAULTABLE_FIELDS)


@pytest.mark.parametrize("field", DEFAULTABLE, ids=lambda f: f.name)
def test_cli_beam_and_csv_parse_a_field_to_the_type_of_the_table(field):
    # A value valid for the field: "16" for every number but strength, which lies in (0, 1].
    text = {"sampler": "ddim", "strength": "0.5"}.get(field.name, "16")
    cli = getattr(cli_args(f"--{field.name.replace('_', '-')}", text), f"default_{field.name}")
    beam = getattr(beam_options(f"--{field.name}", text), field.name)
    config = JobConfig(manifest="m.jsonl", output="out")
    cell = row_to_request({"prompt": "a", field.name: text}, config, text_values=True)
    for value in (cli, beam, getattr(cell, field.name)):
        assert type(value) is field.type and value == field.type(text)


def test_cli_and_beam_launcher_read_job_settings_the_same_way(tmp_path: Path):
    job = tmp_path / "job.yaml"
    job.write_text("shard_size: 7\njob_seed: 5\ndefaults:\n  steps: 9\n  guidance: 2.0\n")
    # A model that recommends nothing: the launcher knows no model, so none is compared here.
    cli = generate.job_config(cli_args("--job-config", str(job), "--steps", "4",
                                       "--shard-size", "3", "--negative-prompt", "blurry",
                                       "--model", str(tmp_path)))
    beam = generate_dataset.job_config(beam_options("--job_config", str(job), "--steps", "4",
                                                    "--shard_size", "3",
                                                    "--negative_prompt", "blurry"))
    assert cli == beam
    assert cli.shard_size == 3 and cli.job_seed == 5
    assert cli.defaults == {"steps": 4, "guidance": 2.0, "negative_prompt": "blurry"}


def test_every_sampler_has_a_display_name():
    assert SAMPLERS == tuple(SAMPLER_DISPLAY_NAMES)
    assert SAMPLER_DISPLAY_NAMES["euler_ancestral"] == "Euler a"
    assert len(set(SAMPLER_DISPLAY_NAMES.values())) == len(SAMPLERS)


def test_resize_is_a_job_setting_with_its_default_in_both_launchers_help(tmp_path: Path):
    cli_help = argparse.ArgumentParser()
    generate.add_parser(cli_help)
    beam_help = argparse.ArgumentParser()
    generate_dataset.GenerateDatasetOptions._add_argparse_args(beam_help)
    for text in (cli_help.format_help(), beam_help.format_help()):
        assert "--resize {crop,fit,stretch}" in text and "(default: crop)" in text
    cli = generate.job_config(cli_args("--resize", "fit", "--model", str(tmp_path)))
    beam = generate_dataset.job_config(beam_options("--resize", "fit"))
    assert cli == beam and cli.resize == "fit"
    assert generate.job_config(cli_args("--model", str(tmp_path))).resize == "crop"
