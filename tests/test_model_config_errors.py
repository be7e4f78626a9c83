"""A model directory whose config files hold values of the wrong type, or values no model can
be built from, fails with a message naming the file, the key and the value (never a bare
TypeError from deep inside the model), and `jaxgen generate` exits 2 with that one line."""

from __future__ import annotations

import json
import shutil

import pytest

from jaxgen.cli import main
from jaxgen.default_model import default_model_path
from jaxgen.requests import ConfigError
from jaxgen.weights.model_dir import ModelDirError, load_model


@pytest.fixture
def model_copy(tmp_path):
    dst = tmp_path / "model"
    shutil.copytree(default_model_path(), dst)
    return dst


def _set(path, key, value):
    path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))


@pytest.mark.parametrize(("component", "key", "value"), [
    ("unet", "block_out_channels", "abc"),
    ("unet", "block_out_channels", []),
    ("unet", "layers_per_block", "2"),
    ("unet", "attention_head_dim", [8, "x"]),
    ("unet", "use_linear_projection", 1),
    ("unet", "norm_eps", "1e-5"),
    ("vae", "block_out_channels", 64),
    ("vae", "scaling_factor", None),
    ("text_encoder", "hidden_size", 32.5),
    ("text_encoder", "hidden_act", 3),
])
def test_a_config_value_of_the_wrong_type_names_file_key_and_value(model_copy, component, key,
                                                                   value):
    config = model_copy / component / "config.json"
    _set(config, key, value)
    with pytest.raises(ConfigError) as err:
        load_model(model_copy)
    assert str(err.value).startswith(f"{config}: {key}={value!r} is not ")


def test_the_type_error_says_what_would_be_valid(model_copy):
    _set(model_copy / "unet" / "config.json", "block_out_channels", "abc")
    with pytest.raises(ConfigError, match="is not a non-empty list of integers$"):
        load_model(model_copy)


def test_well_typed_values_no_model_can_use_name_the_config_files(model_copy):
    _set(model_copy / "unet" / "config.json", "norm_num_groups", 0)
    with pytest.raises(ModelDirError, match=r"/\{unet,vae,text_encoder\}/config.json: no model "
                       r"can be built from these configs \(ValueError: .*groups"):
        load_model(model_copy)


def test_a_bad_scheduler_config_is_named_when_the_model_loads(model_copy):
    config = model_copy / "scheduler" / "scheduler_config.json"
    _set(config, "beta_schedule", 7)
    with pytest.raises(ModelDirError, match=f"^{config}: .*beta_schedule"):
        load_model(model_copy)


def test_a_config_that_is_not_an_object_is_named(model_copy):
    config = model_copy / "vae" / "config.json"
    config.write_text("[1, 2]")
    with pytest.raises(ModelDirError, match=f"^{config}: must be a JSON object, not list"):
        load_model(model_copy)


def test_generate_exits_2_naming_the_file_key_and_value(model_copy, tmp_path, capsys):
    config = model_copy / "unet" / "config.json"
    _set(config, "block_out_channels", "abc")
    manifest = tmp_path / "rows.jsonl"
    manifest.write_text('{"prompt": "a red circle"}\n')
    status = main(["generate", "--manifest", str(manifest), "--out", str(tmp_path / "ds"),
                   "--model", str(model_copy), "--no-progress"])
    assert status == 2
    assert f"{config}: block_out_channels='abc' is not" in capsys.readouterr().err
