#!/usr/bin/env bash
# Generates the TypeScript code from ../../proto (the source of truth) into src/gen/
# (gitignored; `npm test` regenerates it). Needs `npm ci` here and the buf that scripts/setup
# installs into .tools/buf (BUF overrides its path); buf compiles the protos itself.
set -euo pipefail
cd "$(dirname "$0")"
buf="${BUF:-../../.tools/buf/node_modules/.bin/buf}"
if [ ! -x "$buf" ]; then
  echo "generate.sh: buf is not at $buf: run scripts/setup, or set BUF" >&2
  exit 1
fi
if [ ! -x node_modules/.bin/protoc-gen-es ]; then
  echo "generate.sh: protoc-gen-es is missing: run \`npm ci\` in clients/typescript" >&2
  exit 1
fi
"$buf" generate
