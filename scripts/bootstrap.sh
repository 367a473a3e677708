#!/usr/bin/env bash
# Installs whatever linkgate needs that is missing, and nothing else:
#   1. Debian packages (apt-get, only when a command/file is missing; root)
#   2. npm packages (npm ci, when node_modules is missing or older than package-lock.json)
#   3. the native addon (node-gyp, when its .node is missing or older than its sources)
#   4. the TypeScript build (tsc, when dist/.stamp is missing or older than src/**/*.ts)
# Idempotent; on a warm machine it only compares a few timestamps.
# Works from any cwd. Progress goes to stderr; exits non-zero with a reason on failure.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh" bootstrap
ROOT="$LG_ROOT"
cd "$ROOT"

did=0

# ---- 1. system packages --------------------------------------------------------------------
# "package|how to tell it is present" (cmd:NAME = a command on PATH, file:PATH = a file).
lg_missing \
  "nftables|cmd:nft" \
  "iproute2|cmd:ip" \
  "libpcap-dev|file:/usr/include/pcap/pcap.h" \
  "curl|cmd:curl" \
  "tcpdump|cmd:tcpdump" \
  "iputils-ping|cmd:ping" \
  "procps|cmd:sysctl" \
  "python3|cmd:python3" \
  "iputils-arping|cmd:arping" \
  "ndisc6|cmd:ndisc6" \
  "make|cmd:make" \
  "g++|cmd:g++" \
  "build-essential|file:/usr/include/stdio.h"
if ((${#MISSING[@]})); then
  lg_apt_install "${MISSING[@]}"
  did=1
fi

command -v node >/dev/null 2>&1 || die "node is not on PATH (Node.js >= 20 required)"
command -v npm >/dev/null 2>&1 || die "npm is not on PATH"

# ---- 2. npm packages ------------------------------------------------------------------------
[[ -f package-lock.json ]] || die "package-lock.json is missing in $ROOT"
if [[ ! -d node_modules || ! -f node_modules/.package-lock.json \
      || package-lock.json -nt node_modules/.package-lock.json ]]; then
  say "npm ci"
  run_logged "npm ci" npm ci --no-audit --no-fund
  did=1
fi

# ---- 3. native addon ------------------------------------------------------------------------
ADDON=native-bindings/build/Release/linkgate_native.node
if [[ ! -f "$ADDON" ]] \
   || [[ -n "$(find native-bindings/binding.gyp native-bindings/src -newer "$ADDON" -print -quit)" ]]; then
  say "building native addon (node-gyp)"
  gyp=(node_modules/.bin/node-gyp rebuild --directory native-bindings)
  # Build against the headers that ship with this Node (no header download: the network is closed).
  nodedir="$(dirname "$(dirname "$(readlink -f "$(command -v node)")")")"
  if [[ -f "$nodedir/include/node/node_api.h" ]]; then
    gyp+=("--nodedir=$nodedir")
  fi
  run_logged "native addon build" "${gyp[@]}"
  [[ -f "$ADDON" ]] || die "native addon build produced no $ADDON"
  touch "$ADDON"
  did=1
fi

# ---- 4. TypeScript build --------------------------------------------------------------------
STAMP=dist/.stamp
if [[ ! -f "$STAMP" ]] \
   || [[ tsconfig.json -nt "$STAMP" ]] \
   || [[ -n "$(find src -name '*.ts' -newer "$STAMP" -print -quit)" ]]; then
  say "tsc -p tsconfig.json"
  # Stamp with the time the build started, so edits made during the build trigger the next one.
  start="$(date +%s.%N)"
  if ! node_modules/.bin/tsc -p tsconfig.json >&2; then
    rm -f "$STAMP"   # tsc may have emitted part of dist/: never call that up to date
    die "TypeScript build (tsc -p tsconfig.json) failed; see the errors above"
  fi
  mkdir -p dist
  touch -d "@$start" "$STAMP"
  did=1
fi

if ((did)); then say "done"; else say "up to date"; fi
