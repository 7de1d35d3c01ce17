#!/usr/bin/env bash
# Install Postfix's smtp-sink (used by bench/smtp_engine.py) when it is missing.
#
# Debian ships smtp-sink in the postfix package. The package's maintainer scripts would start
# the postfix daemon on port 25; this script keeps it from starting (policy-rc.d) and stops it
# should it be running anyway, so that only the tool is left behind.
set -euo pipefail

find_sink() {
    command -v smtp-sink 2>/dev/null && return 0
    for candidate in /usr/sbin/smtp-sink /usr/lib/postfix/sbin/smtp-sink; do
        if [ -x "$candidate" ]; then
            echo "$candidate"
            return 0
        fi
    done
    return 1
}

if sink="$(find_sink)"; then
    echo "smtp-sink already installed: $sink"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "smtp-sink is missing and installing postfix needs root (try: sudo $0)" >&2
    exit 1
fi

# shellcheck source=scripts/apt_without_services.sh
. "$(dirname "$0")/apt_without_services.sh"

# A local-only configuration so debconf asks nothing.
echo "postfix postfix/main_mailer_type select Local only" | debconf-set-selections
echo "postfix postfix/mailname string localhost" | debconf-set-selections

apt_install_without_services postfix

# Make sure no postfix daemon was left running or listening on port 25.
if command -v postfix >/dev/null 2>&1; then
    postfix stop >/dev/null 2>&1 || true
fi
stop_system_service postfix

sink="$(find_sink)" || {
    echo "postfix installed but smtp-sink was not found" >&2
    exit 1
}
echo "smtp-sink installed: $sink"
