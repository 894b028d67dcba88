#!/usr/bin/env bash
# Installs what nurture's tests and demo need, skipping whatever is already there:
# the Python package with its test extras, and Debian's Dovecot (IMAP + LMTP), swaks and
# chromium for the real-server and browser tests. Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
PY="${PY:-python3}"

sudo_() { if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else "$@"; fi; }

need_apt=()
command -v dovecot >/dev/null 2>&1 || need_apt+=(dovecot-imapd)
[ -x /usr/lib/dovecot/lmtp ] || need_apt+=(dovecot-lmtpd)
command -v swaks >/dev/null 2>&1 || need_apt+=(swaks)
command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
if [ ${#need_apt[@]} -gt 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian packages: ${need_apt[*]}"
  sudo_ apt-get update -qq
  sudo_ apt-get install -y -qq "${need_apt[@]}" >/dev/null
  # The package starts a system-wide Dovecot; nurture's tests and demo run their own.
  sudo_ service dovecot stop >/dev/null 2>&1 || true
fi

# PostgreSQL (for the scale-out tests) is started if it is installed but down.
if command -v pg_isready >/dev/null 2>&1 && ! pg_isready -h 127.0.0.1 -p 5432 >/dev/null 2>&1; then
  if [ -d /etc/postgresql ]; then
    sudo_ pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start || true
  fi
fi

# The package and its extras: installed again whenever pyproject.toml changed or another
# Python / checkout is in use (a stamp, not an import list that forgets new dependencies).
stamp=".deps-stamp"
want="$(sha256sum pyproject.toml | cut -d' ' -f1) $("$PY" -c 'import sys; print(sys.executable)') $PWD"
installed="$(cd / && "$PY" -c 'import engine; print(engine.__file__)' 2>/dev/null || true)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || [ "$installed" != "$PWD/engine/__init__.py" ] \
   || ! command -v nurture >/dev/null 2>&1; then
  "$PY" -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi
