#!/usr/bin/env bash
# The contracts may not break what the last release promised: `buf breaking` (rules of
# buf.yaml) against the newest release tag, v<major>.<minor>.<patch>. Run by `make lint`.
# Releases are cut by tagging main (`git tag v0.1.0 && git push --tags`); CI needs the
# tags in its clone (fetch-depth 0 or `git fetch --tags`).
set -euo pipefail
cd "$(dirname "$0")/.."

tag=$(git tag --list 'v[0-9]*.[0-9]*.[0-9]*' --sort=-v:refname | head -n 1)
if [ -z "$tag" ]; then
  echo "buf breaking: no release tag (v*.*.*) yet, so no released contract to keep" >&2
  exit 0
fi
echo "buf breaking against $tag"
buf breaking --against "$(git rev-parse --git-common-dir)#tag=$tag"
