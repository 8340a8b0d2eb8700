#!/usr/bin/env bash
# Build a tiny initramfs that boots the host kernel straight into "kiln-agent serve" on the
# virtio-serial port org.kiln.agent.0: busybox-static, bash, the agent and their libraries, and
# the virtio and ext4 modules of the given kernel version; an ext4 disk on /dev/vda, when present,
# holds /var/lib/kiln-agent so that a reboot keeps the agent's state.
# Usage: tests/vm/agent-initramfs.sh KILN_AGENT KERNEL_VERSION OUT.cpio.gz
set -euo pipefail
agent=$1 kver=$2 out=$3
root=$(mktemp -d "${TMPDIR:-/tmp}/kiln-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT

mkdir -p "$root"/{bin,sbin,usr/bin,lib/modules,proc,sys,dev,tmp,run,var/lib/kiln-agent,etc}
cp /bin/busybox "$root/bin/busybox"
for app in sh mount insmod mkdir ln cat sleep poweroff echo ls basename touch; do
    ln -s busybox "$root/bin/$app"
done
copy_with_libs() {
    local bin=$1 dest=$2
    cp "$bin" "$root/$dest"
    ldd "$bin" | grep -o '/[^ ]*' | while read -r lib; do
        mkdir -p "$root/$(dirname "$lib")"
        cp -L "$lib" "$root/$lib"
    done
}
copy_with_libs "$agent" usr/bin/kiln-agent
copy_with_libs /bin/bash usr/bin/bash
modules="virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console
         virtio_blk crc16 crc32c_generic mbcache jbd2 ext4"
for m in $modules; do
    f=$(find "/lib/modules/$kver/kernel" -name "$m.ko*" | head -1)
    [ -n "$f" ] || { echo "module $m not found for $kver" >&2; exit 1; }
    case $f in
        *.xz) xz -dc "$f" >"$root/lib/modules/$m.ko" ;;
        *.zst) zstd -qdc "$f" >"$root/lib/modules/$m.ko" ;;
        *) cp "$f" "$root/lib/modules/$m.ko" ;;
    esac
done
cat >"$root/init" <<'INIT'
#!/bin/sh
export PATH=/usr/bin:/bin
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev
for m in virtio_ring virtio virtio_pci_modern_dev virtio_pci_legacy_dev virtio_pci virtio_console \
         virtio_blk crc16 crc32c_generic mbcache jbd2 ext4; do
    insmod /lib/modules/$m.ko
done
# A disk, when there is one, keeps the agent's state across reboots.
i=0
while [ $i -lt 20 ] && [ ! -e /dev/vda ] && [ -e /sys/bus/virtio/drivers/virtio_blk ]; do
    sleep 0.1
    i=$((i + 1))
done
if [ -e /dev/vda ]; then
    mount -t ext4 /dev/vda /var/lib/kiln-agent && echo "kiln-test: state on /dev/vda"
fi
# No udev: make the /dev/virtio-ports/<name> link ourselves.
i=0
while [ $i -lt 100 ] && [ ! -e /dev/virtio-ports/org.kiln.agent.0 ]; do
    for d in /sys/class/virtio-ports/*; do
        if [ "$(cat $d/name 2>/dev/null)" = org.kiln.agent.0 ]; then
            mkdir -p /dev/virtio-ports
            ln -sf /dev/$(basename $d) /dev/virtio-ports/org.kiln.agent.0
        fi
    done
    sleep 0.1
    i=$((i + 1))
done
echo "kiln-test: agent starting"
kiln-agent serve --port /dev/virtio-ports/org.kiln.agent.0
echo "kiln-test: agent exited with $?"
poweroff -f
INIT
chmod 755 "$root/init"
(cd "$root" && find . | cpio -o -H newc --quiet | gzip -1) >"$out"
