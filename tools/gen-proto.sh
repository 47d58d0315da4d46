#!/bin/bash
# Regenerates the protobuf-c sources of the ttRPC / shim v2 protocol from
# services/proto/**/*.proto.  The output (*.pb-c.c, *.pb-c.h) sits next to
# each .proto and is committed; never edit it by hand.
#   tools/gen-proto.sh          regenerate
#   tools/gen-proto.sh --check  fail if the committed output is stale
# protoc runs with the repository root as its only import path, so imports
# and generated #includes read "services/proto/...", which the Makefile's
# -I. resolves.
set -eu
cd "$(dirname "$0")/.."
command -v protoc-c >/dev/null || { echo "gen-proto: protoc-c missing (apt-get install protobuf-c-compiler)" >&2; exit 1; }
mapfile -t protos < <(find services/proto -name '*.proto' | LC_ALL=C sort)
if [ "${1:-}" = --check ]; then
    tmp=$(mktemp -d); trap 'rm -rf "$tmp"' EXIT
    protoc-c --proto_path=. --c_out="$tmp" "${protos[@]}"
    rc=0
    for p in "${protos[@]}"; do
        for ext in .pb-c.c .pb-c.h; do
            f=${p%.proto}$ext
            cmp -s "$tmp/$f" "$f" || { echo "gen-proto: stale $f" >&2; rc=1; }
        done
    done
    exit $rc
fi
protoc-c --proto_path=. --c_out=. "${protos[@]}"
echo "gen-proto: ${#protos[@]} files regenerated"
