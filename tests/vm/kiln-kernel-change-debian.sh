#!/usr/bin/env bash
# A component replaces the kernel of the debian-12 base image (which Kiln boots by direct kernel
# boot), and the test stage must boot the new kernel, as the output image will through GRUB.
#
# The new kernel is this host's own Debian kernel (linux-image-amd64: "6.1.0-N-amd64", another
# flavour than the image's cloud-amd64, so `uname -r` tells them apart), with the modules the
# image's initramfs lists, served to the guest over HTTP by this script (QEMU's user network
# reaches the host's loopback at 10.0.2.2; there is no package mirror). The component installs
# it as a kernel package would: depmod, the old kernel and its modules removed, update-grub (its
# initramfs is made on the host with the image's initramfs-tools configuration: mkinitramfs in
# the guest takes 70 s under TCG). Its test phase checks `uname -r` and that GRUB booted the new file.
# Checks: the build is AVAILABLE (so the test phase passed in the guest), the manifest says
# "boot": firmware with the new kernelVersion and the parent's, and the test log shows the new
# kernel's uname.
# Usage: tests/vm/kiln-kernel-change-debian.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath "${1:?usage: kiln-kernel-change-debian.sh BUILD_DIR}")
kiln=$build/factory/kiln
catalog=${KILN_CATALOG_HOME:-/var/lib/kiln}
fail() { echo "FAIL: $*" >&2; exit 1; }

parent_json=$catalog/images/debian-12/current/image.json
[ -f "$parent_json" ] || fail "no debian-12 image in $catalog (run scripts/prepare-images)"
old=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["kernelVersion"])' \
    "$parent_json")
new=$(ls -1 /boot/vmlinuz-*-amd64 2>/dev/null | grep -v cloud | sed 's|.*/vmlinuz-||' | sort -V |
    tail -n 1)
[ -n "$new" ] && [ -d "/lib/modules/$new" ] \
    || fail "no host kernel with modules (install linux-image-amd64)"
[ "$new" != "$old" ] || fail "the host kernel $new is the image's own"

home=$(mktemp -d /var/tmp/kiln-kernel-change.XXXXXX)
server=
cleanup() {
    [ -z "$server" ] || kill "$server" 2>/dev/null || true
    rm -rf "$home"
}
trap cleanup EXIT
ln -s "$catalog/images" "$home/images"

# The kernel "package": /boot/vmlinuz, config, and the modules the image's initramfs-tools
# configuration lists (images/debian-12/files/rootfs/initramfs-modules) with their dependencies.
pkg=$home/www/root
mkdir -p "$pkg/boot" "$pkg/usr/lib/modules/$new"
cp "/boot/vmlinuz-$new" "/boot/config-$new" "$pkg/boot/"
mods=$(grep -v '^#' "$src/images/debian-12/files/rootfs/initramfs-modules")
for m in $mods virtio_rng crc32c_generic nls_cp437 nls_ascii; do
    modprobe -S "$new" --show-depends "$m" 2>/dev/null || true
