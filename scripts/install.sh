#!/usr/bin/env bash
# One command sets up a fresh clone: the browser used by the end-to-end tests, the JS front end, and the Python
# deps (CPU torch pinned). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

# Chromium for the browser tests (Playwright drives /usr/bin/chromium; its own browser download is not used).
if [ -x /usr/bin/chromium ]; then
  echo "install.sh: chromium present (/usr/bin/chromium)"
elif command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = "0" ]; then
  echo "install.sh: installing Debian chromium for the browser tests"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null \
    || { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null; } \
    || echo "install.sh: NOTE: could not install chromium; the browser tests (-m browser) will be skipped or fail"
else
  echo "install.sh: NOTE: /usr/bin/chromium is missing and apt-get is unavailable or this is not root;" \
       "install Chromium yourself to run the browser tests (-m browser)"
fi

# The JS front end, built explicitly so the bundle exists even where pip's build hook is skipped.
if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
  (cd js && npm ci --no-audit --no-fund && npm run build)
else
  echo "install.sh: NOTE: node/npm not found; the widget front end cannot be built (install Node.js >= 20)" >&2
fi

python3 -m pip install --upgrade pip >/dev/null
# -c pins torch to the CPU wheel on these machines; a GPU user runs `pip install qscope-widgets` instead.
python3 -m pip install -c constraints-cpu.txt -e ".[dev]"
