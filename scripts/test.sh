#!/usr/bin/env bash
# Set up with the test extra, lint, then run the whole suite on 8 simulated CPU devices.
set -euo pipefail
cd "$(dirname "$0")/.."
EXTRAS=test bash scripts/setup.sh
# The report page is tested in a real headless browser: Debian's chromium (CI runs as root).
if ! command -v chromium >/dev/null; then
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
.venv/bin/ruff check .
export XLA_FLAGS="--xla_force_host_platform_device_count=8" JAX_PLATFORMS=cpu HF_HUB_OFFLINE=1
# The slowest tests are listed at the end: the suite must stay within CI's time (~25 min).
# Two workers, whole files each (module fixtures stay shared): compiles are single-threaded,
# so a 2-core machine runs two test files at once in about the time of one.
.venv/bin/python -m pytest -q -n "${JAXGEN_TEST_WORKERS:-2}" --dist loadfile --durations=25 "$@"
