#!/usr/bin/env bash
# What the benchmark suite needs besides what scripts/bootstrap.sh installs, and nothing else:
#   wrk (load generator), nginx and haproxy (the peers linkgate is compared with), a C compiler
#   (bench/load/lgload.c). Used by `npm run bench` and the bench smoke test only; `npm start`
#   never needs them.
# Installing nginx or haproxy must never start them as services in the machine's own namespace:
# when no policy-rc.d exists, a temporary one that refuses every service start is put in place
# for the install and removed afterwards (lg_apt_install --no-services, scripts/lib.sh). The
# benchmarks run the binaries themselves, inside lab namespaces, with configs of their own.
set -euo pipefail

source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh" bench-deps

lg_missing \
  "wrk|cmd:wrk" \
  "nginx|exec:/usr/sbin/nginx" \
  "haproxy|exec:/usr/sbin/haproxy" \
  "gcc|cmd:cc" \
  "iproute2|cmd:nstat"
((${#MISSING[@]})) || exit 0

lg_apt_install --no-services "${MISSING[@]}"
say "done"
