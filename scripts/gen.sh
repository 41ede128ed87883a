#!/usr/bin/env bash
# Generates everything derived from protos/: the Python stubs and typing stubs in
# gen/, the descriptor set gen/lucid.protoset (imports and source info included, for
# Envoy's transcoder and grpcurl), docs/api.md, the OpenAPI document of the REST routes
# and its page docs/openapi/ (protoc-gen-openapiv2, then lucid.codegen.openapi), and the
# production configuration consul/, envoy/ and deploy/ (compose, Kubernetes; from the plane table in
# lucid/runtime/planes.py).
#   scripts/gen.sh gen     write them
#   scripts/gen.sh check   fail if writing them would change anything (CI drift check)
set -euo pipefail
cd "$(dirname "$0")/.."

mode=${1:-gen}
PY=${PY:-.venv/bin/python}
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT

wkt=$($PY -c 'import grpc_tools, os; print(os.path.join(os.path.dirname(grpc_tools.__file__), "_proto"))')
mapfile -t protos < <(cd protos && find lucid -name '*.proto' | LC_ALL=C sort)
includes=(-I protos -I third_party -I "$wkt")

# Python for our contracts, the trimmed Envoy protos the gateway serves
# (envoy.service.ratelimit.v3) and buf/validate (google/api and google/rpc come from
# googleapis-common-protos, the well-known types from protobuf).
mapfile -t envoy < <(cd third_party && find envoy -name '*.proto' | LC_ALL=C sort)
$PY -m grpc_tools.protoc "${includes[@]}" \
  --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy \
  --plugin=protoc-gen-mypy_grpc=.venv/bin/protoc-gen-mypy_grpc \
  --python_out="$out" --mypy_out="$out" \
  --grpc_python_out="$out" --mypy_grpc_out="$out" \
  "${protos[@]}" "${envoy[@]}" 2> >(grep -v '^Writing mypy' >&2)
$PY -m grpc_tools.protoc "${includes[@]}" \
  --plugin=protoc-gen-mypy=.venv/bin/protoc-gen-mypy \
  --python_out="$out" --mypy_out="$out" \
  buf/validate/validate.proto 2> >(grep -v '^Writing mypy' >&2)
$PY -m grpc_tools.protoc "${includes[@]}" \
  --include_imports --include_source_info \
  --descriptor_set_out="$out/lucid.protoset" \
  "${protos[@]}"

PYTHONPATH="$out:." $PY -m lucid.codegen.apidoc "$out/lucid.protoset" > "$out/api.md"
# OpenAPI: protoc-gen-openapiv2 (scripts/install-tools.sh) wants a Go package for every
# file; ours have none, so each is mapped to a placeholder (only the JSON is used).
openapiv2=${OPENAPIV2:-${LUCID_CACHE:-$HOME/.cache/lucid}/bin/protoc-gen-openapiv2}
oa_opts="allow_merge=true,merge_file_name=lucid,output_format=json,json_names_for_fields=false,disable_default_errors=true"
for f in "${protos[@]}" $(cd third_party && find . -name '*.proto' | sed 's|^\./||' | LC_ALL=C sort); do
  oa_opts="$oa_opts,M$f=lucid.invalid/$(dirname "$f")"
done
mkdir -p "$out/openapi-raw"
$PY -m grpc_tools.protoc "${includes[@]}" --plugin=protoc-gen-openapiv2="$openapiv2" \
  --openapiv2_out="$out/openapi-raw" --openapiv2_opt="$oa_opts" "${protos[@]}"
# Production configuration from the plane table, the contracts and the port map.
version=$($PY -c 'import tomllib; print(tomllib.load(open("pyproject.toml", "rb"))["project"]["version"])')
deploy=$(mktemp -d)
trap 'rm -rf "$out" "$deploy"' EXIT
PYTHONPATH="$out:." $PY -m lucid.codegen.meshconfig "$out/lucid.protoset" "$deploy" "$version" >/dev/null
PYTHONPATH="$out:." $PY -m lucid.codegen.deployconfig "$out/lucid.protoset" "$deploy" "$version" >/dev/null
PYTHONPATH="$out:." $PY -m lucid.codegen.openapi "$out/openapi-raw/lucid.swagger.json" \
  "$out/lucid.protoset" "$version" "$deploy/openapi"
rm -rf "$out/openapi-raw"

if [[ $mode == check ]]; then
  status=0
  diff -r -q --exclude=api.md --exclude=__pycache__ gen "$out" || status=1
  diff -q docs/api.md "$out/api.md" || status=1
  diff -r -q consul "$deploy/consul" || status=1
  diff -r -q envoy "$deploy/envoy" || status=1
  diff -q deploy/compose.yaml "$deploy/deploy/compose.yaml" || status=1
  diff -r -q deploy/k8s "$deploy/deploy/k8s" || status=1
  diff -r -q docs/openapi "$deploy/openapi" || status=1
  if [[ $status -ne 0 ]]; then
    echo "gen/, docs/api.md, docs/openapi/, consul/, envoy/ or deploy/ are out of date: run 'make gen' and commit" >&2
  fi
  exit $status
fi

mkdir -p gen docs
mv "$out/api.md" docs/api.md
rm -rf consul envoy && cp -r "$deploy/consul" "$deploy/envoy" .
rm -rf deploy/k8s && cp -r "$deploy/deploy/k8s" deploy/k8s && cp "$deploy/deploy/compose.yaml" deploy/
rm -rf docs/openapi && cp -r "$deploy/openapi" docs/openapi
rm -rf gen && cp -r "$out" gen && chmod -R u+rwX,go+rX gen
echo "generated $(find gen -name '*.py' | wc -l) modules, gen/lucid.protoset, docs/api.md, docs/openapi/, consul/, envoy/, deploy/"
