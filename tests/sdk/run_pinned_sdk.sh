#!/usr/bin/env bash
# tests/sdk again, with the SDK line that pulser-pasqal pins: pasqal-cloud 0.22.0 (+ tenacity 8.5),
# in its own venv (var/venv-sdk022): it cannot share a resolver with pasqal-cloud 0.24 (tenacity>=9.1).
# Everything else is pinned as in the project's locks, runtime + test (requirements/, `make lock`).
# Usage: tests/sdk/run_pinned_sdk.sh [pytest args]
set -euo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
VENV=${SDK022_VENV:-var/venv-sdk022}
wanted=$(grep -h '^[A-Za-z0-9]' requirements/runtime.txt requirements/test.txt | sort -u \
  | grep -v -e '^pasqal-cloud==' -e '^tenacity=='; printf 'pasqal-cloud==0.22.0\npulser-pasqal==0.24.0\n')
if [ ! -x "$VENV/bin/python" ] || [ "$(cat "$VENV/.requirements" 2>/dev/null)" != "$wanted" ]; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip
  printf '%s\n' "$wanted" > "$VENV/requirements.in"
  "$VENV/bin/pip" install -q -r "$VENV/requirements.in"
  printf '%s' "$wanted" > "$VENV/.requirements"
fi
"$VENV/bin/python" -c 'import pasqal_cloud._version, tenacity; assert pasqal_cloud._version.__version__ == "0.22.0"'
exec "$VENV/bin/python" -m pytest tests/sdk "$@"
