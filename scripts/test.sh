#!/usr/bin/env bash
# Set up with the test extra, lint, then run the whole suite on 8 simulated CPU devices.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
.venv/bin/ruff check .
export XLA_FLAGS="--xla_force_host_platform_device_count=8" JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1
.venv/bin/python -m pytest -q "$@"
