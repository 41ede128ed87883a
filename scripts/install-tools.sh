#!/usr/bin/env bash
# Installs the non-Python tools Lucid needs into a cache outside the clone, so a
# fresh clone on the same machine reuses them: buf, grpcurl, ghz, bombardier (HTTP load
# for the edge benchmark), FerretDB, Consul, envoy-validate and protoc-gen-openapiv2 (the
# OpenAPI document of the REST routes) (Go, built from the Go module proxy), redis-server,
# PostgreSQL (the store under FerretDB), docker-compose (validates deploy/compose.yaml
# offline) and Chromium (for the console's browser tests; Debian packages).
# Usage: scripts/install-tools.sh [tool ...]   (default: all)
set -euo pipefail

CACHE="${LUCID_CACHE:-$HOME/.cache/lucid}"
BIN="$CACHE/bin"
mkdir -p "$BIN"

BUF_VERSION=v1.75.0
GRPCURL_VERSION=v1.9.4
GHZ_VERSION=v0.121.0
BOMBARDIER_VERSION=v1.2.6
FERRETDB_VERSION=v1.24.0
# Consul 1.14: under the MPL 2.0 (releases from late 2023 on are under the BUSL 1.1),
# and its go.mod replaces only submodules the Go module proxy serves (api, sdk,
# proto-public); 1.15 and 1.16 also need envoyextensions and troubleshoot, which it
# does not serve.
CONSUL_VERSION=v1.14.11
OPENAPIV2_VERSION=v2.34.0

log() { printf '[tools] %s\n' "$*" >&2; }

go_install() {  # name module version
  local name=$1 module=$2 version=$3
  if [[ -x "$BIN/$name" && -f "$BIN/.$name-$version" ]]; then return; fi
  log "building $name $version"
  GOBIN="$BIN" GOFLAGS=-mod=mod go install "$module@$version"
  touch "$BIN/.$name-$version"
}

