#!/usr/bin/env bash
# Measures what restoring a saved, already booted guest would save a build, against booting it:
# the debian-12 base image booted directly (as Kiln boots it, 1 vCPU, 512 MiB, TCG) to the
# agent's hello and to its login prompt; then `savevm` of that running guest into its qcow2
# overlay; then, KILN_BENCH_RUNS times, a copy of that overlay started as a new libvirt domain
# with `-loadvm` to the agent's hello. Kiln does not restore saved guests yet (docs/benchmarks.md
# says what it would need); this script gives the figures. Not a test.
#
# Usage: bench/warm-restore.sh [IMAGE_DIR]   (default: the catalog's debian-12, current)
# Environment: KILN_HOME (default /var/lib/kiln), KILN_BENCH_RUNS (3), KILN_TEST_URI
# (default qemu:///system).
set -euo pipefail
home=${KILN_HOME:-/var/lib/kiln}
image=$(realpath "${1:-$home/images/debian-12/current}")
runs=${KILN_BENCH_RUNS:-3}
uri=${KILN_TEST_URI:-qemu:///system}
json() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$image/image.json" "$1"; }
work=$(mktemp -d /var/tmp/kiln-warm.XXXXXX)
domains=()
cleanup() {
    for d in "${domains[@]}"; do virsh -c "$uri" destroy "$d" >/dev/null 2>&1 || true; done
    rm -rf "$work"
}
trap cleanup EXIT
now() { date +%s.%N; }
since() { python3 -c 'import sys; print("%.2f" % (float(sys.argv[2]) - float(sys.argv[1])))' "$1" "$(now)"; }
median() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

# The agent's hello: a SYNC frame (docs/protocol.md), then wait for the hello that answers it.
cat >"$work/hello.py" <<'PY'
import json, socket, struct, sys, time, zlib
def frame(kind, seq, payload):
    h = b"KILN" + bytes([1, kind]) + struct.pack(">HII", 0, seq, len(payload))
    h += struct.pack(">I", zlib.crc32(payload) & 0xffffffff)
    return h + struct.pack(">I", zlib.crc32(h) & 0xffffffff) + payload
deadline = time.time() + float(sys.argv[2])
while True:
    try:
        s = socket.socket(socket.AF_UNIX)
        s.connect(sys.argv[1])
        break
    except OSError:
        if time.time() > deadline:
            sys.exit("no agent socket")
        time.sleep(0.05)
s.sendall(frame(1, 1, json.dumps({"nonce": "000000000000c0de"}).encode()))
s.settimeout(max(1.0, deadline - time.time()))
buf = b""
while b'"boot-id"' not in buf:
    d = s.recv(65536)
    if not d:
        sys.exit("agent closed the channel")
    buf += d
PY

domain_xml() { # NAME OVERLAY [loadvm]
    local ns="" cmd=""
    if [ "${3:-}" = loadvm ]; then
        ns=" xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'"
        cmd="<qemu:commandline><qemu:arg value='-loadvm'/><qemu:arg value='warm'/></qemu:commandline>"
    fi
    cat <<XML
<domain type='qemu'$ns>
  <name>$1</name>
  <memory unit='MiB'>512</memory>
  <vcpu>1</vcpu>
  <os>
    <type arch='x86_64' machine='pc'>hvm</type>
    <kernel>$image/$(json kernel)</kernel>
    <initrd>$image/$(json initrd)</initrd>
    <cmdline>$(json cmdline)</cmdline>
  </os>
  <features><acpi/><apic/></features>
  <clock offset='utc'/>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='qcow2' cache='unsafe'/>
      <source file='$2'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <controller type='virtio-serial' index='0'/>
    <interface type='user'><mac address='52:54:00:4b:1e:01'/><model type='virtio'/></interface>
    <serial type='file'><source path='$work/$1.console.log'/><target port='0'/></serial>
    <channel type='unix'>
      <source mode='bind' path='$work/$1.sock'/>
      <target type='virtio' name='org.kiln.agent.0'/>
    </channel>
    <rng model='virtio'><backend model='random'>/dev/urandom</backend></rng>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  $cmd
</domain>
XML
}

echo "warm-restore: $image, 1 vCPU, 512 MiB, TCG, $runs restores, $(date -u '+%Y-%m-%d %H:%M') UTC"
qemu-img create -q -f qcow2 -F qcow2 -b "$image/$(json disk)" "$work/warm.qcow2"
name=kiln-warm-$$-cold
domain_xml "$name" "$work/warm.qcow2" >"$work/cold.xml"
t0=$(now)
virsh -q -c "$uri" create "$work/cold.xml" >/dev/null
domains+=("$name")
python3 "$work/hello.py" "$work/$name.sock" 300
hello=$(since "$t0")
for _ in $(seq 1500); do grep -q "login:" "$work/$name.console.log" 2>/dev/null && break; sleep 0.2; done
grep -q "login:" "$work/$name.console.log" || { echo "warm-restore: no login prompt" >&2; exit 1; }
login=$(since "$t0")
t0=$(now)
virsh -c "$uri" qemu-monitor-command --hmp "$name" 'savevm warm' >/dev/null
save=$(since "$t0")
virsh -c "$uri" destroy "$name" >/dev/null
state=$(qemu-img snapshot -l "$work/warm.qcow2" | awk '$2 == "warm" { print $3, $4 }')

r=() c=()
for i in $(seq "$runs"); do
    name=kiln-warm-$$-$i
    domain_xml "$name" "$work/run-$i.qcow2" loadvm >"$work/run-$i.xml"
    t0=$(now)
    cp "$work/warm.qcow2" "$work/run-$i.qcow2"
    c+=("$(since "$t0")")
    virsh -q -c "$uri" create "$work/run-$i.xml" >/dev/null
    domains+=("$name")
    python3 "$work/hello.py" "$work/$name.sock" 60
    r+=("$(since "$t0")")
    virsh -c "$uri" destroy "$name" >/dev/null
done
printf '  %-46s %8s s\n' "cold direct boot to the agent's hello" "$hello"
printf '  %-46s %8s s\n' "cold direct boot to login: (network up)" "$login"
printf '  %-46s %8s s  (state %s)\n' "savevm of the booted guest" "$save" "$state"
printf '  %-46s %8s s  [%s]\n' "copy of the saved overlay" "$(median "${c[@]}")" "${c[*]}"
printf '  %-46s %8s s  [%s]\n' "copy + restore (-loadvm) to the agent's hello" "$(median "${r[@]}")" "${r[*]}"
