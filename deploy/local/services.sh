# Sourced by up.sh and test.sh: makes sure PostgreSQL and RabbitMQ are
# installed and running on this machine (Debian/Ubuntu), and exports
# DATABASE_URL and AMQP_URL for them. Safe to run again and again.

log() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_for_port() {
  local port=$1 name=$2
  for _ in $(seq 1 120); do
    port_open "$port" && return 0
    sleep 0.5
  done
  log "$name did not open port $port within 60 s" && return 1
}

apt_updated=""
apt_install() {
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq; apt_updated=1; fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

ensure_postgres() {
  if ! port_open 5432; then
    if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
      log "installing PostgreSQL"
      apt_install postgresql
    fi
    local version
    version=$(ls /etc/postgresql | sort -V | tail -n 1)
    log "starting PostgreSQL $version"
    as_root pg_ctlcluster --skip-systemctl-redirect "$version" main start || true
    wait_for_port 5432 PostgreSQL
  fi
  if [ -z "${DATABASE_URL:-}" ]; then
    if psql -h 127.0.0.1 -U postgres -d postgres -Atc 'select 1' >/dev/null 2>&1; then
      export DATABASE_URL=postgres://postgres@127.0.0.1:5432/crust
    else
      # A fresh Debian install asks TCP clients for a password: give the
      # postgres role a local-development one.
      log "setting a local password for the postgres role"
      as_root su postgres -c "psql -qc \"ALTER ROLE postgres PASSWORD 'postgres'\"" >/dev/null
      export DATABASE_URL=postgres://postgres:postgres@127.0.0.1:5432/crust
    fi
  fi
}

ensure_rabbitmq() {
  if ! port_open 5672; then
    if ! command -v rabbitmq-server >/dev/null 2>&1; then
      log "installing RabbitMQ"
      apt_install rabbitmq-server
    fi
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached >/dev/null 2>&1 || true
    wait_for_port 5672 RabbitMQ
  fi
  export AMQP_URL=${AMQP_URL:-amqp://guest:guest@127.0.0.1:5672/%2f}
}

ensure_cargo() {
  if ! command -v cargo >/dev/null 2>&1; then
    [ -x "$HOME/.cargo/bin/cargo" ] && export PATH="$HOME/.cargo/bin:$PATH"
  fi
  if ! command -v cargo >/dev/null 2>&1; then
    log "cargo is not installed: install Rust with rustup (https://rustup.rs), then run this again"
    exit 1
  fi
}

ensure_postgres
ensure_rabbitmq
ensure_cargo
