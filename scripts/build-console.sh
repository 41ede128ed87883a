#!/usr/bin/env bash
# Builds the admin console (web/console) into web/console/dist: npm installs the pinned
# toolchain from package-lock.json (TypeScript, esbuild, protobuf-ts), protobuf-ts
# generates the grpc-web stubs from protos/ (protoc from the venv's grpcio-tools), tsc
# checks the types and esbuild bundles. Nothing is fetched when the page runs: the edge
# serves dist/ as it is. Rebuilds only when a source, the lockfile or a proto changed.
set -euo pipefail
cd "$(dirname "$0")/.."

WEB=web/console
PY=.venv/bin/python
PROTOS=(lucid/admin/v1/{admin,audit,config,dashboard,emergency,operations}.proto
  lucid/auth/v1/auth.proto lucid/common/v1/{access,proofs}.proto
  lucid/sessions/v1/{sessions,chunks}.proto lucid/nodes/v1/{nodes,pool,poot}.proto
  lucid/rdp/v1/session.proto
  google/rpc/status.proto google/rpc/error_details.proto)
inputs() {
  cat "$WEB/package-lock.json" "$WEB/tsconfig.json" "$0"
  find "$WEB/src" "$WEB/static" -path "$WEB/src/gen" -prune -o -type f -print | sort | xargs cat
  for f in "${PROTOS[@]}"; do cat "protos/$f" 2>/dev/null || cat "third_party/$f"; done
}
stamp="$WEB/dist/.built-$(inputs | sha256sum | cut -c1-12)"
if [[ -f "$stamp" && -f "$WEB/dist/app.js" ]]; then exit 0; fi
command -v npm >/dev/null || { echo "[console] npm is needed (apt-get install npm)" >&2; exit 1; }

lock="$WEB/node_modules/.lock-$(sha256sum "$WEB/package-lock.json" | cut -c1-12)"
if [[ ! -f "$lock" ]]; then
  echo "[console] npm ci in $WEB" >&2
  (cd "$WEB" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
  touch "$lock"
fi

echo "[console] generating grpc-web stubs, type-checking, bundling" >&2
rm -rf "$WEB/src/gen" "$WEB/dist"
mkdir -p "$WEB/src/gen" "$WEB/dist"
wkt="$($PY -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')"
(cd protos && ../$PY -m grpc_tools.protoc -I. -I../third_party -I"$wkt" \
  --plugin=protoc-gen-ts="../$WEB/node_modules/.bin/protoc-gen-ts" \
  --ts_out="../$WEB/src/gen" \
  --ts_opt=client_generic,optimize_code_size,long_type_number \
  "${PROTOS[@]}")
(cd "$WEB" && node_modules/.bin/tsc --noEmit -p . \
  && node_modules/.bin/esbuild src/main.ts --bundle --minify --target=es2022 --format=iife \
    --log-level=warning --outfile=dist/app.js)
cp "$WEB"/static/* "$WEB/dist/"
touch "$stamp"
echo "[console] built $WEB/dist" >&2
