#!/usr/bin/env bash
# Build benchmark: the same small change (write /etc/kiln-bench, check it; nothing installed)
# made to a base image three ways on this machine, under TCG, one guest at a time:
#   kiln build --no-tests (and with its test stage), Packer's QEMU builder (SSH, a shell
#   provisioner; needs an SSH server in the image), virt-customize --run-command.
# Kiln's builds start from a saved, booted guest (warm start, docs/drivers.md): the first build
# of a fresh Kiln home boots and saves it and is shown on its own line, the runs after it
# restore it; the same build with `warmStart: false` (a boot every time) is shown too.
# Also: Kiln's boot to agent ready (from its progress lines, time-stamped as they arrive), a bare
# direct-kernel boot of the same image to its login prompt (qemu-system-x86_64 -accel tcg), and
# `qemu-img convert -c` of Kiln's output with zlib against zstd. Medians of KILN_BENCH_RUNS
# (default 3) runs; the figures are not a test.
#
# Usage: bench/build-compare.sh [BUILD_DIR] [IMAGE...]
#   IMAGE: a catalog name (tiny, debian-12) or a folder holding image.json (as
#   scripts/prepare-images writes it). Default: debian-12 tiny.
# Environment: KILN_BENCH_RUNS (3), KILN_BENCH_CPUS (1), KILN_BENCH_MEMORY (512, MiB),
#   KILN_BENCH_SKIP (space-separated: kiln kiln-tests kiln-cold packer packer-bios virt-customize
#   bare compress),
#   KILN_HOME (where the catalog is; default /var/lib/kiln for root), KILN_BENCH_LOGS (a folder
#   to keep every run's log in).
# Packer (the Debian package `packer`) is installed with apt-get when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
top=$(pwd)
build=${1:-build}
shift || true
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(debian-12 tiny)
kiln=$top/$build/factory/kiln
[ -x "$kiln" ] || { echo "build-compare: $kiln is not built" >&2; exit 2; }
runs=${KILN_BENCH_RUNS:-3}
cpus=${KILN_BENCH_CPUS:-1}
memory=${KILN_BENCH_MEMORY:-512}
skip=" ${KILN_BENCH_SKIP:-} "
logs=${KILN_BENCH_LOGS:-}
[ -z "$logs" ] || mkdir -p "$logs"
home_default=/var/lib/kiln
[ "$(id -u)" -eq 0 ] || home_default=${XDG_DATA_HOME:-$HOME/.local/share}/kiln
catalog=${KILN_HOME:-$home_default}
text="written by kiln"

pgrep -x virtlogd >/dev/null || virtlogd -d
pgrep -x libvirtd >/dev/null || libvirtd -d
if ! command -v packer >/dev/null; then
    echo "build-compare: installing packer" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q packer >/dev/null
fi

work=$(mktemp -d /tmp/kiln-build-compare.XXXXXX)
qemu_pid=
cleanup() {
    [ -z "$qemu_pid" ] || kill "$qemu_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.2f", b - a }'; }
median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "-" }'; }
keep() { [ -z "$logs" ] || cp "$work/$1" "$logs/$2"; }
skipped() { [[ "$skip" == *" $1 "* ]]; }
json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2]) or "")' "$@"; }

# The component and recipe Kiln builds (the same commands the others run).
cat >"$work/write-file.yml" <<EOF
name: bench-write-file
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Write
        action: ExecuteBash
        inputs:
          commands:
            - echo '$text' > /etc/kiln-bench
  - name: validate
    steps:
      - name: Check
        action: ExecuteBash
        inputs:
          commands:
            - grep -qx '$text' /etc/kiln-bench
  - name: test
    steps:
      - name: Check
        action: ExecuteBash
        inputs:
          commands:
            - grep -qx '$text' /etc/kiln-bench
EOF
cat >"$work/infra.yml" <<EOF
driver: libvirt
libvirt:
  uri: qemu:///system
  accel: tcg
vcpus: $cpus
memoryMiB: $memory
EOF
sed 's/^  accel: tcg$/&\n  warmStart: false/' "$work/infra.yml" >"$work/infra-cold.yml"

