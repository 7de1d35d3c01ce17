#!/bin/sh
# Install Debian's Chromium for the browser tests of the web UI (tests/ui).
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -eu

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "install_chromium.sh: $CHROMIUM is missing; run this script as root" >&2
    echo "(or: sudo apt-get update && sudo apt-get install -y chromium)" >&2
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y chromium

if [ ! -x "$CHROMIUM" ]; then
    echo "install_chromium.sh: apt-get installed chromium but $CHROMIUM is missing" >&2
    exit 1
fi
