#!/usr/bin/env bash
# Install Syncline into .venv and run `syncline up` (embedded PostgreSQL; nothing else needed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh ""
exec .venv/bin/syncline up "$@"
