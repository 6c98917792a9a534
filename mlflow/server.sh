#!/usr/bin/env bash
# Run the PaDiRec MLflow tracking server: a database backend plus an artifact store that the server
# proxies (--serve-artifacts), so jobs only need MLFLOW_TRACKING_URI=http://HOST:PORT.
#
#   mlflow/server.sh                  start in the foreground with the settings of mlflow/server.env
#   mlflow/server.sh --check          validate the settings with mlflow's own CLI parser, print the command, exit
#   mlflow/server.sh --workers 8 ...  further flags go to `mlflow server` unchanged
#
# Settings: the environment first, then $MLFLOW_ENV_FILE (default: server.env beside this script).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
env_file="${MLFLOW_ENV_FILE:-$here/server.env}"
if [[ -f "$env_file" ]]; then
  while IFS='=' read -r key value; do
    [[ "$key" =~ ^[A-Z_][A-Z0-9_]*$ ]] || continue  # comments and blank lines
    [[ -n "${!key+x}" ]] || export "$key=$value"    # the environment wins over the file
  done < "$env_file"
elif [[ -n "${MLFLOW_ENV_FILE:-}" ]]; then
  echo "mlflow/server.sh: MLFLOW_ENV_FILE=$MLFLOW_ENV_FILE does not exist" >&2
  exit 2
fi

check=0
if [[ "${1:-}" == "--check" ]]; then
  check=1
  shift
fi

data_dir="$(realpath -m "${MLFLOW_DATA_DIR:-./mlflow-server}")"
args=(server
  --backend-store-uri "${MLFLOW_BACKEND_STORE_URI:-sqlite:///$data_dir/mlflow.db}"
  --serve-artifacts
  --artifacts-destination "${MLFLOW_ARTIFACTS_DESTINATION:-$data_dir/artifacts}"
  --host "${MLFLOW_HOST:-127.0.0.1}"
  --port "${MLFLOW_PORT:-5000}"
  --workers "${MLFLOW_WORKERS:-4}")
if [[ -n "${MLFLOW_SERVER_ALLOWED_HOSTS:-}" ]]; then
  args+=(--allowed-hosts "$MLFLOW_SERVER_ALLOWED_HOSTS")
fi
args+=("$@")

if ((check)); then
  # click parses and converts every flag exactly as `mlflow server` would, without starting anything
  "${PYTHON:-python3}" - "${args[@]}" <<'PY'
import sys

import click
from mlflow.cli import server

try:
    server.make_context("mlflow server", sys.argv[2:])
except click.ClickException as err:
    err.show()
    sys.exit(2)
PY
  # the command as it would run, with a database password in a URI masked: --check output lands in CI logs
  { printf 'mlflow'; printf ' %q' "${args[@]}"; printf '\n'; } | sed -E 's#(://[^:/@ ]+:)[^@ ]+@#\1***@#g'
  exit 0
fi

mkdir -p "$data_dir"
exec mlflow "${args[@]}"
