#!/usr/bin/env bash
# Build chronik_<version>_<arch>.deb and chronik-<version>.<arch>.rpm into
# dist/ (or $1) with nfpm, pinned and run through the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
export CHRONIK_VERSION=${CHRONIK_VERSION:-0.1.0}
export CHRONIK_ARCH=${CHRONIK_ARCH:-$(go env GOARCH)}
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
mkdir -p "$out"
export CHRONIK_BINARY="$out/chronik"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$CHRONIK_VERSION" -o "$CHRONIK_BINARY" .
# nfpm does not expand environment variables in contents' src, so the
# binary's path is written into a copy of the config.
sed "s|\${CHRONIK_BINARY}|$CHRONIK_BINARY|" packaging/nfpm.yaml >"$out/nfpm.yaml"
for packager in deb rpm; do
  go run "$NFPM" package --config "$out/nfpm.yaml" --packager "$packager" --target "$out/"
done
ls -l "$out"
