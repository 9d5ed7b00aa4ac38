#!/usr/bin/env bash
# Install what the tests need (Python extras; redis-server, chromium and Node from apt when
# missing; the JS SDK from npm), then run lint, format check, mypy --strict and the whole suite.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v chromium >/dev/null || missing+=(chromium)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
source scripts/_venv.sh "[test]"
if [ ${#missing[@]} -gt 0 ]; then apt_install "${missing[@]}"; fi
if [ -f tests/js/package.json ]; then
  (cd tests/js && npm install --no-audit --no-fund --loglevel=error >/dev/null)
fi

echo "== ruff" && .venv/bin/ruff check . && .venv/bin/ruff format --check .
echo "== mypy --strict" && .venv/bin/mypy
echo "== import contracts" && .venv/bin/lint-imports --no-cache
echo "== pytest"
set +e
.venv/bin/python -m pytest -n "${PYTEST_WORKERS:-2}" --dist loadfile "$@"
status=$?
set -e
if [ "$status" = 5 ]; then
  echo "pytest collected no tests: the suite is broken" >&2
  exit 1
fi
exit "$status"
