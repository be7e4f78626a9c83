"""Test setup: 8 simulated CPU devices, and tiny diffusers-format models built locally."""

import os
import tempfile

# Must happen before jax is imported anywhere.
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# One compile cache for the session (child processes too), never the user's home.
os.environ.setdefault("JAXGEN_CACHE_DIR", tempfile.mkdtemp(prefix="jaxgen-xla-"))
os.environ.setdefault("XDG_CACHE_HOME", tempfile.mkdtemp(prefix="jaxgen-cache-"))

import pytest  # noqa: E402

from tests import tiny_models  # noqa: E402


@pytest.fixture(scope="session")
def tiny_sd1_dir(tmp_path_factory):
    """An SD 1.x-style model: conv projections, int head count, epsilon, quick_gelu."""
    return tiny_models.build(tmp_path_factory.mktemp("tiny_sd1"), style="sd1")


@pytest.fixture(scope="session")
def tiny_sd2_dir(tmp_path_factory):
    """An SD 2.x-style model: linear projections, per-block heads, upcast, v-prediction, gelu."""
    return tiny_models.build(tmp_path_factory.mktemp("tiny_sd2"), style="sd2")


@pytest.fixture(scope="session")
def tiny_inpainting_dir(tmp_path_factory):
    """An SD-inpainting-style model: the SD 1.x style with a 9-channel UNet."""
    return tiny_models.build(tmp_path_factory.mktemp("tiny_inpainting"), style="sd1",
                             in_channels=9)


@pytest.fixture(scope="session")
def tiny_sdxl_dir(tmp_path_factory):
    """An SDXL-style model: two text encoders, text_time UNet, Euler, VAE factor 0.13025."""
    from tests import tiny_sdxl

    return tiny_sdxl.build(tmp_path_factory.mktemp("tiny_sdxl"))
