#!/usr/bin/env bash
# Benchmark: a 1 GiB sparse raw image (~300 MiB allocated) uploaded with Kiln's EBS-direct
# uploader (kiln-aws ebs-upload) and with `/usr/bin/aws s3 cp` (multipart), both against the
# project's AWS simulator. Prints wall time, throughput, bytes sent per allocated byte and
# client CPU seconds per GiB of image.
#
# Usage: bench/ebs-upload.sh            (env: KILN_BUILD_DIR=build, BENCH_SIZE_MIB=1024,
#                                         BENCH_ALLOC_MIB=300, BENCH_PARALLEL=16)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${KILN_BUILD_DIR:-$root/build}
kiln_aws=$build/cloud/kiln-aws
sim=$root/tests/awssim/awssim.py
size_mib=${BENCH_SIZE_MIB:-1024}
alloc_mib=${BENCH_ALLOC_MIB:-300}
parallel=${BENCH_PARALLEL:-16}
aws=/usr/bin/aws   # explicitly: another "aws" may come first on PATH

[ -x "$kiln_aws" ] || { echo "bench: build kiln-aws first ($kiln_aws)" >&2; exit 1; }
[ -f "$sim" ] || { echo "bench: AWS simulator not found at $sim" >&2; exit 1; }
[ -x "$aws" ] || { echo "bench: $aws (Debian package awscli) is needed" >&2; exit 1; }

work=$(mktemp -d /tmp/kiln-bench.XXXXXX)
sim_pid=
cleanup() {
    [ -n "$sim_pid" ] && kill "$sim_pid" 2>/dev/null && wait "$sim_pid" 2>/dev/null
    rm -rf "$work"
}
trap cleanup EXIT

python3 "$sim" --host 127.0.0.1 --port 0 --ready-file "$work/port" --state-dir "$work/state" \
    --delay-scale 0 >"$work/sim.log" 2>&1 &
sim_pid=$!
for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
[ -s "$work/port" ] || { echo "bench: simulator did not start" >&2; cat "$work/sim.log" >&2; exit 1; }
ep="http://127.0.0.1:$(head -1 "$work/port")"

# The image: allocated 10 MiB runs of random data spread evenly over a sparse file.
img=$work/disk.raw
truncate -s "${size_mib}M" "$img"
chunks=$((alloc_mib / 10))
stride=$((size_mib / chunks))
for i in $(seq 0 $((chunks - 1))); do
    dd if=/dev/urandom of="$img" bs=1M count=10 seek=$((i * stride)) conv=notrunc status=none
done
alloc_bytes=$(du --block-size=1 "$img" | cut -f1)
size_bytes=$(stat -c %s "$img")

export AWS_ACCESS_KEY_ID=AKIDKILNTEST AWS_SECRET_ACCESS_KEY=kiln-test-secret
export AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
export AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_PAGER=

# Kiln: EBS direct.
/usr/bin/time -f "%e %U %S" -o "$work/kiln.time" \
    "$kiln_aws" --endpoint-url "$ep" --parallel "$parallel" ebs-upload "$img" >"$work/kiln.json"
# Byte-for-byte check of what landed in the snapshot (read back through the same API).
snap=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["snapshot_id"])' "$work/kiln.json")
for _ in $(seq 100); do
    st=$("$aws" --endpoint-url "$ep" ec2 describe-snapshots --snapshot-ids "$snap" \
         --query 'Snapshots[0].State' --output text)
    [ "$st" = completed ] && break; sleep 0.2
done
"$kiln_aws" --endpoint-url "$ep" ebs-download "$snap" "$work/back.raw" >/dev/null
# The volume is the image rounded up to GiB: compare the image's length, the rest must be zero.
cmp -s -n "$size_bytes" "$img" "$work/back.raw" || { echo "bench: snapshot differs from the image" >&2; exit 1; }
vol_bytes=$(stat -c %s "$work/back.raw")
if [ "$vol_bytes" -gt "$size_bytes" ]; then
    cmp -s -n $((vol_bytes - size_bytes)) -i "$size_bytes:0" "$work/back.raw" /dev/zero ||
        { echo "bench: snapshot has data beyond the image" >&2; exit 1; }
fi
rm -f "$work/back.raw"

# AWS CLI: S3 multipart upload of the same file (the ImportSnapshot route's first half).
"$aws" --endpoint-url "$ep" s3 mb s3://kiln-bench >/dev/null
/usr/bin/time -f "%e %U %S" -o "$work/aws.time" \
    "$aws" --endpoint-url "$ep" s3 cp "$img" s3://kiln-bench/disk.raw --only-show-errors
aws_sent=$("$aws" --endpoint-url "$ep" s3api head-object --bucket kiln-bench --key disk.raw \
           --query ContentLength --output text)

python3 - "$work" "$size_bytes" "$alloc_bytes" "$aws_sent" "$parallel" <<'PY'
import json, sys
work, size, alloc, aws_sent, par = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5]
k = json.load(open(work + "/kiln.json"))
def t(name):
    e, u, s = open(work + "/" + name).read().split()[-3:]
    return float(e), float(u) + float(s)
ke, kc = t("kiln.time")
ae, ac = t("aws.time")
gib = size / 2**30
print("image: %.0f MiB, %.0f MiB allocated; Kiln sent %d of %d blocks (%d all-zero skipped), "
      "%d retries, %d in flight" % (size / 2**20, alloc / 2**20, k["blocks_sent"],
      k["blocks_total"], k["blocks_zero"], k["retries"], int(par)))
print("%-28s %9s %14s %14s %16s %14s" % ("uploader", "seconds", "image MiB/s", "alloc MiB/s",
                                         "sent/allocated", "CPU s/GiB"))
for name, e, c, sent in (("kiln ebs-upload (EBS direct)", ke, kc, k["bytes_sent"]),
                         ("aws s3 cp (multipart)", ae, ac, aws_sent)):
    print("%-28s %9.2f %14.1f %14.1f %16.3f %14.3f" % (name, e, size / 2**20 / e,
          alloc / 2**20 / e, sent / alloc, c / gib))
PY
