#!/usr/bin/env bash
# Runs tools/reference/run_reference.py in the reference's own virtualenv (tools/reference/.venv),
# creating it first if it is missing. Arguments go to run_reference.py (see its --help).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ ! -x "$here/.venv/bin/python" ]; then
    python3 -m venv "$here/.venv"
    "$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
fi
exec "$here/.venv/bin/python" "$here/run_reference.py" "$@"
