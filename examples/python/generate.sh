#!/usr/bin/env bash
# Generates the Python message and gRPC stubs from proto/ into examples/python/gen/ (gitignored).
# Idempotent: every run replaces gen/ with a fresh copy.
#
# Needs Debian's protoc and gRPC Python plugin (bookworm's python3-grpc-tools bundles protoc 3.5.1,
# which rejects the proto3 `optional` fields in proto/):
#   apt-get install -y python3-grpcio protobuf-compiler-grpc libprotobuf-dev
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
protoc="${PROTOC:-/usr/bin/protoc}"
plugin="${GRPC_PYTHON_PLUGIN:-/usr/bin/grpc_python_plugin}"
wkt="${PROTOBUF_INCLUDE:-/usr/include}" # google/protobuf/*.proto (libprotobuf-dev)

for f in "$protoc" "$plugin" "$wkt/google/protobuf/timestamp.proto"; do
  if [ ! -e "$f" ]; then
    echo "generate.sh: $f not found; install: apt-get install -y protobuf-compiler-grpc libprotobuf-dev" >&2
    exit 1
  fi
done

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
"$protoc" -I "$root/proto" -I "$wkt" \
  --plugin=protoc-gen-grpc_python="$plugin" \
  --python_out="$tmp" --grpc_python_out="$tmp" \
  "$root"/proto/shop/*.proto
rm -rf "$here/gen"
mkdir -p "$here/gen"
cp -R "$tmp/." "$here/gen/"
