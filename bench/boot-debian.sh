#!/usr/bin/env bash
# The debian-12 base image's figures, under TCG, one guest at a time:
#   build          seconds to build the image from scratch (mmdebstrap + libguestfs), in a
#                  scratch Kiln home (only with KILN_BENCH_BUILD=1: it takes minutes)
#   agent/direct   creating the domain (libvirt driver) to the agent's hello, direct kernel boot
#                  (what every build waits for)
#   agent/grub     the same booting the disk alone: SeaBIOS -> GRUB -> kernel
#   bare/direct    direct kernel boot to the serial login prompt, agent kept from starting
#   qemu/*         plain QEMU (images/debian-12/boot-test), from QEMU's start to "kiln: agent
#                  ready" on the console and to "login:", for direct, bios (GRUB) and uefi
#                  (OVMF + GRUB)
# Usage: bench/boot-debian.sh [BUILD_DIR]   (default build; needs BUILD_DIR/tests/kiln-bench-boot
# and the debian-12 image in $KILN_HOME, made by scripts/prepare-images)
# Environment: KILN_BENCH_RUNS (default 1; the median is printed), KILN_BENCH_BUILD=1.
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
bin=$build/tests/kiln-bench-boot
[ -x "$bin" ] || { echo "boot-debian: $bin is not built" >&2; exit 2; }
runs=${KILN_BENCH_RUNS:-1}
if [ -z "${KILN_HOME:-}" ]; then
    if [ "$(id -u)" -eq 0 ]; then KILN_HOME=/var/lib/kiln
    else KILN_HOME=${XDG_DATA_HOME:-$HOME/.local/share}/kiln; fi
fi
export KILN_HOME
dir=$(realpath "$KILN_HOME/images/debian-12/current")
disk=$dir/$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["disk"])' "$dir/image.json")
if [ "$(id -u)" -eq 0 ]; then
    pgrep -x virtlogd >/dev/null || virtlogd -d
    pgrep -x libvirtd >/dev/null || libvirtd -d
fi

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
row() { printf '%-14s %8s s   [%s]\n' "$1" "$(median "${@:2}")" "${*:2}"; }

echo "debian-12 $(basename "$dir"), TCG, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
if [ "${KILN_BENCH_BUILD:-0}" = 1 ]; then
    scratch=$(mktemp -d "${TMPDIR:-/var/tmp}/kiln-bench-home.XXXXXX")
    t0=$(date +%s)
    KILN_HOME=$scratch images/debian-12/build.sh "$build/guest-agent/kiln-agent" >/dev/null
    t1=$(date +%s)
    row build $((t1 - t0))
    rm -rf "$scratch"
fi
a_direct=() a_grub=() bare=() q_direct=() q_bios=() q_uefi=() l_direct=() l_bios=() l_uefi=()
for _ in $(seq "$runs"); do
    a_direct+=("$("$bin" debian-12 agent)")
    a_grub+=("$("$bin" "$disk" agent)")
    bare+=("$("$bin" debian-12 bare)")
    for m in direct bios uefi; do
        read -r _ _ ta _ tl < <(images/debian-12/boot-test "$m" "$dir")
        eval "q_$m+=($ta) l_$m+=($tl)"
    done
done
row agent/direct "${a_direct[@]}"
row agent/grub "${a_grub[@]}"
row bare/direct "${bare[@]}"
for m in direct bios uefi; do
    eval "row qemu/$m-agent \"\${q_$m[@]}\""
    eval "row qemu/$m-login \"\${l_$m[@]}\""
done
