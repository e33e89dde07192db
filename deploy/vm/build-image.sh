#!/usr/bin/env bash
# Build the ngfw VM image from Debian packages: Debian 12 by mmdebstrap, the distribution's cloud kernel,
# systemd (networkd), cloud-init (NoCloud), qemu-guest-agent, openssh-server and the ngfw .deb of
# deploy/build-packages.sh, installed with `apt-get install ./ngfw_*.deb` as an operator would.
#
# Output in dist/vm/:
#   ngfw-vm.img        raw disk: MBR, a FAT /boot (syslinux, kernel, initrd), an ext4 root (LABEL=ngfw-root);
#                      boots on any BIOS/SeaBIOS hypervisor (`qemu-img convert -O qcow2` for libvirt/OpenStack)
#   vmlinuz, initrd.img   the same kernel and initrd, for direct kernel boot (the lab: faster under TCG)
#   ngfw-vm.packages   the packages in the image, with versions
# Configure a VM with a NoCloud seed (deploy/vm/make-seed.sh): which NIC faces the VMs, which the uplink,
# and a policy or a control URL and token.
#
# Run as root (mmdebstrap's root mode; no loop devices or mounts: the disk is assembled from files).
# Needs deploy/packages-vm.txt and Debian's mirrors; downloaded packages are kept in ~/.cache/ngfw/apt.
#   --deb PATH     the ngfw package to install (default: the newest dist/ngfw_*.deb; built if there is none)
#   --size SIZE    disk size (default 2G; the file is sparse)
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$here"

deb=""
size=2G
while [ $# -gt 0 ]; do
    case "$1" in
        --deb) deb="$2"; shift 2 ;;
        --size) size="$2"; shift 2 ;;
        *) echo "deploy/vm/build-image.sh: unknown argument $1 (--deb PATH, --size SIZE)" >&2; exit 2 ;;
    esac
done
if [ "$(id -u)" -ne 0 ]; then
    echo "deploy/vm/build-image.sh: run as root (mmdebstrap builds the root file system as root)" >&2
    exit 1
fi
for tool in mmdebstrap mkfs.ext4 mkfs.vfat mcopy syslinux sfdisk; do
    command -v "$tool" >/dev/null || { echo "deploy/vm/build-image.sh: $tool is missing (deploy/packages-vm.txt)" >&2; exit 1; }
done
if [ -z "$deb" ]; then
    deb=$(ls -t dist/ngfw_*.deb 2>/dev/null | head -1 || true)
    if [ -z "$deb" ]; then
        bash deploy/build-packages.sh
        deb=$(ls -t dist/ngfw_*.deb | head -1)
    fi
fi
deb=$(readlink -f "$deb")
arch=$(dpkg --print-architecture)
mirror="${NGFW_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
security="${NGFW_DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/ngfw/apt/$arch"
out="$here/dist/vm"
work="$here/build/vm"
rootfs="$work/rootfs"
mkdir -p "$cache" "$out"
# the cache is for Debian's packages: an ngfw .deb of the same version left there would be installed
# instead of the one given
rm -f "$cache"/ngfw_*.deb
rm -rf "$work"
mkdir -p "$work"

packages=$(sed 's/#.*//' deploy/vm/packages-image.txt | tr -s ' \n' ',' | sed 's/^,//; s/,$//' | sed "s/@ARCH@/$arch/g")
started=$(date +%s)
echo "deploy/vm/build-image.sh: mmdebstrap bookworm ($packages) + $(basename "$deb")"
mmdebstrap --mode=root --variant=minbase --format=directory \
    --aptopt='APT::Install-Recommends "false"' \
    --include="$packages" \
    --skip=essential/unlink \
    --setup-hook="mkdir -p \"\$1/var/cache/apt/archives/\"" \
    --setup-hook="sync-in '$cache' /var/cache/apt/archives/" \
    --customize-hook="copy-in '$deb' /tmp" \
    --customize-hook="chroot \"\$1\" apt-get install -y -q --no-install-recommends /tmp/$(basename "$deb")" \
    --customize-hook="rm -f \"\$1/tmp/$(basename "$deb")\" \"\$1\"/var/cache/apt/archives/ngfw_*.deb" \
    --customize-hook="sync-out /var/cache/apt/archives '$cache'" \
    --customize-hook="'$here/deploy/vm/customize.sh' \"\$1\"" \
    bookworm "$rootfs" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main"

chroot "$rootfs" dpkg-query -W -f='${Package} ${Version}\n' > "$out/ngfw-vm.packages"
# the package in the image is the one given (same files, not an older build of the same version)
cmp -s "$here/deploy/systemd/ngfw-dataplane.service" "$rootfs/lib/systemd/system/ngfw-dataplane.service" || {
    echo "deploy/vm/build-image.sh: the image's ngfw-dataplane.service differs from deploy/systemd's: is $deb stale?" >&2
    exit 1
}
kernel=$(cd "$rootfs/boot" && ls vmlinuz-* | sort -V | tail -1)
initrd="initrd.img-${kernel#vmlinuz-}"
cp "$rootfs/boot/$kernel" "$out/vmlinuz"
cp "$rootfs/boot/$initrd" "$out/initrd.img"

# the disk, from files: partition 1 FAT /boot (syslinux reads it), partition 2 ext4 root
boot_mib=128
disk_bytes=$(numfmt --from=iec "$size")
root_offset=$(( (1 + boot_mib) * 1024 * 1024 ))
root_bytes=$(( disk_bytes - root_offset ))
mkfs.vfat -n NGFWBOOT -C "$work/boot.img" $(( boot_mib * 1024 )) >/dev/null
mcopy -s -i "$work/boot.img" "$rootfs/boot/"* ::/
syslinux --install "$work/boot.img"
rm -rf "$rootfs/boot/"*   # a mount point in the root file system
mkfs.ext4 -q -L ngfw-root -d "$rootfs" "$work/root.img" "$(( root_bytes / 1024 ))k"
img="$work/ngfw-vm.img"
truncate -s "$size" "$img"
sfdisk -q "$img" <<EOF
label: dos
start=1MiB, size=${boot_mib}MiB, type=c, bootable
start=$(( 1 + boot_mib ))MiB, type=83
EOF
dd if=/usr/lib/syslinux/mbr/mbr.bin of="$img" bs=440 count=1 conv=notrunc status=none
dd if="$work/boot.img" of="$img" bs=1M seek=1 conv=notrunc,sparse status=none
dd if="$work/root.img" of="$img" bs=1M seek=$(( 1 + boot_mib )) conv=notrunc,sparse status=none
mv "$img" "$out/ngfw-vm.img"
rm -rf "$work"
echo "deploy/vm/build-image.sh: $out/ngfw-vm.img ($(du -h "$out/ngfw-vm.img" | cut -f1) used of $size), kernel $kernel," \
     "$(wc -l < "$out/ngfw-vm.packages") packages, in $(( $(date +%s) - started )) s"
