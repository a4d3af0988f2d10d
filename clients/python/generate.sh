#!/usr/bin/env bash
# Generates the Python gRPC code from ../../proto (the source of truth) into
# claude_swarm_client/v1/ (gitignored; regenerated before every test run by conftest.py).
# Needs grpcio-tools (requirements.txt); protoc comes with it.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto="$here/../../proto"
out="$here/claude_swarm_client/v1"
python="${PYTHON:-python3}"

work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# grpc_tools.protoc adds the well-known types (google/protobuf/timestamp.proto) itself.
"$python" -m grpc_tools.protoc -I "$proto" \
  --python_out="$work" --pyi_out="$work" --grpc_python_out="$work" \
  "$proto"/claude_swarm/v1/*.proto

# protoc names modules by proto path (claude_swarm.v1); they live inside this package, so the
# absolute imports between generated modules (and their type stubs) become relative ones.
sed -i -E 's/^from claude_swarm\.v1 import /from . import /' "$work"/claude_swarm/v1/*.py*
if grep -n '^from claude_swarm\.\|^import claude_swarm' "$work"/claude_swarm/v1/*.py*; then
  echo "generate.sh: unexpected absolute import left in the generated code" >&2
  exit 1
fi
echo '"""Generated from proto/claude_swarm/v1 by generate.sh; do not edit."""' \
  >"$work/claude_swarm/v1/__init__.py"

rm -rf "$out.new"
mv "$work/claude_swarm/v1" "$out.new"
rm -rf "$out"
mv "$out.new" "$out"
