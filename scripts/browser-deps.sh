#!/usr/bin/env bash
# Chromium for the Playwright browser tests (marker `browser`), from Debian's packages.
# Playwright itself is pinned in requirements-dev.txt; its own browser download is never used
# (tests launch the system chromium). Cheap when chromium is already there.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "browser-deps: chromium missing and apt-get unavailable; browser tests will skip" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  echo "browser-deps: chromium missing and not root (no passwordless sudo); browser tests will skip." >&2
  echo "browser-deps: install it with: sudo apt-get install chromium" >&2
  exit 0
fi
echo "browser-deps: installing chromium with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends chromium >/dev/null
command -v chromium >/dev/null
