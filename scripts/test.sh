#!/usr/bin/env bash
# Set up everything the tests need and run them: the README's test command and what CI calls.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh test
.venv/bin/ruff check .
exec .venv/bin/python -m pytest "$@"
