#!/usr/bin/env bash
# mmdebstrap customize hook of deploy/vm/build-image.sh: turns the root file system ($1) into the ngfw VM.
set -euo pipefail
root="$1"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

echo ngfw > "$root/etc/hostname"
printf '127.0.0.1 localhost\n127.0.1.1 ngfw\n::1 localhost ip6-localhost ip6-loopback\n' > "$root/etc/hosts"
cat > "$root/etc/fstab" <<'FSTAB'
LABEL=ngfw-root  /      ext4  defaults,noatime,errors=remount-ro  0 1
LABEL=NGFWBOOT   /boot  vfat  defaults,umask=0077                 0 2
FSTAB

# networking: systemd-networkd (cloud-init renders its network-config for it); the wire's NICs carry
# no address, no link-local, no router solicitation: the VM sends nothing of its own on the wire
install -m 0644 "$here/05-ngfw-wire.network" "$root/etc/systemd/network/05-ngfw-wire.network"
chroot "$root" systemctl enable systemd-networkd.service >/dev/null 2>&1
# network-online.target: one configured link (a management NIC) is enough, and a VM without one
# must not wait two minutes for nothing
install -D -m 0644 "$here/wait-online.conf" \
    "$root/etc/systemd/system/systemd-networkd-wait-online.service.d/ngfw.conf"
install -m 0644 "$here/cloud.cfg" "$root/etc/cloud/cloud.cfg.d/90-ngfw.cfg"

# /run (tmpfs) holds the dataplane's session table (/run/ngfw: ~1 KiB per flow of flow-capacity, 266 MiB at
# the default): half the VM's memory for /run instead of Debian's tenth (only what is written uses memory)
printf 'RUNSIZE=50%%\n' > "$root/etc/initramfs-tools/conf.d/ngfw-runsize"
chroot "$root" update-initramfs -u -k all >/dev/null

# boot: syslinux on the FAT /boot; its configuration follows kernel installs and upgrades
install -m 0755 "$here/syslinux-update" "$root/etc/kernel/postinst.d/zz-ngfw-syslinux"
install -D -m 0755 "$here/syslinux-update" "$root/etc/initramfs/post-update.d/zz-ngfw-syslinux"
chroot "$root" /etc/kernel/postinst.d/zz-ngfw-syslinux

# first boot makes what must be unique per VM
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id" "$root"/etc/ssh/ssh_host_*

# the App-ID catalogue compiled once here (plain data, any CPU), so the first start of the dataplane
# does not validate every signature in a slow guest; Hyperscan databases depend on the CPU and are
# compiled on the VM's first start
install -d -o "$(chroot "$root" id -u ngfw)" -g "$(chroot "$root" id -g ngfw)" -m 0750 "$root/var/cache/ngfw"
chroot "$root" runuser -u ngfw -- env NGFW_CACHE_DIR=/var/cache/ngfw /usr/bin/ngfw apps > /dev/null

# the units as systemd on this image reads them
chroot "$root" systemd-analyze verify ngfw-dataplane.service ngfw-control.service
