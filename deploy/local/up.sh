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
if [ -z "${CRUST_JWT_SECRET:-}" ]; then
  [ -s "$secret_file" ] || head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$secret_file"
  CRUST_JWT_SECRET=$(cat "$secret_file")
  export CRUST_JWT_SECRET
fi
export RUST_LOG=${RUST_LOG:-info} CRUST_LOG_FORMAT=${CRUST_LOG_FORMAT:-text}
api_addr=${CRUST_HTTP_ADDR:-127.0.0.1:3000}

log "building (release)"
cargo build --release --quiet -p crust-api -p crust-scheduler -p crust-worker
bin=target/release

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

for _ in $(seq 1 100); do
  curl -sf "http://$api_addr/readyz" >/dev/null 2>&1 && break
  sleep 0.2
done

token=$("$bin/crust-api" token --sub 1 --ttl 24h)
cat <<MSG

Crust is running: api http://$api_addr (docs http://$api_addr/docs/),
scheduler http://127.0.0.1:3001/readyz, worker http://127.0.0.1:3002/readyz.

  export TOKEN=$token
  export API=http://$api_addr

  # A module, a record, and a filtered list:
  curl -s -H "Authorization: Bearer \$TOKEN" \$API/module/ -H "Content-Type: application/json" -d '{"name": "Leads", "fields": [{"name": "email", "kind": "Email", "isRequired": true}, {"name": "score", "kind": "Number"}]}'
  curl -s -H "Authorization: Bearer \$TOKEN" \$API/module/1/record -H "Content-Type: application/json" -d '{"fields": {"email": "ann@example.com", "score": 42}}'
  curl -s -H "Authorization: Bearer \$TOKEN" "\$API/module/1/record?filter=score%20%3E%2010&sort=score%20DESC"

  # A workflow, a job that runs it, and the job's logs:
  curl -s -H "Authorization: Bearer \$TOKEN" \$API/workflow/ -H "Content-Type: application/json" -d '{"name": "greet", "tasks": [{"name": "hello", "kind": "log", "params": {"message": "hello {{ parameters.who }}"}}]}'
  curl -s -H "Authorization: Bearer \$TOKEN" \$API/job/ -H "Content-Type: application/json" -d '{"workflowID": "1", "parameters": {"who": "ann"}}'
  curl -s -H "Authorization: Bearer \$TOKEN" \$API/job/1
  curl -s -H "Authorization: Bearer \$TOKEN" \$API/job/1/logs

Ctrl-C stops everything.
MSG
wait -n "${pids[@]}"
