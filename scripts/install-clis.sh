#!/usr/bin/env bash
# Install the pinned backend CLIs into a project-local cache folder (outside git).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
dir="${CLINVK_CLI_DIR:-$here/.cache/clis}"
pins=(@anthropic-ai/claude-code@2.1.197 @openai/codex@0.169.0 @google/gemini-cli@0.61.0)
stamp="$dir/.pins"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "${pins[*]}" ] \
   && [ -x "$dir/node_modules/.bin/claude" ] && [ -x "$dir/node_modules/.bin/codex" ] \
   && [ -x "$dir/node_modules/.bin/gemini" ]; then
  echo "CLIs already installed in $dir"
  exit 0
fi
mkdir -p "$dir"
[ -f "$dir/package.json" ] || echo '{"name":"clinvk-cli-cache","private":true}' > "$dir/package.json"
npm install --prefix "$dir" --no-audit --no-fund "${pins[@]}"
# claude's postinstall replaces a placeholder with the native binary; make sure it ran.
if ! head -c 4 "$dir/node_modules/.bin/claude" | grep -q $'\x7fELF\|#!'; then
  node "$dir/node_modules/@anthropic-ai/claude-code/install.cjs"
fi
echo "${pins[*]}" > "$stamp"
echo "CLIs installed in $dir"
