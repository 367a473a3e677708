#!/usr/bin/env bash
# Installs the services the network tests start by themselves, when they are missing, and nothing
# else: etcd (Debian `etcd-server`) for test/net/etcd.test.ts. `npm test` runs it; `npm start` and
# the daemon never do. The package is installed with service starts denied (policy-rc.d), so no
# etcd ever runs in the machine's own namespace: the tests start their own, inside a lab's
# hypervisor namespace, on a loopback port with a temporary data directory.
# Idempotent; on a warm machine it only looks for one file.
set -euo pipefail

say() { printf 'test-services: %s\n' "$*" >&2; }
die() { printf 'test-services: FAILED: %s\n' "$*" >&2; exit 1; }

if [[ -x /usr/bin/etcd ]]; then
  say "up to date"
  exit 0
fi
[[ "$(id -u)" -eq 0 ]] || die "etcd is missing; run as root or: apt-get install etcd-server"
command -v apt-get >/dev/null 2>&1 || die "etcd is missing and there is no apt-get (Debian 12 expected)"

POLICY=/usr/sbin/policy-rc.d
created_policy=0
if [[ ! -e "$POLICY" ]]; then
  # Deny service starts while the package installs (its postinst would start etcd on this host).
  printf '#!/bin/sh\nexit 101\n' >"$POLICY"
  chmod 755 "$POLICY"
  created_policy=1
fi
cleanup() { if ((created_policy)); then rm -f "$POLICY"; fi; }
trap cleanup EXIT

log="$(mktemp -t linkgate-test-services.XXXXXX)"
export DEBIAN_FRONTEND=noninteractive
say "apt-get install etcd-server"
if ! { apt-get update -q && apt-get install -y -q -o DPkg::Lock::Timeout=600 --no-install-recommends etcd-server; } >"$log" 2>&1; then
  tail -n 40 "$log" >&2
  rm -f "$log"
  die "apt-get install etcd-server"
fi
rm -f "$log"
[[ -x /usr/bin/etcd ]] || die "etcd-server installed but /usr/bin/etcd is missing"
say "done"