done | awk '$1 == "insmod" { print $2 }' | sort -u | while read -r f; do
    rel=${f#/lib/modules/$new/}
    mkdir -p "$pkg/usr/lib/modules/$new/$(dirname "$rel")"
    cp "$f" "$pkg/usr/lib/modules/$new/$rel"
done
cp "/lib/modules/$new"/modules.{order,builtin,builtin.modinfo} "$pkg/usr/lib/modules/$new/"
# Its initramfs is made here, with the image's initramfs-tools configuration (MODULES=list, the
# same module list): update-initramfs in the guest takes 70 s under TCG, 7 s here.
conf=$home/initramfs-conf
mkdir -p "$conf/conf.d" "$conf/scripts" "$conf/hooks"
cp /etc/initramfs-tools/initramfs.conf "$conf/"
cp "$src/images/debian-12/files/rootfs/initramfs.conf" "$conf/conf.d/kiln.conf"
echo RESUME=none >"$conf/conf.d/resume"
cp "$src/images/debian-12/files/rootfs/initramfs-modules" "$conf/modules"
mkinitramfs -d "$conf" -o "$pkg/boot/initrd.img-$new" "$new" 2>/dev/null \
    || fail "mkinitramfs for $new"
tar -C "$pkg" -cf "$home/www/kernel.tar" boot usr
rm -rf "$pkg"

# A throw-away HTTP server on the loopback; it writes the port it got.
python3 - "$home/www" "$home/port" <<'PY' &
import functools, http.server, sys
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
httpd = http.server.HTTPServer(("127.0.0.1", 0), handler)
open(sys.argv[2] + ".tmp", "w").write(str(httpd.server_address[1]))
__import__("os").rename(sys.argv[2] + ".tmp", sys.argv[2])
httpd.serve_forever()
PY
server=$!
for _ in $(seq 50); do [ -s "$home/port" ] && break; sleep 0.1; done
port=$(cat "$home/port")

cat >"$home/new-kernel.yml" <<EOF
name: new-kernel
description: Replaces the image's kernel, as installing another linux-image package would.
schemaVersion: 1.0
parameters:
  - url:
      type: string
  - version:
      type: string
phases:
  - name: build
    steps:
      - name: Install
        action: ExecuteBash
        inputs:
          commands:
            - |
              set -e
              old=\$(uname -r)
              t0=\$(date +%s%N)
              lap() { echo "kiln-lap \$1 \$(( (\$(date +%s%N) - t0) / 1000000 )) ms"; }
              curl -fsS --retry 30 --retry-delay 1 --retry-connrefused --retry-all-errors \\
                -o /var/tmp/kernel.tar '{{ url }}'
              tar -C / --keep-directory-symlink -xf /var/tmp/kernel.tar
              rm -f /var/tmp/kernel.tar
              lap download
              depmod '{{ version }}'
              rm -f "/boot/vmlinuz-\$old" "/boot/initrd.img-\$old" "/boot/System.map-\$old" \\
                "/boot/config-\$old"
              rm -rf "/lib/modules/\$old"
              update-grub 2>&1 | tail -n 3
              lap update-grub
  - name: test
    steps:
      - name: NewKernelBooted
        action: ExecuteBash
        inputs:
          commands:
            - |
              echo "kiln-test-uname \$(uname -r)"
              echo "kiln-test-cmdline \$(cat /proc/cmdline)"
              test "\$(uname -r)" = '{{ version }}'
              grep -q 'BOOT_IMAGE=/boot/vmlinuz-{{ version }} ' /proc/cmdline
EOF
cat >"$home/recipe.yml" <<EOF
name: kernel-change
semanticVersion: 1.0.0
parentImage: debian-12
components:
  - path: new-kernel.yml
    parameters:
      - name: url
        value: [http://10.0.2.2:$port/kernel.tar]
      - name: version
        value: [$new]
EOF

start=$(date +%s)
"$kiln" --home "$home" build --recipe "$home/recipe.yml" || fail "kiln build exited $?"
echo "kiln build: $(( $(date +%s) - start )) s"

show=$("$kiln" --home "$home" image show kernel-change/1.0.0/1 --json)
manifest=$(python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["status"] == "AVAILABLE", d["status"]; print(d["manifest"])' <<<"$show") \
    || fail "the image is not AVAILABLE"
python3 - "$manifest" "$new" "$old" <<'PY' || fail "manifest $manifest"
import json, sys
m = json.load(open(sys.argv[1]))
boot = m["boot"]
print("manifest boot:", json.dumps(boot))
assert boot["mode"] == "firmware", boot
assert boot.get("kernel") is None, boot
assert boot["kernelVersion"] == sys.argv[2], boot
assert boot["parentKernelVersion"] == sys.argv[3], boot
assert boot["bootLoaderKernel"] == "/boot/vmlinuz-" + sys.argv[2], boot
PY
logs=$(dirname "$manifest")/log
# Where the component's time went (it dominates the test's).
grep -rhos 'kiln-lap [a-z-]* [0-9]* ms' "$logs/build" | sort -u -k3,3n || true
grep -rqs "kiln-test-uname $new" "$logs/test" || fail "the test phase's log has no uname $new"
echo "ok: the test stage booted $new through GRUB (the parent's direct kernel is $old)"
