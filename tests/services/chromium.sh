#!/usr/bin/env bash
# Debian's Chromium and CJK fonts for the browser tests (Playwright drives /usr/bin/chromium;
# never `playwright install`, which downloads a browser of its own). Idempotent.
#   chromium.sh install
set -euo pipefail
case "${1:-install}" in
  install)
    missing=()
    [[ -x /usr/bin/chromium ]] || missing+=(chromium)
    dpkg -s fonts-noto-cjk >/dev/null 2>&1 || missing+=(fonts-noto-cjk)
    if ((${#missing[@]})); then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    fi
    /usr/bin/chromium --version 2>/dev/null
    ;;
  *) echo "usage: chromium.sh install" >&2; exit 2 ;;
esac
