#!/usr/bin/env bash
# Sourced by the install scripts: `apt_install_without_services PACKAGE...` installs Debian
# packages without letting their maintainer scripts start the services they ship (the tests
# and benchmarks run their own private instances on loopback, never the system service).
#
# invoke-rc.d asks /usr/sbin/policy-rc.d before starting a service; exit status 101 means
# "action forbidden". The policy is added only when none is present, and removed again.

apt_install_without_services() {
    local policy=/usr/sbin/policy-rc.d added=0 status=0
    export DEBIAN_FRONTEND=noninteractive
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 0755 "$policy"
        added=1
    fi
    apt-get update && apt-get install -y --no-install-recommends "$@" || status=$?
    if [ "$added" -eq 1 ]; then
        rm -f "$policy"
    fi
    return "$status"
}

# `stop_system_service NAME`: disable and stop NAME should it be running anyway.
stop_system_service() {
    if command -v systemctl >/dev/null 2>&1 && [ -d /run/systemd/system ]; then
        systemctl disable --now "$1" >/dev/null 2>&1 || true
    fi
}
