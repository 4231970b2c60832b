#!/usr/bin/env bash
# The browser tests drive Debian's Chromium (Playwright's own browser download does not
# work here). Install it when missing (as root).
set -euo pipefail
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
else
  echo "ensure-chromium: please install Debian's chromium package" >&2
  exit 1
fi
