#!/usr/bin/env bash
# Install what the lab, the benchmark, the tests and the VM image build need on a development machine
# (Debian 12, as root): deploy/packages-lab.txt, deploy/packages-vm.txt, Suricata 7 from
# bookworm-backports. Idempotent.
#
# It changes no service of the host: a service the host had keeps its state (enabled, running or not),
# and the units of packages installed here are left disabled and stopped -- the lab runs its own nginx,
# sshd and dnsmasq in its namespaces, the tests their own etcd, the benchmark its own Suricata.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"

if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/install-lab.sh: run as root (it installs Debian packages)" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive

installed_packages() { dpkg-query -W -f='${Status} ${Package}\n' 2>/dev/null | sed -n 's/^install ok installed //p' | sort; }

# Packages' maintainer scripts start their services through invoke-rc.d/deb-systemd-invoke, which ask
# /usr/sbin/policy-rc.d first: "101" (action forbidden) keeps everything installed here from starting.
policy=/usr/sbin/policy-rc.d
own_policy=no
if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# deploy/install-lab.sh: no service starts while it installs packages\nexit 101\n' > "$policy"
    chmod 0755 "$policy"
    own_policy=yes
fi
before=$(mktemp)
trap 'rm -f "$before"; [ "$own_policy" = no ] || rm -f "$policy"' EXIT
installed_packages > "$before"

arch=$(dpkg --print-architecture)
packages=$(cat deploy/packages-lab.txt deploy/packages-vm.txt | sed 's/#.*//' | tr -s ' \n' ' ')
[ "$arch" = amd64 ] || packages=${packages//qemu-system-x86/qemu-system-arm}
missing=()
for p in $packages; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deploy/install-lab.sh: installing Debian packages: ${missing[*]}"
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
    echo "deploy/install-lab.sh: installing suricata 7 from bookworm-backports"
    apt-get install -y -q --no-install-recommends -t bookworm-backports suricata \
        || { apt-get update -q && apt-get install -y -q --no-install-recommends -t bookworm-backports suricata; }
fi

# The units of every package this run installed (dependencies included) stay disabled: they did not
# exist before, so "as the host had them" is off. Units of packages the host already had are not touched.
new_packages=$(installed_packages | comm -13 "$before" -)
for pkg in $new_packages; do
    for unit in $(dpkg-query -L "$pkg" 2>/dev/null | grep -E '^/(usr/)?lib/systemd/system/[^/]+\.(service|socket|timer|path|target)$' \
                  | xargs -r -n1 basename | grep -v '@\.' || true); do
        systemctl disable --quiet "$unit" >/dev/null 2>&1 || true
        if [ -d /run/systemd/system ]; then
            systemctl stop "$unit" >/dev/null 2>&1 || true
        fi
        echo "deploy/install-lab.sh: $unit (new, from $pkg) left disabled"
    done
done
# cloud-init is here for `cloud-init schema` (the VM's seeds): it must never configure this machine
if grep -qx cloud-init <<<"$new_packages"; then
    touch /etc/cloud/cloud-init.disabled
fi
