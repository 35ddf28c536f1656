#!/usr/bin/env bash
# Build chronik_<version>_<arch>.deb and chronik-<version>.<arch>.rpm into
# dist/ (or $1) with nfpm, pinned and run through the Go module proxy.
set -euo pipefail
cd "$(dirname "$0")/.."
out=${1:-dist}
export CHRONIK_VERSION=${CHRONIK_VERSION:-0.1.0}
export CHRONIK_ARCH=${CHRONIK_ARCH:-$(go env GOARCH)}
NFPM=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
# Every file of the packages gets this time (nfpm reads SOURCE_DATE_EPOCH),
# the last commit's, so that two builds of one commit are the same bytes.
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}
mkdir -p "$out"
export CHRONIK_BINARY="$out/chronik"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=$CHRONIK_VERSION" -o "$CHRONIK_BINARY" .
# The manual page and the shell completions come from the binary itself
# (generated from its command and flag definitions); gzip -n stores no name
# or time, so the package stays reproducible.
gen="$out/generated"
mkdir -p "$gen"
"$CHRONIK_BINARY" man | gzip -n -9 >"$gen/chronik.1.gz"
"$CHRONIK_BINARY" completion bash >"$gen/completion.bash"
"$CHRONIK_BINARY" completion zsh >"$gen/completion.zsh"
"$CHRONIK_BINARY" completion fish >"$gen/completion.fish"
# nfpm does not expand environment variables in contents' src, so the
# binary's and generated files' paths are written into a copy of the config.
sed -e "s|\${CHRONIK_BINARY}|$CHRONIK_BINARY|" -e "s|\${CHRONIK_GENERATED}|$gen|" packaging/nfpm.yaml >"$out/nfpm.yaml"
for packager in deb rpm; do
  go run "$NFPM" package --config "$out/nfpm.yaml" --packager "$packager" --target "$out/"
done
ls -l "$out"
