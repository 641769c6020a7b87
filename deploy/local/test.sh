#!/usr/bin/env bash
# Makes sure PostgreSQL and RabbitMQ run, then runs the whole test suite
# (unit tests and the integration tests against the real services).
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/services.sh
# Tests create their own databases on this server; the name here is only
# where they find it.
export DATABASE_URL=${DATABASE_URL%/*}/postgres
log "running the test suite"
cargo test --workspace --all-targets "$@"
# The API fuzz run: a real api, requests generated from its OpenAPI document;
# fails on any 5xx or any answer the document does not describe.
log "fuzzing the api"
./deploy/local/fuzz.sh
