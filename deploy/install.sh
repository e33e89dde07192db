#!/usr/bin/env bash
# Install ngfw and everything it needs on Debian 12, as root: system packages (build tools, libhs,
# the lab's real servers and clients), a virtualenv in .venv with the Python dependencies, and the
# compiled fastpath. Idempotent; safe to run again.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/install.sh: run as root (it installs Debian packages and the lab needs network namespaces)" >&2
    exit 1
fi

packages=$(cat deploy/packages.txt deploy/packages-lab.txt | sed 's/#.*//' | tr -s ' \n' ' ')
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
# Suricata 7, the baseline the parity tool and the benchmark compare with, comes from
# bookworm-backports (bookworm itself ships 6.0); the source is added only when none names it.
if ! grep -rqs '^[^#]*bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
    cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'SOURCES'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SOURCES
    apt-get update -q
fi
if ! suricata -V 2>/dev/null | grep -q 'version 7\.'; then
    echo "deploy/install.sh: installing suricata 7 from bookworm-backports"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports suricata \
        || { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends -t bookworm-backports suricata; }
fi

# the lab starts its own nginx/sshd/dnsmasq in namespaces, the baselines their own suricata and the
# control tests their own etcd, the monitoring test its own prometheus; the host's copies stay off
for unit in nginx ssh dnsmasq suricata etcd prometheus; do
    systemctl disable --now "$unit" >/dev/null 2>&1 || true
done

python="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    "$python" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip setuptools wheel
# compat mode: a path entry in a .pth file, not an import hook that every `ngfw` command loads first
# (~50 ms of each command's start); setuptools calls the mode transitional: the default when it is gone
.venv/bin/python -m pip install -q -e ".[test]" --config-settings editable_mode=compat 2>/dev/null \
    || .venv/bin/python -m pip install -q -e ".[test]"
# bytecode now, so no command compiles ngfw's modules at start (also where PYTHONDONTWRITEBYTECODE is set)
.venv/bin/python -m compileall -q ngfw
.venv/bin/python -c "import ngfw._fastpath.engine as e; print('ngfw: compiled fastpath', e.__file__, 'libhs', e.BUILD_INFO['hyperscan'])"
# the App-ID catalogue and its Hyperscan database, compiled once into the cache (~/.cache/ngfw): the
# first `ngfw replay` or dataplane start does not pay for it
.venv/bin/python -c "from ngfw.dataplane.replay import Replayer; Replayer()"
