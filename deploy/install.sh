#!/usr/bin/env bash
# Set up a development machine from a clone of ngfw (Debian 12, as root): the build tools and headers
# (deploy/packages.txt), what the lab, the tests and the VM image need (deploy/install-lab.sh), a
# virtualenv in .venv with ngfw in editable mode and the compiled fastpath. Idempotent; safe to run again.
#
# It changes no service of the host (install-lab.sh leaves the units of what it installs disabled, and
# those the host had as they were). To run ngfw on a host rather than develop it, install the Debian
# package instead: `bash deploy/build-packages.sh && apt-get install ./dist/ngfw_*.deb` (docs/deploy.md).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/install.sh: run as root (it installs Debian packages and the lab needs network namespaces)" >&2
    exit 1
fi

packages=$(sed 's/#.*//' deploy/packages.txt | tr -s ' \n' ' ')
missing=()
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deploy/install.sh: installing Debian packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q --no-install-recommends "${missing[@]}"
fi
bash deploy/install-lab.sh

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# compat mode: a path entry in a .pth file, not an import hook that every `ngfw` command loads first
# (~50 ms of each command's start); setuptools calls the mode transitional: the default when it is gone
.venv/bin/python -m pip install -q -e ".[test,dev]" --config-settings editable_mode=compat 2>/dev/null \
    || .venv/bin/python -m pip install -q -e ".[test,dev]"
# bytecode now, so no command compiles ngfw's modules at start (also where PYTHONDONTWRITEBYTECODE is set)
.venv/bin/python -m compileall -q ngfw
.venv/bin/python -c "import ngfw._fastpath.engine as e; print('ngfw: compiled fastpath', e.__file__, 'libhs', e.BUILD_INFO['hyperscan'])"
# the App-ID catalogue and its Hyperscan database, compiled once into the cache (~/.cache/ngfw): the
# first `ngfw replay` or dataplane start does not pay for it
.venv/bin/python -c "from ngfw.dataplane.replay import Replayer; Replayer()"
