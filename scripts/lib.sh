# Shared by the scripts in this folder; sourced, never run:
#   source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib.sh" NAME
# NAME prefixes every message (`NAME: …`, `NAME: FAILED: …`) and names the temporary logs.
# Defines: LG_ROOT (the checkout), say, die, run_logged, lg_missing, lg_apt_install.
# Defines functions and variables only: it changes no directory and installs nothing by itself.

LG_NAME="${1:?lib.sh: source it with the name of the calling script}"
LG_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"

say() { printf '%s: %s\n' "$LG_NAME" "$*" >&2; }
die() { printf '%s: FAILED: %s\n' "$LG_NAME" "$*" >&2; exit 1; }

# run_logged WHAT CMD...: runs CMD quietly; on failure shows the tail of its output and dies.
run_logged() {
  local what="$1"; shift
  local log
  log="$(mktemp -t "linkgate-$LG_NAME.XXXXXX")"
  if ! "$@" >"$log" 2>&1; then
    tail -n 40 "$log" >&2
    rm -f "$log"
    die "$what (command: $*)"
  fi
  rm -f "$log"
}

# lg_missing "PACKAGE|PROBE"...: sets MISSING to the packages whose probe fails, in order.
#   cmd:NAME   a command NAME on PATH
#   file:PATH  PATH exists
#   exec:PATH  PATH is an executable file
MISSING=()
lg_missing() {
  MISSING=()
  local c pkg probe
  for c in "$@"; do
    pkg="${c%%|*}"; probe="${c#*|}"
    case "$probe" in
      cmd:*) command -v "${probe#cmd:}" >/dev/null 2>&1 || MISSING+=("$pkg") ;;
      file:*) [[ -e "${probe#file:}" ]] || MISSING+=("$pkg") ;;
      exec:*) [[ -x "${probe#exec:}" ]] || MISSING+=("$pkg") ;;
      *) die "lib.sh: unknown probe in \"$c\" (cmd:, file: or exec:)" ;;
    esac
  done
}

# lg_apt: `apt-get -o DPkg::Lock::Timeout=60 ARGS...`, quietly. Another apt may hold the lock for a
# while (other runs share the machine): retried, bounded (10 attempts, 15 s apart). Any other
# failure, or the last attempt's, shows the tail of apt's output and dies.
lg_apt() {
  local log attempt
  log="$(mktemp -t "linkgate-$LG_NAME.XXXXXX")"
  for attempt in 1 2 3 4 5 6 7 8 9 10; do
    if apt-get -o DPkg::Lock::Timeout=60 "$@" >"$log" 2>&1; then
      rm -f "$log"
      return 0
    fi
    grep -q 'Could not get lock' "$log" || break
    say "apt is busy (attempt $attempt); waiting"
    sleep 15
  done
  tail -n 40 "$log" >&2
  rm -f "$log"
  die "apt-get $*"
}

LG_APT_UPDATED=0
LG_POLICY=/usr/sbin/policy-rc.d
LG_MADE_POLICY=0
lg_drop_policy() {
  if ((LG_MADE_POLICY)); then rm -f "$LG_POLICY"; LG_MADE_POLICY=0; fi
}

# lg_apt_install [--no-services] PACKAGE...: installs the Debian packages (root, apt-get; the
# package lists are updated once per run), non-interactively, without recommends.
# --no-services: no package may start a service in the machine's own namespace. When no
# policy-rc.d exists, a temporary one that refuses every service start is put in place for the
# install and removed afterwards (also when the script dies or is interrupted); an existing one is
# left as it is.
lg_apt_install() {
  local no_services=0
  if [[ "${1:-}" == --no-services ]]; then no_services=1; shift; fi
  (($#)) || die "lib.sh: lg_apt_install without packages"
  [[ "$(id -u)" -eq 0 ]] || die "missing packages ($*); run as root or: apt-get install $*"
  command -v apt-get >/dev/null 2>&1 || die "missing packages ($*) and no apt-get (Debian 12 expected)"
  if ((no_services)) && [[ ! -e "$LG_POLICY" ]]; then
    trap lg_drop_policy EXIT
    printf '#!/bin/sh\n# temporary, from linkgate scripts/%s.sh: no service starts during this install\nexit 101\n' "$LG_NAME" >"$LG_POLICY"
    chmod 755 "$LG_POLICY"
    LG_MADE_POLICY=1
  fi
  export DEBIAN_FRONTEND=noninteractive
  say "apt-get install $*"
  if ! ((LG_APT_UPDATED)); then
    lg_apt update -q
    LG_APT_UPDATED=1
  fi
  lg_apt install -y -q --no-install-recommends "$@"
  lg_drop_policy
}
