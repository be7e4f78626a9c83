#!/usr/bin/env bash
# Set up, then generate a small dataset from the example manifest on the default model.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/jaxgen generate --manifest configs/examples/prompts.jsonl --out out/quickstart "$@"
