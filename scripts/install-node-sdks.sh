#!/usr/bin/env bash
# Install the pinned Vercel AI SDK packages the client tests drive into a project-local
# folder (outside git). ai 7 / @ai-sdk/* 4 need node >= 22; node 20 is what the test
# machines have, so the pins are the newest 6.x / 3.x line (node >= 18), which share one
# @ai-sdk/provider (3.0.19).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${CLINVK_NODE_SDK_DIR:-$here/.cache/node-sdks}"
pins=(ai@6.0.325 @ai-sdk/openai@3.0.141 @ai-sdk/anthropic@3.0.140 zod@4.6.7)
stamp="$dir/.pins"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${pins[*]}" ] \
   && [ -d "$dir/node_modules/ai" ] && [ -d "$dir/node_modules/@ai-sdk/openai" ] \
   && [ -d "$dir/node_modules/@ai-sdk/anthropic" ]; then
  echo "node SDKs already installed in $dir"
  exit 0
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"clinvk-node-sdks","private":true}' > "$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund --save-exact "${pins[@]}"
echo "${pins[*]}" > "$stamp"
echo "node SDKs installed in $dir"
