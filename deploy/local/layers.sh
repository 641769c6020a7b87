#!/usr/bin/env bash
# Checks the dependency rule of ARCHITECTURE.md ("Layers"): each crate under
# shared/ may depend only on the crates below it, and the pure ones pull in no
# I/O library at all. Reads `cargo tree` of each crate on its own (normal
# dependencies, the features that crate asks for), so a violation names the
# crate and what it must not reach.
set -euo pipefail
cd "$(dirname "$0")/../.."

# crate: what must not appear anywhere in its normal dependency tree.
rules=(
  "crust-query:sqlx lapin axum tokio hyper reqwest opentelemetry crust-model crust-store crust-queue crust-runtime"
  "crust-model:sqlx lapin axum tokio hyper reqwest opentelemetry crust-store crust-queue crust-runtime"
  "crust-store:lapin axum hyper reqwest opentelemetry prometheus crust-queue crust-runtime"
  "crust-queue:sqlx axum hyper reqwest opentelemetry prometheus crust-store crust-runtime"
  "crust-runtime:lapin crust-store crust-queue crust-query"
  "crust-bench:lapin axum opentelemetry prometheus crust-queue crust-runtime crust-api"
)

failed=0
for rule in "${rules[@]}"; do
  crate=${rule%%:*}
  tree=$(cargo tree --quiet --edges normal --prefix none --format '{p}' -p "$crate" | awk '{print $1}' | sort -u)
  for banned in ${rule#*:}; do
    if grep -qx -- "$banned" <<<"$tree"; then
      echo "layers: $crate must not depend on $banned; path:" >&2
      cargo tree --quiet --edges normal -p "$crate" -i "$banned" >&2 || true
      failed=1
    fi
  done
done
if [ "$failed" = 0 ]; then
  echo "layers: every shared crate keeps to its layer"
fi
exit "$failed"
