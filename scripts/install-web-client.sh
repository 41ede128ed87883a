#!/usr/bin/env bash
# Installs the grpc-web test client (tests/grpcweb/package.json: the protobuf-ts protoc
# plugin, which is plain JavaScript, and its grpc-web transport) with npm into the tool
# cache, outside the clone. Re-installs only when package.json changes.
# (grpc-web's own protoc-gen-grpc-web and protoc-gen-js npm packages download their
# binaries from outside the npm registry at install time, so they cannot be used here.)
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE="${LUCID_CACHE:-$HOME/.cache/lucid}"
DIR="$CACHE/grpc-web-client"
stamp="$DIR/.installed-$(sha256sum tests/grpcweb/package.json | cut -c1-12)"
if [[ -f "$stamp" && -d "$DIR/node_modules" ]]; then exit 0; fi
command -v npm >/dev/null || { echo "[web-client] npm is needed (apt-get install npm)" >&2; exit 1; }
mkdir -p "$DIR"
cp tests/grpcweb/package.json "$DIR/package.json"
echo "[web-client] npm install into $DIR" >&2
(cd "$DIR" && npm install --no-audit --no-fund --ignore-scripts --loglevel=error >/dev/null)
rm -f "$DIR"/.installed-* && touch "$stamp"
