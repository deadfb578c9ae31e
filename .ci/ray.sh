#!/usr/bin/env bash
# Start a local Ray head for the Ray executor's tests (127.0.0.1 only, token authentication on) and
# print on stdout, for `eval "$(bash .ci/ray.sh)"`:
#   export RAY_AUTH_MODE=token
#   export PTMOE_TEST_RAY_ADDRESS=http://127.0.0.1:<dashboard port>
# Everything else goes to stderr. Running it again reuses a running head. The head lives in
# $PTMOE_RAY_DIR (default /tmp/ptmoe-ray) with GCS port $PTMOE_RAY_PORT (default 6390) and dashboard
# port $PTMOE_RAY_DASHBOARD_PORT (default 8275), apart from a default Ray session; `ray stop` ends it.
set -euo pipefail
cd "$(dirname "$0")/.."

RAY_DIR=${PTMOE_RAY_DIR:-/tmp/ptmoe-ray}
PORT=${PTMOE_RAY_PORT:-6390}
DASH_PORT=${PTMOE_RAY_DASHBOARD_PORT:-8275}
PY=${PYTHON:-.venv/bin/python}
RAY_BIN=$(dirname "$PY")/ray
export RAY_AUTH_MODE=token  # the head and every client: the token is in ~/.ray/auth_token

log() { echo "ray.sh: $*" >&2; }

[ -x "$RAY_BIN" ] || { log "no ray in $(dirname "$PY") (pip install -r requirements-dev.txt)"; exit 1; }

ready() {
  "$PY" - "$DASH_PORT" >/dev/null 2>&1 <<'PY'
import sys
from ray.job_submission import JobSubmissionClient
JobSubmissionClient(f"http://127.0.0.1:{sys.argv[1]}").list_jobs()
PY
}

if ready; then
  log "reusing the Ray head on 127.0.0.1:$PORT (dashboard $DASH_PORT)"
else
  log "starting a Ray head on 127.0.0.1:$PORT (dashboard $DASH_PORT)"
  mkdir -p "$RAY_DIR"
  if [ -z "${RAY_AUTH_TOKEN:-}" ] && [ ! -s "${RAY_AUTH_TOKEN_PATH:-$HOME/.ray/auth_token}" ]; then
    log "generating a Ray authentication token (~/.ray/auth_token)"
    "$RAY_BIN" get-auth-token --generate >/dev/null
    chmod 600 "$HOME/.ray/auth_token"
  fi
  # num-cpus: one job per core at most; the tests' jobs ask for one CPU each.
  "$RAY_BIN" start --head --node-ip-address=127.0.0.1 --port="$PORT" \
    --dashboard-host=127.0.0.1 --dashboard-port="$DASH_PORT" --num-cpus="${PTMOE_RAY_CPUS:-2}" \
    --temp-dir="$RAY_DIR" --disable-usage-stats >&2
  for _ in $(seq 60); do ready && break; sleep 1; done
  ready || { log "the Ray head did not answer on its dashboard port $DASH_PORT"; exit 1; }
fi
log "ready"
echo "export RAY_AUTH_MODE=token"
echo "export PTMOE_TEST_RAY_ADDRESS=http://127.0.0.1:$DASH_PORT"
