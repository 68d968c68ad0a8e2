#!/usr/bin/env bash
# Create bench/dbos/.venv with DBOS Transact (bench/dbos/requirements.txt), apart from
# perdure's own environment. `python -m bench.vs_dbos` runs this on first use.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
python3 -m venv "$here/.venv"
"$here/.venv/bin/python" -m pip install --quiet --upgrade pip
"$here/.venv/bin/python" -m pip install --quiet -r "$here/requirements.txt"
"$here/.venv/bin/python" -c "from importlib.metadata import version; print('dbos', version('dbos'), 'in', '$here/.venv')"
