#!/usr/bin/env bash
# Builds the client distributions from the generated stubs (make clients):
#   python      dist/clients/lucid_client-<version>-py3-none-any.whl: clients/python (the
#               lucid_client helper) plus gen/lucid and gen/buf (stubs and .pyi typing stubs)
#   typescript  dist/clients/lucid-client-<version>.tgz: protobuf-ts stubs (JavaScript and
#               .d.ts) of every contract, for its grpc-web transport (needs make web-client)
# Usage: scripts/build-clients.sh [python|typescript ...]   (default: both)
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PY:-.venv/bin/python}
CACHE="${LUCID_CACHE:-$HOME/.cache/lucid}"
OUT=dist/clients
mkdir -p "$OUT"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

python_wheel() {
  local dir="$stage/python"
  mkdir -p "$dir/src"
  cp clients/python/pyproject.toml clients/python/README.md "$dir/"
  cp -r clients/python/src/lucid_client "$dir/src/"
  # Only the generated stubs: lucid/<cluster>/v1 and lucid/common/v1, buf/validate.
  (cd gen && find lucid buf -name '*.py' -o -name '*.pyi') | while read -r f; do
    mkdir -p "$dir/src/$(dirname "$f")"
    cp "gen/$f" "$dir/src/$f"
  done
  find "$dir/src/lucid" "$dir/src/buf" -mindepth 1 -type d -exec touch {}/py.typed \;
  rm -f "$OUT"/lucid_client-*.whl
  $PY -m pip wheel -q --no-deps -w "$OUT" "$dir"
  ls "$OUT"/lucid_client-*.whl
}

typescript_package() {
  local modules="$CACHE/grpc-web-client/node_modules" dir="$stage/typescript" wkt version
  [[ -x "$modules/.bin/protoc-gen-ts" ]] || { echo "run make web-client first" >&2; exit 1; }
  wkt=$($PY -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
  version=$($PY -c 'import tomllib; print(tomllib.load(open("clients/python/pyproject.toml", "rb"))["project"]["version"])')
  mkdir -p "$dir/dist"
  cp clients/typescript/README.md "$dir/"
  sed "s/@VERSION@/$version/" clients/typescript/package.json > "$dir/package.json"
  mapfile -t protos < <(cd protos && find lucid -name '*.proto' | LC_ALL=C sort)
  $PY -m grpc_tools.protoc -I protos -I third_party -I "$wkt" \
    --plugin=protoc-gen-ts="$modules/.bin/protoc-gen-ts" \
    --ts_out="$dir/dist" \
    --ts_opt=output_javascript,output_legacy_commonjs,client_generic,long_type_string \
    "${protos[@]}"
  rm -f "$OUT"/lucid-client-*.tgz
  (cd "$dir" && npm pack --silent --pack-destination "$OLDPWD/$OUT" >/dev/null)
  ls "$OUT"/lucid-client-*.tgz
}

want=("$@")
[[ ${#want[@]} -gt 0 ]] || want=(python typescript)
for what in "${want[@]}"; do
  case "$what" in
    python) python_wheel ;;
    typescript) typescript_package ;;
    *) echo "unknown client $what" >&2; exit 2 ;;
  esac
done
