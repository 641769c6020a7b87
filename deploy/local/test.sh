#!/usr/bin/env bash
# Makes sure PostgreSQL and RabbitMQ run, then runs the whole test suite
# (unit tests and the integration tests against the real services).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/services.sh
# Tests create their own databases on this server; the name here is only
# where they find it.
export DATABASE_URL=${DATABASE_URL%/*}/postgres

# Tests clone their databases from a migrated template shared by every
# test binary (crust_test_tpl_<hash of the migrations>); drop it once the
# suite ends, pass or fail, so the run leaves no database behind. Another
# run still going on this server (its crust_test_<pid>_<n> databases exist)
# keeps it.
drop_templates() {
  local name busy
  busy=$(psql "$DATABASE_URL" -Atc "SELECT count(*) FROM pg_database WHERE datname LIKE 'crust\_test\_%' AND datname NOT LIKE 'crust\_test\_tpl\_%'" 2>/dev/null || echo 1)
  [ "$busy" = 0 ] || return 0
  for name in $(psql "$DATABASE_URL" -Atc "SELECT datname FROM pg_database WHERE datname LIKE 'crust\_test\_tpl\_%'" 2>/dev/null); do
    psql "$DATABASE_URL" -qc "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null 2>&1 || true
  done
}
trap drop_templates EXIT

# The web UI test drives headless Chromium through chromedriver.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  log "installing chromium and chromium-driver for the web UI test"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
fi

log "running the test suite"
cargo test --workspace --all-targets "$@"
# The API fuzz run: a real api, requests generated from its OpenAPI document;
# fails on any 5xx or any answer the document does not describe.
log "fuzzing the api"
./deploy/local/fuzz.sh
