#!/usr/bin/env bash
# The API fuzz run: schemathesis generates requests from the OpenAPI document
# (valid and invalid ones) against a real crust-api on a fresh database and
# fails on any 5xx and on any response the document does not describe.
# Called at the end of test.sh; runs alone too: ./deploy/local/fuzz.sh
#
# It builds the api (debug profile, like the tests), makes a virtual
# environment under target/fuzz with a pinned schemathesis, starts the api on
# a free port with its own database and queue prefix, and removes both (and
# stops the api) however it ends.
#
# FUZZ_MAX_EXAMPLES (default 150) and FUZZ_SEED (default 1) tune the run;
# FUZZ_MIN_REQUESTS (default 5000) is the fewest requests that count as a run.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/services.sh

SCHEMATHESIS_VERSION=4.32.5
PIKA_VERSION=1.3.2
SEED=${FUZZ_SEED:-1}
MAX_EXAMPLES=${FUZZ_MAX_EXAMPLES:-150}
MIN_REQUESTS=${FUZZ_MIN_REQUESTS:-5000}

work=target/fuzz
venv=$work/venv
mkdir -p "$work"
if [ "$("$venv/bin/schemathesis" --version 2>/dev/null)" != "schemathesis, version $SCHEMATHESIS_VERSION" ] ||
  ! "$venv/bin/python" -c "import pika; assert pika.__version__ == '$PIKA_VERSION'" 2>/dev/null; then
  log "installing schemathesis $SCHEMATHESIS_VERSION in $venv"
  python3 -m venv --clear "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "pika==$PIKA_VERSION"
fi

log "building crust-api"
cargo build --quiet -p crust-api --bin crust-api
api="${CARGO_TARGET_DIR:-target}/debug/crust-api"

name="crust_fuzz_$$"
export DATABASE_URL="${DATABASE_URL%/*}/$name"
export CRUST_QUEUE_PREFIX="crust-fuzz-$$"
export CRUST_JWT_SECRET
CRUST_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '\n')
# So the secret endpoints answer (not only their 503).
export CRUST_SECRETS_KEY
CRUST_SECRETS_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
port=$("$venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
export CRUST_HTTP_ADDR="127.0.0.1:$port"
export RUST_LOG=${RUST_LOG:-warn}
base="http://127.0.0.1:$port"
api_log="$work/api.log"
report="$work/report"
api_pid=""

cleanup() {
  local status=$?
  if [ -n "$api_pid" ]; then
    kill "$api_pid" 2>/dev/null || true
    wait "$api_pid" 2>/dev/null || true
  fi
  psql "${DATABASE_URL%/*}/postgres" -qAtc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 ||
    log "could not drop database $name"
  "$venv/bin/python" - "$AMQP_URL" "$CRUST_QUEUE_PREFIX" <<'EOF' || log "could not delete the fuzz run's queues"
import sys, pika
url, prefix = sys.argv[1], sys.argv[2]
connection = pika.BlockingConnection(pika.URLParameters(url))
channel = connection.channel()
for queue in (f"{prefix}.jobs", f"{prefix}.jobs.dead"):
    channel.queue_delete(queue)
for exchange in (f"{prefix}.jobs", f"{prefix}.dead", f"{prefix}.cancel"):
    channel.exchange_delete(exchange)
connection.close()
EOF
  exit "$status"
}
trap cleanup EXIT

"$api" migrate >/dev/null
token=$("$api" token --sub 1 --ttl 2h)
log "starting crust-api on $base (database $name, log in $api_log)"
"$api" serve >"$api_log" 2>&1 &
api_pid=$!
for _ in $(seq 1 100); do
  curl -fsS "$base/readyz" >/dev/null 2>&1 && break
  kill -0 "$api_pid" 2>/dev/null || { cat "$api_log" >&2; exit 1; }
  sleep 0.2
done
curl -fsS "$base/readyz" >/dev/null

rm -rf "$report"
log "fuzzing the api from its OpenAPI document (seed $SEED, up to $MAX_EXAMPLES examples per operation)"
started=$(date +%s)
set +e
# Every check schemathesis has, and every phase (examples, coverage,
# fuzzing, stateful); deploy/local/schemathesis.toml says where a 400 is a
# right answer to a schema-valid request, and why. One worker: with two,
# hypothesis parses lambda sources in two threads at once, which Python
# 3.11.7 can fail with "SystemError: AST constructor recursion depth
# mismatch" (a CPython bug, not a finding). No shrinking, to keep a failing
# run short (the failing request is reported as sent), and no example
# database, so a run depends on the seed alone (and leaves no .schemathesis/).
# Every check but "deleted resource still available" (use_after_free): it
# assumes every DELETE deletes, and `DELETE /job/{jobID}` cancels (the seed
# API's verb), leaving the job readable with its logs and steps by design.
# That a deleted module, record, page, chart, workflow or secret answers 404
# is asserted by the api tests.
"$venv/bin/schemathesis" --config-file deploy/local/schemathesis.toml \
  run "$base/openapi.json" \
  --checks all \
  --exclude-checks use_after_free \
  --header "Authorization: Bearer $token" \
  --seed "$SEED" \
  --max-examples "$MAX_EXAMPLES" \
  --workers 1 \
  --request-timeout 30 \
  --no-shrink \
  --generation-database none \
  --no-color \
  --report ndjson,junit --report-dir "$report"
result=$?
set -e
elapsed=$(($(date +%s) - started))

# The api counts what it answered, by status: the requests sent and the 5xx
# among them (the readiness probes above are a handful of the total).
metrics=$(curl -fsS "$base/metrics")
requests=$(awk '/^crust_http_requests_total\{/ { sum += $NF } END { print sum + 0 }' <<<"$metrics")
server_errors=$(awk '/^crust_http_requests_total\{/ && /status="5/ { sum += $NF } END { print sum + 0 }' <<<"$metrics")
log "fuzz run: $requests requests in ${elapsed}s, $server_errors answered with a 5xx"
if [ "$result" -ne 0 ]; then
  log "the fuzz run failed (exit $result): reports in $report, api log in $api_log"
  exit "$result"
fi
if [ "$requests" -lt "$MIN_REQUESTS" ]; then
  log "the fuzz run sent $requests requests, fewer than $MIN_REQUESTS"
  exit 1
fi
if [ "$server_errors" -ne 0 ]; then
  log "the api answered $server_errors requests with a 5xx (see $api_log)"
  exit 1
fi
