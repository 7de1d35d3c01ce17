#!/usr/bin/env bash
# Install Dovecot's IMAP server (used by tests/inbound) when it is missing.
#
# The tests start their own unprivileged Dovecot on 127.0.0.1 with a throw-away configuration;
# the system service is never needed. The package's maintainer scripts would start it on
# ports 143 and 993, so this script keeps it from starting (policy-rc.d) and stops it should
# it be running anyway, so that only the binaries are left behind.
set -euo pipefail

find_dovecot() {
    command -v dovecot 2>/dev/null && return 0
    if [ -x /usr/sbin/dovecot ]; then
        echo /usr/sbin/dovecot
        return 0
    fi
    return 1
}

if binary="$(find_dovecot)"; then
    echo "dovecot already installed: $binary"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "dovecot is missing and installing dovecot-imapd needs root (try: sudo $0)" >&2
    exit 1
fi

# shellcheck source=scripts/apt_without_services.sh
. "$(dirname "$0")/apt_without_services.sh"
apt_install_without_services dovecot-imapd

# Make sure no system Dovecot was left running or listening on ports 143/993.
stop_system_service dovecot
if [ -e /run/dovecot/master.pid ]; then
    doveadm stop >/dev/null 2>&1 || true
fi

binary="$(find_dovecot)" || {
    echo "dovecot-imapd installed but the dovecot binary was not found" >&2
    exit 1
}
echo "dovecot installed: $binary"
