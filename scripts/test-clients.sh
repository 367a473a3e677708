#!/usr/bin/env bash
# Installs the real metadata clients the network tests (test/net/clients*.test.ts) run inside guest
# namespaces, when they are missing, and nothing else. `npm test` runs it; `npm start` and the
# daemon never do (the daemon needs none of this).
#   1. Debian's cloud-init (apt; it runs on /usr/bin/python3, not a python3 found first on PATH)
#   2. the pinned npm clients in test/clients/ (its own package.json and lockfile, `npm ci`):
#      @smithy/credential-provider-imds, gcp-metadata 8.x, @azure/identity 4.13.1 (newer needs Node 22)
# Idempotent; on a warm machine it only checks a file and compares two timestamps.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh" test-clients
cd "$LG_ROOT"

did=0

# ---- 1. cloud-init -----------------------------------------------------------------------------
if ! /usr/bin/python3 -c 'import cloudinit.sources.helpers.ec2, cloudinit.sources.helpers.openstack, cloudinit.sources.DataSourceGCE' >/dev/null 2>&1; then
  # Installing the package must not start anything on this machine: no services are started in
  # a container without systemd, and cloud-init itself only runs at boot.
  lg_apt_install cloud-init
  /usr/bin/python3 -c 'import cloudinit.sources.DataSourceGCE' >/dev/null 2>&1 || die "cloud-init installed but /usr/bin/python3 cannot import it"
  did=1
fi

# ---- 2. pinned npm clients ---------------------------------------------------------------------
CLIENTS=test/clients
[[ -f "$CLIENTS/package-lock.json" ]] || die "$CLIENTS/package-lock.json is missing"
if [[ ! -f "$CLIENTS/node_modules/.package-lock.json" \
      || "$CLIENTS/package-lock.json" -nt "$CLIENTS/node_modules/.package-lock.json" ]]; then
  say "npm ci --prefix $CLIENTS"
  run_logged "npm ci (test clients)" npm ci --prefix "$CLIENTS" --no-audit --no-fund
  did=1
fi

if ((did)); then say "done"; else say "up to date"; fi
