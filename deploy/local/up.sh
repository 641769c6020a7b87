#!/usr/bin/env bash
# Runs Crust on this machine in the foreground: installs and starts
# PostgreSQL and RabbitMQ if needed, builds, migrates, starts crust-api,
# crust-scheduler and crust-worker, and prints a token and commands to try.
# Ctrl-C stops all three.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/services.sh

# A JWT secret kept across runs, so printed tokens stay valid.
secret_file=deploy/local/.jwt-secret
secret_hint="export CRUST_JWT_SECRET=\$(cat $PWD/$secret_file)"
if [ -n "${CRUST_JWT_SECRET:-}" ]; then
  secret_hint="# CRUST_JWT_SECRET: the one set in the shell that ran up.sh"
else
  [ -s "$secret_file" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_file"
  CRUST_JWT_SECRET=$(cat "$secret_file")
  export CRUST_JWT_SECRET
fi
# The key workflow secrets are encrypted with, kept across runs like the
# JWT secret (losing it loses the secrets).
key_file=deploy/local/.secrets-key
if [ -z "${CRUST_SECRETS_KEY:-}" ]; then
  [ -s "$key_file" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$key_file"
  CRUST_SECRETS_KEY=$(cat "$key_file")
  export CRUST_SECRETS_KEY
fi
export RUST_LOG=${RUST_LOG:-info} CRUST_LOG_FORMAT=${CRUST_LOG_FORMAT:-text}
api_addr=${CRUST_HTTP_ADDR:-127.0.0.1:3000}

# Cargo shows its progress: the first build compiles ~320 crates, about
# 8 minutes on 2 cores; later runs take seconds.
log "building (release; the first build takes about 8 minutes on 2 cores)"
cargo build --release -p crust-api -p crust-scheduler -p crust-worker
bin=$(cd "${CARGO_TARGET_DIR:-target}/release" && pwd)

log "migrating $DATABASE_URL"
"$bin/crust-api" migrate

pids=()
stop() {
  trap - INT TERM EXIT
  log "stopping"
  kill -TERM "${pids[@]}" 2>/dev/null || true
  wait "${pids[@]}" 2>/dev/null || true
}
trap stop INT TERM EXIT

CRUST_HTTP_ADDR=$api_addr "$bin/crust-api" & pids+=($!)
CRUST_HTTP_ADDR=127.0.0.1:3001 "$bin/crust-scheduler" & pids+=($!)
CRUST_HTTP_ADDR=127.0.0.1:3002 "$bin/crust-worker" & pids+=($!)

api=http://$api_addr
ready=""
for _ in $(seq 1 100); do
  curl -sf "$api/readyz" >/dev/null 2>&1 && ready=1 && break
  sleep 0.2
done
if [ -z "$ready" ]; then
  log "crust-api did not become ready at $api within 20 s (see its log above)"
  exit 1
fi

token=$("$bin/crust-api" token --sub 1 --ttl 24h)

# Demo data, made once: a module "Leads" and a workflow "greet". A second
# run finds them and prints lines with their IDs, whatever those are.
call() { curl -sS -H "Authorization: Bearer $token" -H "Content-Type: application/json" "$@"; }
# The ID in the first `"<kind>ID":"N"` (followed by `"name":"NAME"` if
# given) of the JSON on stdin.
id_of() { { grep -o "\"$1ID\":\"[0-9]*\"${2:+,\"name\":\"$2\"}" || true; } | head -n 1 | cut -d'"' -f4; }
module_id=$(call "$api/module/?query=Leads" | id_of module Leads)
if [ -z "$module_id" ]; then
  module_id=$(call "$api/module/" -d '{"name": "Leads", "fields": [{"name": "email", "kind": "Email", "isRequired": true}, {"name": "score", "kind": "Number"}, {"name": "stage", "kind": "Select", "options": {"options": ["new", "won", "lost"]}}]}' | id_of module)
fi
workflow_id=$(call "$api/workflow/" | id_of workflow greet)
if [ -z "$workflow_id" ]; then
  workflow_id=$(call "$api/workflow/" -d '{"name": "greet", "tasks": [{"name": "hello", "kind": "log", "params": {"message": "hello {{ parameters.who }}"}}]}' | id_of workflow)
fi
if [ -z "$module_id" ] || [ -z "$workflow_id" ]; then
  log "could not create the demo module and workflow (see the api's log above)"
  exit 1
fi

cat <<MSG

Crust is running: api $api (docs $api/docs/),
scheduler http://127.0.0.1:3001/readyz, worker http://127.0.0.1:3002/readyz.
Paste these in another shell:

  export TOKEN=$token
  export API=$api

  # The demo module "Leads" ($module_id): add a record, then list with a filter:
  curl -sS -w '\\n' -H "Authorization: Bearer \$TOKEN" \$API/module/$module_id
  curl -sS -w '\\n' -H "Authorization: Bearer \$TOKEN" \$API/module/$module_id/record -H "Content-Type: application/json" -d '{"fields": {"email": "ann@example.com", "score": 42, "stage": "won"}}'
  curl -sS -w '\\n' -G -H "Authorization: Bearer \$TOKEN" \$API/module/$module_id/record --data-urlencode "filter=score > 10 AND stage = 'won'" --data-urlencode 'sort=score DESC'

  # The demo workflow "greet" ($workflow_id): run it as a job, then read the job and its logs:
  JOB=\$(curl -sS -H "Authorization: Bearer \$TOKEN" \$API/job/ -H "Content-Type: application/json" -d '{"workflowID": "$workflow_id", "parameters": {"who": "ann"}}' | grep -o '"jobID":"[0-9]*"' | cut -d'"' -f4); echo "job \$JOB"
  curl -sS -w '\\n' -H "Authorization: Bearer \$TOKEN" \$API/job/\$JOB
  curl -sS -w '\\n' -H "Authorization: Bearer \$TOKEN" \$API/job/\$JOB/logs

  # More tokens: crust-api token needs the api's secret (up.sh keeps its own in $secret_file):
  $secret_hint
  $bin/crust-api token --sub 1 --ttl 24h                 # admin (no --role)
  $bin/crust-api token --sub 7 --role editor --role operator   # roles: admin designer editor operator viewer, or custom ones

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
