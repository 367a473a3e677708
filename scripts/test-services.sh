#!/usr/bin/env bash
# Installs the services the network tests start by themselves, when they are missing, and nothing
# else: etcd (Debian `etcd-server`) for test/net/etcd.test.ts. `npm test` runs it; `npm start` and
# the daemon never do. The package is installed with service starts denied (policy-rc.d, through
# lg_apt_install --no-services in scripts/lib.sh: its postinst would start etcd on this host), so
# no etcd ever runs in the machine's own namespace: the tests start their own, inside a lab's
# hypervisor namespace, on a loopback port with a temporary data directory.
# Idempotent; on a warm machine it only looks for one file.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh" test-services

lg_missing "etcd-server|exec:/usr/bin/etcd"
if ((!${#MISSING[@]})); then
  say "up to date"
  exit 0
fi

lg_apt_install --no-services "${MISSING[@]}"
[[ -x /usr/bin/etcd ]] || die "etcd-server installed but /usr/bin/etcd is missing"
say "done"
