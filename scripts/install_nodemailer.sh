#!/usr/bin/env bash
# Install Nodemailer (the reference pooled SMTP client of bench/delivery.py) from the npm
# registry into bench/node/node_modules, which git ignores. Needs node and npm.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
target="$here/bench/node"

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "node and npm are needed (e.g. apt-get install nodejs npm)" >&2
    exit 1
fi
if [ -f "$target/node_modules/nodemailer/package.json" ]; then
    echo "nodemailer already installed in $target/node_modules"
    exit 0
fi
cd "$target"
npm install --no-audit --no-fund --no-package-lock --loglevel=error
echo "nodemailer installed in $target/node_modules"