ferretdb() {
  # `go install` of FerretDB builds a binary that panics at start: its version is
  # read from build/version/version.txt, which the module zip does not carry. So
  # build from a writable copy of the module with that file written.
  if [[ -x "$BIN/ferretdb" && -f "$BIN/.ferretdb-$FERRETDB_VERSION" ]]; then return; fi
  log "building ferretdb $FERRETDB_VERSION"
  local dir src
  dir=$(cd "$(mktemp -d)" && pwd)
  (cd "$dir" && go mod init lucid-ferretdb-build >/dev/null 2>&1)
  src=$(cd "$dir" && GOFLAGS=-mod=mod go mod download -json "github.com/FerretDB/FerretDB@$FERRETDB_VERSION" \
        | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
  cp -r "$src" "$dir/src" && chmod -R u+w "$dir/src"
  echo "$FERRETDB_VERSION" > "$dir/src/build/version/version.txt"
  echo "lucid" > "$dir/src/build/version/package.txt"
  (cd "$dir/src" && GOFLAGS=-mod=mod go build -trimpath -o "$BIN/ferretdb" ./cmd/ferretdb)
  rm -rf "$dir"
  touch "$BIN/.ferretdb-$FERRETDB_VERSION"
}

go_module_dir() {  # module@version -> its read-only directory in the module cache
  local work=$1 spec=$2
  (cd "$work" && GOFLAGS=-mod=mod go mod download -json "$spec") \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'
}

consul() {
  # Consul's go.mod replaces its own submodules (api, sdk, proto-public) with ./<dir>, which the module zip of the main
  # module does not carry, so `go install` fails. Download the main module and each
  # replaced submodule at the version its go.mod requires, lay them out as the
  # replace directives expect in a writable copy, and build from there.
  if [[ -x "$BIN/consul" && -f "$BIN/.consul-$CONSUL_VERSION" ]]; then return; fi
  log "building consul $CONSUL_VERSION (a few minutes the first time)"
  local work src sub version
  work=$(cd "$(mktemp -d)" && pwd)
  (cd "$work" && go mod init lucid-consul-build >/dev/null 2>&1)
  src="$work/src"
  cp -r "$(go_module_dir "$work" "github.com/hashicorp/consul@$CONSUL_VERSION")" "$src"
  chmod -R u+w "$src"
  while read -r sub; do
    version=$(awk -v m="github.com/hashicorp/consul/$sub" '$1 == m && $2 ~ /^v/ {print $2; exit}' "$src/go.mod")
    [[ -n "$version" ]] || { log "no required version of consul/$sub"; exit 1; }
    rm -rf "${src:?}/$sub"
    cp -r "$(go_module_dir "$work" "github.com/hashicorp/consul/$sub@$version")" "$src/$sub"
    chmod -R u+w "$src/$sub"
  done < <(sed -n 's|^[[:space:]]*\(replace[[:space:]]*\)\{0,1\}github.com/hashicorp/consul/\([a-z-]*\) => \./.*|\2|p' "$src/go.mod")
  (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -o "$BIN/consul" .)
  rm -rf "$work"
  touch "$BIN/.consul-$CONSUL_VERSION"
}

envoy_validate() {
  # Our Envoy config checker (tools/envoy-validate): go-control-plane's v3 API types
  # with protojson and their field rules. Rebuilt when its sources change.
  local src stamp
  src="$(cd "$(dirname "$0")/.." && pwd)/tools/envoy-validate"
  stamp=$(cat "$src/go.mod" "$src/go.sum" "$src/main.go" | sha256sum | cut -c1-12)
  if [[ -x "$BIN/envoy-validate" && -f "$BIN/.envoy-validate-$stamp" ]]; then return; fi
  log "building envoy-validate"
  (cd "$src" && GOFLAGS=-mod=mod go build -trimpath -o "$BIN/envoy-validate" .)
  rm -f "$BIN"/.envoy-validate-* && touch "$BIN/.envoy-validate-$stamp"
}

redis() {
  if command -v redis-server >/dev/null 2>&1; then return; fi
  log "installing redis-server (apt)"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq redis-server >/dev/null
  # The package starts a system instance on 6379; Lucid runs its own under var/.
  $sudo service redis-server stop >/dev/null 2>&1 || true
}

docker_compose() {
  # Offline validation of deploy/compose.yaml (`docker-compose config -q`): the Debian
  # package (Compose 1.29, Python); it needs no Docker engine for `config`.
  if command -v docker-compose >/dev/null 2>&1; then return; fi
  log "installing docker-compose (apt)"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    docker-compose >/dev/null
}

rdp_stack() {
  # Real RDP desktops (cluster 04): xrdp with the Xvnc session backend, and the
  # real client stack the tests drive (xfreerdp under Xvfb, xdotool, xterm);
  # ss (iproute2) reads the per-connection byte counters of each server's port;
  # xprintidle reads a desktop's input idle time (idle sessions).
  # `type -P` looks at PATH only (this function's own name must not count).
  local need=()
  for cmd in xrdp xrdp-sesman Xvnc Xvfb xterm xdotool xfreerdp xwd ss xprintidle; do
    type -P "$cmd" >/dev/null 2>&1 || need+=("$cmd")
  done
  [[ ${#need[@]} -eq 0 ]] && return
  log "installing xrdp, TigerVNC, Xvfb, xterm, xdotool, FreeRDP (apt)"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq xrdp xorgxrdp \
    tigervnc-standalone-server xvfb xterm x11-apps xdotool freerdp2-x11 iproute2 \
    xprintidle >/dev/null
  # The packages may start system daemons; Lucid runs its own on loopback.
  $sudo service xrdp stop >/dev/null 2>&1 || true
}

chromium() {
  # The browser the console's tests drive (Playwright for Python, Debian's Chromium:
  # Playwright's own browser download cannot work here).
  if [[ -x /usr/bin/chromium ]]; then return; fi
  log "installing chromium (apt)"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends chromium >/dev/null
}

postgresql() {
  # FerretDB's PostgreSQL backend. Lucid runs its own private cluster under var/ (as the
  # package's unprivileged `postgres` user when run by root), never the system one.
  if compgen -G "/usr/lib/postgresql/*/bin/postgres" >/dev/null && getent passwd postgres >/dev/null; then
    return
  fi
  log "installing postgresql (apt)"
  local sudo=""
  [[ $(id -u) -eq 0 ]] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql >/dev/null
  # The package starts a system cluster on 5432; Lucid does not use it.
  $sudo service postgresql stop >/dev/null 2>&1 || true
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(buf grpcurl ferretdb consul envoy-validate protoc-gen-openapiv2 redis postgresql xrdp chromium docker-compose)
for tool in "${want[@]}"; do
  case "$tool" in
    buf) go_install buf github.com/bufbuild/buf/cmd/buf "$BUF_VERSION" ;;
    grpcurl) go_install grpcurl github.com/fullstorydev/grpcurl/cmd/grpcurl "$GRPCURL_VERSION" ;;
    protoc-gen-openapiv2) go_install protoc-gen-openapiv2 \
      github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-openapiv2 "$OPENAPIV2_VERSION" ;;
    ghz) go_install ghz github.com/bojand/ghz/cmd/ghz "$GHZ_VERSION" ;;
    bombardier) go_install bombardier github.com/codesenberg/bombardier "$BOMBARDIER_VERSION" ;;
    ferretdb) ferretdb ;;
    consul) consul ;;
    envoy-validate) envoy_validate ;;
    redis) redis ;;
    postgresql) postgresql ;;
    xrdp) rdp_stack ;;
    chromium) chromium ;;
    docker-compose) docker_compose ;;
    *) log "unknown tool $tool"; exit 2 ;;
  esac
done
