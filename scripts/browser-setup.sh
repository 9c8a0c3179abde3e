#!/usr/bin/env bash
# What the dashboard's browser test (tests/tests/it/dashboard.rs, docs/dashboard.md) needs, set
# up idempotently: Debian's Chromium at /usr/bin/chromium, and playwright-core from
# tests/browser/package-lock.json in tests/browser/node_modules. Never downloads a browser of
# its own (no `playwright install`). Run as root on Debian (CI is); a second run does nothing.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

if [ ! -x /usr/bin/chromium ]; then
    echo "browser-setup: installing Debian's chromium"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core >/dev/null
fi

if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
    echo "browser-setup: node and npm are needed (Node.js 20 or later)" >&2
    exit 1
fi

# node_modules is stale when the lock file changed after the last install (npm writes
# node_modules/.package-lock.json on every install).
installed=tests/browser/node_modules/.package-lock.json
if [ ! -f "$installed" ] || [ tests/browser/package-lock.json -nt "$installed" ] \
    || [ ! -d tests/browser/node_modules/playwright-core ]; then
    echo "browser-setup: npm ci --prefix tests/browser"
    npm ci --prefix tests/browser --no-audit --no-fund --loglevel=error
fi

echo "browser-setup: $(/usr/bin/chromium --version 2>/dev/null | head -n1), playwright-core $(node -p "require('./tests/browser/node_modules/playwright-core/package.json').version")"
