#!/usr/bin/env bash
# Build Kiln's debian-12 base image from Debian packages, reproducibly:
#   1. mmdebstrap: a minimal Debian 12 (systemd, linux-image-cloud-amd64, GRUB for BIOS and UEFI,
#      the agent's shared libraries as Debian packages) as a tarball; cached by a digest of the
#      package list, the host's apt sources and files/rootfs/.
#   2. libguestfs (guestfish, direct backend, TCG): a GPT disk (BIOS boot, EFI system and root
#      partitions), the tarball, kiln-agent and its systemd unit (files/disk/), grub-install for
#      i386-pc and x86_64-efi (removable path), grub.cfg with the serial console.
# For direct kernel boot, the kernel (uncompressed when possible) is taken out of the tarball and
# a small initramfs is made (busybox, the guest kernel's virtio modules, direct-init); the
# general initramfs-tools one stays in /boot for booting through GRUB.
#
# Usage: images/debian-12/build.sh AGENT_BINARY
# Output: $KILN_HOME/images/debian-12/<digest>/{disk.qcow2,vmlinux|vmlinuz,initrd.img,image.json}
# and the symbolic link $KILN_HOME/images/debian-12/current. KILN_FORCE=1 rebuilds.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
agent=${1:?usage: build.sh AGENT_BINARY}
[ -x "$agent" ] || { echo "debian-12: no agent binary at $agent" >&2; exit 1; }

if [ -z "${KILN_HOME:-}" ]; then
    if [ "$(id -u)" -eq 0 ]; then KILN_HOME=/var/lib/kiln
    else KILN_HOME=${XDG_DATA_HOME:-$HOME/.local/share}/kiln; fi
fi
export LIBGUESTFS_BACKEND=${LIBGUESTFS_BACKEND:-direct}
# No working nested KVM is assumed: libguestfs's appliance then runs under TCG.
[ -n "${KILN_GUESTFS_KVM:-}" ] || export LIBGUESTFS_BACKEND_SETTINGS=force_tcg
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
suite=bookworm
root_uuid=4b1e0000-0000-4000-8000-0000000000d1

# The agent's shared libraries, as the Debian packages that ship them.
libpkgs=$(ldd "$agent" | awk '/=> \// { print $3 }' | while read -r lib; do
    dpkg -S "$(realpath "$lib")" 2>/dev/null || dpkg -S "$lib" 2>/dev/null || true
done | cut -d: -f1 | LC_ALL=C sort -u | tr '\n' ',' | sed 's/,$//')
packages="systemd-sysv,udev,dbus,linux-image-cloud-amd64,initramfs-tools,zstd,grub-pc-bin"
packages+=",grub-efi-amd64-bin,grub2-common,e2fsprogs,dosfstools,iproute2,systemd-resolved"
packages+=",ca-certificates,curl,less,procps,sudo,bash"
packages+=",openssh-server"
[ -z "$libpkgs" ] || packages+=",$libpkgs"

sources=$(cat /etc/apt/sources.list /etc/apt/sources.list.d/*.sources 2>/dev/null || true)
# Stage 1 is keyed by what goes into the tarball only; the final digest by everything.
rootfs_digest=$( { echo "kiln-debian-12-rootfs-2 $suite $packages"; echo "$sources";
    (cd "$here/files/rootfs" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    } | sha256sum | cut -c1-16)
digest=$( { echo "$rootfs_digest"; sha256sum "$agent" "$(command -v busybox)" | cut -c1-64
    (cd "$here" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum)
    sha256sum "$here/../extract-vmlinux" | cut -c1-64; } | sha256sum | cut -c1-16)

base=$KILN_HOME/images/debian-12
out=$base/$digest
# One build at a time per image name (several checkouts may share the Kiln home).
mkdir -p "$base"
exec 9>"$base/.lock"
flock 9
if [ -f "$out/image.json" ] && [ "${KILN_FORCE:-0}" != 1 ]; then
    ln -sfn "$digest" "$base/current"
    echo "debian-12: up to date ($out)"
    exit 0
fi
mkdir -p "$base/rootfs"
tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-debian.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
start=$(date +%s)

# --- 1. root file system ---------------------------------------------------------------------
tarball=$base/rootfs/$rootfs_digest.tar
if [ ! -f "$tarball" ] || [ "${KILN_FORCE:-0}" = 1 ]; then
    echo "debian-12: mmdebstrap $suite"
    mmdebstrap --mode=root --variant=minbase --format=tar --include="$packages" \
        --customize-hook='mkdir -p "$1/etc/initramfs-tools/conf.d"' \
        --customize-hook="upload $here/files/rootfs/initramfs.conf /etc/initramfs-tools/conf.d/kiln.conf" \
        --customize-hook="upload $here/files/rootfs/initramfs-modules /etc/initramfs-tools/modules" \
        --customize-hook="upload $here/files/rootfs/grub /etc/default/grub" \
        --customize-hook="upload $here/files/rootfs/20-wired.network /etc/systemd/network/20-wired.network" \
        --customize-hook='chroot "$1" update-initramfs -u -k all' \
        --customize-hook='chroot "$1" systemctl enable systemd-networkd systemd-resolved' \
        --customize-hook='chroot "$1" passwd -l root' \
        --customize-hook='echo kiln-debian > "$1/etc/hostname"' \
        --customize-hook='printf "LABEL=kiln-root / ext4 errors=remount-ro 0 1\nLABEL=KILN-ESP /boot/efi vfat umask=0077,nofail 0 2\n" > "$1/etc/fstab"' \
        --customize-hook='mkdir -p "$1/boot/efi" "$1/var/lib/kiln"' \
        --customize-hook='rm -f "$1/etc/machine-id"; : > "$1/etc/machine-id"' \
        --hook-directory="$here/files/rootfs/hooks" \
        "$suite" "$tarball.tmp"
    mv "$tarball.tmp" "$tarball"
fi
t_rootfs=$(date +%s)

# --- 2. disk ---------------------------------------------------------------------------------
mkdir -p "$tmp/boot"
# Debian 12 merges /usr: the modules are in usr/lib/modules (modprobe -d looks in lib/modules).
tar -C "$tmp/boot" -xf "$tarball" --wildcards './boot/vmlinuz-*' './usr/lib/modules/*'
ln -sfn usr/lib "$tmp/boot/lib"
kernel=$(ls "$tmp"/boot/boot/vmlinuz-* | head -1)
kver=${kernel##*/vmlinuz-}

