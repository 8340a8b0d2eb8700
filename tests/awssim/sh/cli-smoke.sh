#!/bin/sh
# Shell-level smoke test run under with-sim.sh (see tests/cmake/awssim.cmake): the exported
# environment is enough for /usr/bin/aws, and the control API reports what happened.
set -eu
aws=/usr/bin/aws
ep=${AWSSIM_ENDPOINT:?run me under tests/awssim/with-sim.sh}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
$aws --endpoint-url "$ep" sts get-caller-identity --query Account --output text | grep -qx 123456789012
$aws --endpoint-url "$ep" s3 mb s3://kiln-sh >/dev/null
printf 'kiln shell test\n' > "$tmp/in"
$aws --endpoint-url "$ep" s3 cp "$tmp/in" s3://kiln-sh/in --only-show-errors
$aws --endpoint-url "$ep" s3 cp s3://kiln-sh/in "$tmp/out" --only-show-errors
cmp "$tmp/in" "$tmp/out"
n=$($aws --endpoint-url "$ep" ec2 describe-regions --query 'length(Regions)' --output text)
[ "$n" -ge 10 ]
# A wrong secret must fail with the CLI's SignatureDoesNotMatch message and exit code 254.
set +e
AWS_SECRET_ACCESS_KEY=wrong $aws --endpoint-url "$ep" s3 ls 2>"$tmp/err"
rc=$?
set -e
[ "$rc" -eq 254 ]
grep -q "SignatureDoesNotMatch" "$tmp/err"
curl -sf "$ep/_kiln/state" > "$tmp/state.json"
python3 - "$tmp/state.json" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
assert d["s3"]["kiln-sh"]["objects"]["in"]["size"] == 16, d["s3"]
assert d["requests"]["s3:PutObject"] == 1, d["requests"]
assert d["auth_failures"]["SignatureDoesNotMatch"] >= 1, d["auth_failures"]
PY
echo "cli-smoke: ok"