# One kiln build: prints "TOTAL AGENT_READY FIRST_STEP"; the output image is left in $work/out.
# INFRA: infra.yml (default) or infra-cold.yml.
kiln_build() {
    local name=$1 tests=$2 home=$3 infra=${4:-infra.yml}
    rm -rf "$work/out"
    cat >"$work/dist.yml" <<EOF
distributions:
  - local:
      directory: $work/out
      formats: [qcow2]
EOF
    cat >"$work/recipe.yml" <<EOF
name: bench-$name
semanticVersion: 1.0.0
parentImage: $name
components:
  - path: write-file.yml
EOF
    local flags=()
    [ "$tests" = on ] || flags+=(--no-tests)
    local t0 rc=0
    t0=$(now)
    "$kiln" --home "$home" build --recipe "$work/recipe.yml" --infrastructure "$work/$infra" \
        --distribution "$work/dist.yml" "${flags[@]}" 2>&1 >/dev/null |
        while IFS= read -r line; do printf '%s %s\n' "$(now)" "$line"; done >"$work/kiln.log" ||
        rc=$?
    local total
    total=$(since "$t0")
    keep kiln.log "kiln-$name-tests-$tests-$(date +%s).log"
    if [ "$rc" -ne 0 ] || ! grep -q "] done$" "$work/kiln.log"; then
        echo "build-compare: kiln build failed:" >&2
        tail -5 "$work/kiln.log" >&2
        [ -z "$logs" ] || cp -r "$home/logs" "$logs/kiln-failed-$(date +%s)"
        return 1
    fi
    # From the launch stage (the build instance is being created) to the build stage (the
    # agent answered its hello), and to the first step (the agent's ready command found the
    # network online: jobs can start).
    local ready first
    ready=$(awk '$3 == "launch" && !l { l = $1 } $3 == "build" && !b { b = $1 }
                 END { printf "%.2f", b - l }' "$work/kiln.log")
    first=$(awk '$3 == "launch" && !l { l = $1 } $3 == "build" && / build\// && !f { f = $1 }
                 END { printf "%.2f", f - l }' "$work/kiln.log")
    echo "$total $ready $first"
}

# A copy of the base image Packer can log in to: root's authorized key injected, host keys.
packer_base() {
    local disk=$1 base=$2
    ssh-keygen -q -t ed25519 -N '' -f "$work/id_bench" <<<y >/dev/null
    qemu-img create -q -f qcow2 -F qcow2 -b "$disk" "$base"
    LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg \
        virt-customize -q -a "$base" --ssh-inject "root:file:$work/id_bench.pub" \
        --run-command 'ssh-keygen -A' >"$work/packer-base.log" 2>&1
}

packer_build() {
    local base=$1 kernel=$2 initrd=$3 cmdline=$4 direct=${5:-true} t0 rc=0
    rm -rf "$work/packer-out"
    t0=$(now)
    PACKER_CACHE_DIR=$work/packer-cache CHECKPOINT_DISABLE=1 \
        packer build -var "base=$base" -var "kernel=$kernel" -var "initrd=$initrd" \
        -var "cmdline=$cmdline" -var "key=$work/id_bench" -var "output=$work/packer-out" \
        -var "cpus=$cpus" -var "memory=$memory" -var "text=$text" -var "direct_boot=$direct" \
        "$top/bench/packer/build-compare.pkr.hcl" >"$work/packer.log" 2>&1 || rc=$?
    local total
    total=$(since "$t0")
    keep packer.log "packer-$(date +%s).log"
    if [ "$rc" -ne 0 ]; then
        echo "build-compare: packer failed:" >&2
        tail -15 "$work/packer.log" >&2
        return 1
    fi
    echo "$total"
}

virt_customize() {
    local disk=$1 t0
    rm -f "$work/vc.qcow2"
    qemu-img create -q -f qcow2 -F qcow2 -b "$disk" "$work/vc.qcow2"
    t0=$(now)
    LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg \
        virt-customize -q -a "$work/vc.qcow2" \
        --run-command "echo '$text' > /etc/kiln-bench && grep -qx '$text' /etc/kiln-bench" \
        >"$work/vc.log" 2>&1 || { cat "$work/vc.log" >&2; return 1; }
    since "$t0"
}

# A bare direct-kernel boot to the login prompt on the serial console (no libvirt, no agent
# wait; the tiny image's agent kept from starting with kiln.agent=0).
bare_boot() {
    local disk=$1 kernel=$2 initrd=$3 cmdline=$4 t0 t
    rm -f "$work/serial.log"
    t0=$(now)
    qemu-system-x86_64 -accel tcg -machine q35 -cpu max -smp "$cpus" -m "$memory" \
        -display none -monitor none -serial "file:$work/serial.log" -snapshot \
        -drive "file=$disk,if=virtio,format=qcow2" -kernel "$kernel" -initrd "$initrd" \
        -append "$cmdline" -nic user,model=virtio-net-pci 2>/dev/null &
    qemu_pid=$!
    t=
    for _ in $(seq 3000); do
        if grep -q "login:" "$work/serial.log" 2>/dev/null; then
            t=$(since "$t0")
            break
        fi
        sleep 0.1
    done
    kill "$qemu_pid" 2>/dev/null || true
    wait "$qemu_pid" 2>/dev/null || true
    qemu_pid=
    [ -n "$t" ] || { echo "build-compare: no login prompt in 300 s" >&2; return 1; }
    echo "$t"
}

compress() {
    local img=$1 type=$2 t0
    t0=$(now)
    if [ "$type" = zlib ]; then
        qemu-img convert -c -O qcow2 "$img" "$work/c.qcow2"
    else
        qemu-img convert -c -O qcow2 -o compression_type=zstd "$img" "$work/c.qcow2"
    fi
    echo "$(since "$t0") $(stat -c %s "$work/c.qcow2")"
}

printf 'build-compare: %s, %s vCPU, %s MiB, TCG, %s runs, %s\n' "$(uname -n)" "$cpus" "$memory" \
    "$runs" "$(date -u '+%Y-%m-%d %H:%M UTC')"
for image in "${images[@]}"; do
    if [ -f "$image/image.json" ]; then
        dir=$(realpath "$image")
    else
        dir=$(realpath "$catalog/images/$image/current")
    fi
    name=$(json "$dir/image.json" name)
    disk=$dir/$(json "$dir/image.json" disk)
    kernel=$dir/$(json "$dir/image.json" kernel)
    initrd=$dir/$(json "$dir/image.json" initrd)
    cmdline=$(json "$dir/image.json" cmdline)
    # Kiln builds in its own home whose catalog holds just this image.
    home=$work/home-$name
    mkdir -p "$home/images/$name"
    ln -sfn "$dir" "$home/images/$name/current"

    echo
    echo "== $name ($dir)"
    kf=0 ktf=0 k=() kr=() kf1=() kt=() p=() pb=() v=() b=() zl=() zs=() zls=() zss=()
    k0=() kc=() kcr=() kcf1=()
    if ! skipped kiln; then
        # The first build of this home boots the guest and saves it for the builds after it.
        total=
        read -r total _ _ < <(kiln_build "$name" off "$home") || true
        if [ -n "$total" ]; then k0+=("$total"); else kf=$((kf + 1)); fi
    fi
    for i in $(seq "$runs"); do
        if ! skipped kiln; then
            total=
            read -r total ready first < <(kiln_build "$name" off "$home") || true
            if [ -n "$total" ]; then
                k+=("$total")
                kr+=("$ready")
                kf1+=("$first")
            else
                kf=$((kf + 1))
            fi
            if [ ! -f "$work/kiln-output.qcow2" ] && [ -n "$total" ] && ! skipped compress; then
                out=$(ls "$work"/out/*.qcow2)
                cp "$out" "$work/kiln-output.qcow2"
            fi
        fi
        if ! skipped kiln-cold; then
            total=
            read -r total ready first < <(kiln_build "$name" off "$home" infra-cold.yml) || true
            if [ -n "$total" ]; then
                kc+=("$total") kcr+=("$ready") kcf1+=("$first")
            else
                kf=$((kf + 1))
            fi
        fi
        if ! skipped kiln-tests; then
            total=
            read -r total _ _ < <(kiln_build "$name" on "$home") || true
            if [ -n "$total" ]; then kt+=("$total"); else ktf=$((ktf + 1)); fi
        fi
        if ! skipped packer; then
            if [ "$name" = tiny ]; then
                [ "$i" -gt 1 ] || echo "packer: skipped (the tiny image has no SSH server)"
            else
                [ -f "$work/packer-base-$name.qcow2" ] ||
                    packer_base "$disk" "$work/packer-base-$name.qcow2"
                t=$(packer_build "$work/packer-base-$name.qcow2" "$kernel" "$initrd" "$cmdline")
                p+=("$t")
            fi
        fi
        # Packer as its users run it on a disk image: firmware (SeaBIOS) and the image's GRUB.
        if ! skipped packer-bios && [ "$name" != tiny ]; then
            [ -f "$work/packer-base-$name.qcow2" ] ||
                packer_base "$disk" "$work/packer-base-$name.qcow2"
            t=$(packer_build "$work/packer-base-$name.qcow2" "$kernel" "$initrd" "$cmdline" false)
            pb+=("$t")
        fi
        if ! skipped virt-customize; then
            if [ "$name" = tiny ]; then
                # Its inspection needs an OS it can name (/etc/os-release and the like).
                [ "$i" -gt 1 ] || echo "virt-customize: skipped (it finds no OS in the tiny image)"
            else
                t=$(virt_customize "$disk")
                v+=("$t")
            fi
        fi
        if ! skipped bare; then
            bc=$cmdline
            [ "$name" != tiny ] || bc="$cmdline kiln.agent=0"
            t=$(bare_boot "$disk" "$kernel" "$initrd" "$bc")
            b+=("$t")
        fi
        if [ -f "$work/kiln-output.qcow2" ] && ! skipped compress; then
            read -r t s < <(compress "$work/kiln-output.qcow2" zlib)
            zl+=("$t") zls+=("$s")
            read -r t s < <(compress "$work/kiln-output.qcow2" zstd)
            zs+=("$t") zss+=("$s")
        fi
    done
    line() { [ $# -gt 1 ] && printf '  %-44s %8s s  [%s]\n' "$1" "$(median "${@:2}")" "${*:2}"; }
    line "kiln build --no-tests (warm start)" "${k[@]}" || true
    line "kiln build --no-tests, first (saves guest)" "${k0[@]}" || true
    line "kiln build --no-tests, warmStart: false" "${kc[@]}" || true
    line "kiln build (test stage on)" "${kt[@]}" || true
    line "packer build (qemu, ssh, shell)" "${p[@]}" || true
    line "packer build, BIOS + GRUB boot" "${pb[@]}" || true
    line "virt-customize --run-command" "${v[@]}" || true
    line "kiln: launch to agent ready (hello)" "${kr[@]}" || true
    line "kiln: launch to first step (network up)" "${kf1[@]}" || true
    line "kiln, warmStart false: launch to hello" "${kcr[@]}" || true
    line "kiln, warmStart false: to first step" "${kcf1[@]}" || true
    line "bare direct-kernel boot to login:" "${b[@]}" || true
    line "qemu-img convert -c (zlib)" "${zl[@]}" || true
    line "qemu-img convert -c zstd" "${zs[@]}" || true
    [ "$kf$ktf" = 00 ] || echo "  failed kiln builds (left out): $kf --no-tests, $ktf with tests"
    echo "  ratios:"
    if [ ${#k[@]} -gt 0 ] && [ ${#p[@]} -gt 0 ]; then
        echo "    packer / kiln --no-tests:        $(ratio "$(median "${p[@]}")" "$(median "${k[@]}")")x (goal >= 3)"
    fi
    if [ ${#kc[@]} -gt 0 ] && [ ${#p[@]} -gt 0 ]; then
        echo "    packer / kiln, warmStart false:  $(ratio "$(median "${p[@]}")" "$(median "${kc[@]}")")x"
    fi
    if [ ${#k[@]} -gt 0 ] && [ ${#pb[@]} -gt 0 ]; then
        echo "    packer (BIOS+GRUB) / kiln:        $(ratio "$(median "${pb[@]}")" "$(median "${k[@]}")")x (goal >= 3)"
    fi
    if [ ${#k[@]} -gt 0 ] && [ ${#v[@]} -gt 0 ]; then
        echo "    virt-customize / kiln --no-tests: $(ratio "$(median "${v[@]}")" "$(median "${k[@]}")")x"
    fi
    if [ ${#kr[@]} -gt 0 ] && [ ${#b[@]} -gt 0 ]; then
        echo "    agent ready / bare boot:          $(ratio "$(median "${kr[@]}")" "$(median "${b[@]}")") (goal <= 0.6)"
    fi
    if [ ${#kcr[@]} -gt 0 ] && [ ${#b[@]} -gt 0 ]; then
        echo "    booted agent ready / bare boot:   $(ratio "$(median "${kcr[@]}")" "$(median "${b[@]}")") (warmStart false)"
    fi
    if [ ${#kf1[@]} -gt 0 ] && [ ${#b[@]} -gt 0 ]; then
        echo "    first step / bare boot:           $(ratio "$(median "${kf1[@]}")" "$(median "${b[@]}")") (jobs wait for network-online)"
    fi
    if [ ${#zl[@]} -gt 0 ]; then
        echo "    zlib / zstd compression time:     $(ratio "$(median "${zl[@]}")" "$(median "${zs[@]}")")x (sizes: zlib $(median "${zls[@]}") B, zstd $(median "${zss[@]}") B, input $(stat -c %s "$work/kiln-output.qcow2") B)"
    fi
    rm -f "$work/kiln-output.qcow2"
done
