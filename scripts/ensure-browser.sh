#!/usr/bin/env bash
# What the browser tests need: Debian's Chromium (Playwright's own browser download does
# not work here), installed when missing (as root), and axe-core from the npm registry
# (the accessibility checker the tests run inside each page), kept in .cache/.
set -euo pipefail
cd "$(dirname "$0")/.."

[ -x /usr/bin/chromium ] || scripts/apt-install.sh chromium

AXE_VERSION=4.11.0
AXE=.cache/axe/node_modules/axe-core
if [ ! -f "$AXE/axe.min.js" ] || ! grep -q "\"version\": \"$AXE_VERSION\"" "$AXE/package.json"; then
  command -v npm >/dev/null || scripts/apt-install.sh npm
  mkdir -p .cache/axe
  npm install --silent --no-audit --no-fund --no-save --prefix .cache/axe "axe-core@$AXE_VERSION" >/dev/null
fi
