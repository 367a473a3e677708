#!/usr/bin/env bash
# What the benchmark suite needs besides what scripts/bootstrap.sh installs, and nothing else:
#   wrk (load generator), nginx and haproxy (the peers linkgate is compared with), a C compiler
#   (bench/load/lgload.c). Used by `npm run bench` and the bench smoke test only; `npm start`
#   never needs them.
# Installing nginx or haproxy must never start them as services in the machine's own namespace:
# when no policy-rc.d exists, a temporary one that refuses every service start is put in place
# for the install and removed afterwards. The benchmarks run the binaries themselves, inside lab
# namespaces, with configs of their own.
set -euo pipefail

say() { printf 'bench-deps: %s\n' "$*" >&2; }
die() { printf 'bench-deps: FAILED: %s\n' "$*" >&2; exit 1; }

checks=(
  "wrk|cmd:wrk"
  "nginx|file:/usr/sbin/nginx"
  "haproxy|file:/usr/sbin/haproxy"
  "gcc|cmd:cc"
  "iproute2|cmd:nstat"
)
missing=()
for c in "${checks[@]}"; do
  pkg="${c%%|*}"; probe="${c#*|}"
  case "$probe" in
    cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 || missing+=("$pkg") ;;
    file:*) [[ -x "${probe#file:}" ]] || missing+=("$pkg") ;;
  esac
done
((${#missing[@]})) || exit 0

[[ "$(id -u)" -eq 0 ]] || die "missing packages (${missing[*]}); run as root or: apt-get install ${missing[*]}"
command -v apt-get >/dev/null 2>&1 || die "missing packages (${missing[*]}) and no apt-get (Debian 12 expected)"

POLICY=/usr/sbin/policy-rc.d
made_policy=0
cleanup() { if ((made_policy)); then rm -f "$POLICY"; fi; }
trap cleanup EXIT
if [[ ! -e "$POLICY" ]]; then
  printf '#!/bin/sh\n# temporary, from linkgate scripts/bench-deps.sh: no service starts during this install\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  made_policy=1
fi

log="$(mktemp -t linkgate-bench-deps.XXXXXX)"
export DEBIAN_FRONTEND=noninteractive
say "apt-get install ${missing[*]}"
# Another apt may hold the lock for a while (other runs share the machine): retry, bounded.
ok=0
for attempt in 1 2 3 4 5 6 7 8 9 10; do
  if { apt-get -o DPkg::Lock::Timeout=60 update -q &&
       apt-get -o DPkg::Lock::Timeout=60 install -y -q --no-install-recommends "${missing[@]}"; } >"$log" 2>&1; then
    ok=1
    break
  fi
  grep -q 'Could not get lock' "$log" || break
  say "apt is busy (attempt $attempt); waiting"
  sleep 15
done
if ((!ok)); then
  tail -n 40 "$log" >&2
  rm -f "$log"
  die "apt-get install ${missing[*]}"
fi
rm -f "$log"
say "done"
