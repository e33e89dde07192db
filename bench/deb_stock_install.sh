#!/usr/bin/env bash
# What `apt-get install ./ngfw_*.deb` pulls on a stock Debian 12: a minbase bookworm root made by
# mmdebstrap (fewer packages than any real install, so the list is the longest it gets), then the
# operator's command as written -- Recommends included (apt's default; mmdebstrap turns it off). Prints every package the install added and fails
# if one of them builds or tests (compilers, -dev headers, Cython, pytest, scapy).
#   sudo bash bench/deb_stock_install.sh [dist/ngfw_0.1.0-1_amd64.deb]
# Needs mmdebstrap (deploy/packages-vm.txt) and Debian's mirrors; packages are cached in ~/.cache/ngfw/apt
# as for the VM image.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$here"
deb=$(readlink -f "${1:-$(ls -t dist/ngfw_*.deb | head -1)}")
arch=$(dpkg --print-architecture)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ngfw/apt/$arch"
mkdir -p "$cache"
rm -f "$cache"/ngfw_*.deb
out=$(mktemp -d)
trap 'rm -rf "$out"' EXIT
mirror="${NGFW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
started=$(date +%s)
mmdebstrap --mode=root --variant=minbase --format=null \
    --setup-hook="mkdir -p \"\$1/var/cache/apt/archives/\"" \
    --setup-hook="sync-in '$cache' /var/cache/apt/archives/" \
    --customize-hook="chroot \"\$1\" dpkg-query -W -f '\${Package}\n' | sort > '$out/before'" \
    --customize-hook="copy-in '$deb' /tmp" \
    --customize-hook="chroot \"\$1\" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q -o APT::Install-Recommends=true /tmp/$(basename "$deb") > '$out/apt.log'" \
    --customize-hook="chroot \"\$1\" dpkg-query -W -f '\${Package}\n' | sort > '$out/after'" \
    --customize-hook="chroot \"\$1\" /usr/bin/ngfw --version > '$out/version'" \
    --customize-hook="rm -f \"\$1\"/var/cache/apt/archives/ngfw_*.deb" \
    --customize-hook="sync-out /var/cache/apt/archives '$cache'" \
    bookworm /dev/null "deb $mirror bookworm main" >"$out/mmdebstrap.log" 2>&1 \
    || { tail -30 "$out/mmdebstrap.log" "$out/apt.log" >&2 2>/dev/null; exit 1; }
added=$(comm -13 "$out/before" "$out/after")
echo "stock Debian 12 (minbase, $(wc -l < "$out/before") packages) + apt-get install ./$(basename "$deb"):" \
     "$(echo "$added" | wc -l) packages added, $(cat "$out/version") runs ($(( $(date +%s) - started )) s in all)"
echo "$added" | tr '\n' ' ' | fold -s -w 110
echo
build_or_test=$(echo "$added" | grep -E '^(gcc|g\+\+|cpp|clang|make|build-essential|cython3?|python3-pip|python3-venv|.*-dev|python3-pytest|python3-scapy)(-[0-9.]+)?$' || true)
if [ -n "$build_or_test" ]; then
    echo "bench/deb_stock_install.sh: build or test packages pulled: $build_or_test" >&2
    exit 1
fi