# The initramfs for direct kernel boot: busybox, the guest kernel's virtio modules, direct-init.
modules=(virtio_pci virtio_blk virtio_console virtio_net virtio_rng crc32c_generic ext4)
ird=$tmp/initramfs
mkdir -p "$ird"/{bin,dev,proc,sys,newroot,lib/modules}
cp "$(command -v busybox)" "$ird/bin/busybox"
ln -s busybox "$ird/bin/sh"
cp "$here/direct-init" "$ird/init"
: >"$ird/lib/modules/load.order"
for m in "${modules[@]}"; do
    modprobe -d "$tmp/boot" -S "$kver" --show-depends "$m" | awk '$1 == "insmod" { print $2 }'
done | awk '!seen[$0]++' | while read -r p; do
    cp "$p" "$ird/lib/modules/"
    basename "$p" >>"$ird/lib/modules/load.order"
done
(cd "$ird" && find . | LC_ALL=C sort | cpio -o -H newc --quiet --reproducible) >"$tmp/initrd.img"

qemu-img create -q -f qcow2 "$tmp/disk.qcow2" 4G
echo "debian-12: partitions, file systems, agent, GRUB (libguestfs)"
guestfish --rw -a "$tmp/disk.qcow2" <<GF
run
part-init /dev/sda gpt
part-add /dev/sda p 2048 4095
part-set-gpt-type /dev/sda 1 21686148-6449-6E6F-744E-656564454649
part-add /dev/sda p 4096 208895
part-set-gpt-type /dev/sda 2 C12A7328-F81F-11D2-BA4B-00A0C93EC93B
part-add /dev/sda p 208896 -34
mkfs vfat /dev/sda2 label:KILN-ESP
mkfs ext4 /dev/sda3 label:kiln-root
set-uuid /dev/sda3 $root_uuid
mount /dev/sda3 /
tar-in $tarball / xattrs:true
sh "mkfs.fat -i 4B1E00D2 -n KILN-ESP /dev/sda2 >/dev/null"
mount /dev/sda2 /boot/efi
upload $agent /usr/bin/kiln-agent
chmod 0755 /usr/bin/kiln-agent
mkdir-p /usr/lib/kiln
upload $here/files/disk/agent-run /usr/lib/kiln/agent-run
chmod 0755 /usr/lib/kiln/agent-run
upload $here/files/disk/kiln-agent.service /etc/systemd/system/kiln-agent.service
upload $here/files/disk/60-kiln-agent.rules /etc/udev/rules.d/60-kiln-agent.rules
mkdir-p /etc/systemd/system/sysinit.target.wants
ln-sf /etc/systemd/system/kiln-agent.service /etc/systemd/system/sysinit.target.wants/kiln-agent.service
sh "for i in 1 2 3 4 5; do grub-install --target=i386-pc /dev/sda && exit 0; sleep 3; done; exit 1"
sh "for i in 1 2 3; do grub-install --target=x86_64-efi --efi-directory=/boot/efi --removable --no-nvram --no-uefi-secure-boot && exit 0; sleep 3; done; exit 1"
command "update-grub"
umount-all
GF
t_disk=$(date +%s)

mkdir -p "$out.tmp"
mv "$tmp/disk.qcow2" "$out.tmp/disk.qcow2"
mv "$tmp/initrd.img" "$out.tmp/initrd.img"
kernel_file=vmlinuz
"$here/../extract-vmlinux" "$kernel" "$out.tmp/vmlinux" && kernel_file=vmlinux || cp "$kernel" "$out.tmp/vmlinuz"
cmdline="root=UUID=$root_uuid ro console=ttyS0,115200 quiet"
cat >"$out.tmp/image.json" <<JSON
{
  "name": "debian-12",
  "digest": "$digest",
  "format": "qcow2",
  "disk": "disk.qcow2",
  "kernel": "$kernel_file",
  "initrd": "initrd.img",
  "cmdline": "$cmdline",
  "kernelVersion": "$kver",
  "rootfs": "$rootfs_digest",
  "buildSeconds": { "rootfs": $((t_rootfs - start)), "disk": $((t_disk - t_rootfs)) }
}
JSON
chmod 0755 "$out.tmp"
chmod 0644 "$out.tmp"/*
rm -rf "$out"
mv "$out.tmp" "$out"
ln -sfn "$digest" "$base/current"
echo "debian-12: built $out in $(( $(date +%s) - start )) s"
