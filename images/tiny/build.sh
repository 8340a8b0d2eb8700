#!/usr/bin/env bash
# Build Kiln's tiny test image: the host's Debian kernel (direct kernel boot), a small initramfs
# that loads the virtio/ext4 modules and switches to the root disk, and an ext4 root disk
# (qcow2) holding busybox, bash and kiln-agent with their shared libraries.
#
# Usage: images/tiny/build.sh AGENT_BINARY
# Output: $KILN_HOME/images/tiny/<digest>/{disk.qcow2,vmlinuz,initrd.img,image.json}, and the
# symbolic link $KILN_HOME/images/tiny/current to it. The digest covers this definition (the
# files under images/tiny/), the kernel version and file, busybox, bash and the agent binary, so
# the image is rebuilt only when one of those changes. KILN_FORCE=1 rebuilds anyway.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
agent=${1:?usage: build.sh AGENT_BINARY}
[ -x "$agent" ] || { echo "tiny: no agent binary at $agent" >&2; exit 1; }

if [ -z "${KILN_HOME:-}" ]; then
    if [ "$(id -u)" -eq 0 ]; then KILN_HOME=/var/lib/kiln
    else KILN_HOME=${XDG_DATA_HOME:-$HOME/.local/share}/kiln; fi
fi

# The kernel of the installed linux-image-amd64 package, not the running one (a container or
# CI host may run any kernel).
kver=$(dpkg-query -W -f='${Depends}' linux-image-amd64 | sed -n 's/^linux-image-\([^ ,]*\).*/\1/p')
[ -n "$kver" ] || { echo "tiny: linux-image-amd64 is not installed" >&2; exit 1; }
kernel=/boot/vmlinuz-$kver
moddir=/lib/modules/$kver
[ -r "$kernel" ] && [ -d "$moddir" ] || { echo "tiny: missing $kernel or $moddir" >&2; exit 1; }
busybox=$(command -v busybox)
bash_bin=/bin/bash

# Modules the guest needs, in load order with their dependencies (modprobe resolves them).
modules=(virtio_pci virtio_blk virtio_console virtio_net virtio_rng crc32c_generic ext4 button evdev)
mapfile -t modpaths < <(for m in "${modules[@]}"; do
    modprobe -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
done | awk '!seen[$0]++')

digest=$( {
    echo "kiln-tiny-1 $kver"
    (cd "$here" && find . -type f | LC_ALL=C sort | xargs sha256sum)
    sha256sum "$here/../extract-vmlinux" "$kernel" "$busybox" "$bash_bin" "$agent" "${modpaths[@]}" | awk '{ print $1 }'
    # The agent's and bash's shared libraries are part of the image too.
    ldd "$agent" "$bash_bin" | awk '/=> \// { print $3 }' | LC_ALL=C sort -u | xargs sha256sum \
        | awk '{ print $1 }'
} | sha256sum | cut -c1-16)

out=$KILN_HOME/images/tiny/$digest
# One build at a time per image name (several checkouts may share the Kiln home).
mkdir -p "$KILN_HOME/images/tiny"
exec 9>"$KILN_HOME/images/tiny/.lock"
flock 9
if [ -f "$out/image.json" ] && [ "${KILN_FORCE:-0}" != 1 ]; then
    ln -sfn "$digest" "$KILN_HOME/images/tiny/current"
    echo "tiny: up to date ($out)"
    exit 0
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-tiny.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

# --- initramfs: busybox, the modules, /init --------------------------------------------------
ird=$tmp/initramfs
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$busybox" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
cp "$here/initramfs-init" "$ird/init"
: >"$ird/lib/modules/load.order"
for p in "${modpaths[@]}"; do
    cp "$p" "$ird/lib/modules/"
    basename "$p" >>"$ird/lib/modules/load.order"
done
# Uncompressed: the kernel unpacks it faster than it would inflate it under TCG.
(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible) >"$tmp/initrd.img"

# --- root file system ------------------------------------------------------------------------
root=$tmp/root
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,usr/lib/kiln,lib,lib64,dev,proc,sys,run,tmp,root,etc,var/log,var/lib/kiln}
chmod 1777 "$root/tmp"
cp -a "$here/rootfs/." "$root/"
cp "$busybox" "$root/bin/busybox"
for applet in $("$busybox" --list-full); do
    [ -e "$root/$applet" ] || ln -s /bin/busybox "$root/$applet"
done
cp "$bash_bin" "$root/bin/bash"
cp "$agent" "$root/usr/bin/kiln-agent"
# The dynamic loader and every library ldd finds, at the same paths as on the host.
for lib in $(ldd "$agent" "$bash_bin" | awk '/=> \// { print $3 } /^\t\/[^ ]+ \(/ { print $1 }' \
             | sort -u); do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
done
mkdir -p "$root/lib/modules/$kver"
echo "$digest" >"$root/etc/kiln-image"

# ext4 from a directory: no root mount, no loop device. Fixed UUID and timestamps keep the
# output stable for the same inputs.
export E2FSPROGS_FAKE_TIME=1700000000
mkfs.ext4 -q -F -L kiln-root -U 4b1e0000-0000-4000-8000-000000000001 \
    -E hash_seed=4b1e0000-0000-4000-8000-000000000002 -d "$root" "$tmp/root.img" 512M
qemu-img convert -q -f raw -O qcow2 "$tmp/root.img" "$tmp/disk.qcow2"

cmdline="console=ttyS0,115200 quiet loglevel=3 panic=-1 kiln.root=/dev/vda"
mkdir -p "$out.tmp"
mv "$tmp/disk.qcow2" "$tmp/initrd.img" "$out.tmp/"
kernel_file=vmlinuz
"$here/../extract-vmlinux" "$kernel" "$out.tmp/vmlinux" && kernel_file=vmlinux || cp "$kernel" "$out.tmp/vmlinuz"
cat >"$out.tmp/image.json" <<JSON
{
  "name": "tiny",
  "digest": "$digest",
  "format": "qcow2",
  "disk": "disk.qcow2",
  "kernel": "$kernel_file",
  "initrd": "initrd.img",
  "cmdline": "$cmdline",
  "kernelVersion": "$kver"
}
JSON
chmod 0755 "$out.tmp"
chmod 0644 "$out.tmp"/*
rm -rf "$out"
mv "$out.tmp" "$out"
ln -sfn "$digest" "$KILN_HOME/images/tiny/current"
echo "tiny: built $out"
