#!/usr/bin/env bash
# apt-install.sh PACKAGE...: install missing Debian packages (as root); otherwise say
# which are needed and fail. Used by the scripts that prepare the tests.
set -euo pipefail
(($#)) || exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
else
  echo "please install these Debian packages: $*" >&2
  exit 1
fi
