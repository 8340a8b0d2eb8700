#!/bin/bash
# S3Download / S3Upload end to end: the real kiln-agent runs component documents against the
# AWS simulator (run under tests/awssim/with-sim.sh), and /usr/bin/aws checks the result.
#   s3-modules-test.sh KILN_AGENT CASE
set -euo pipefail
agent=$1
case_name=$2
here=$(cd "$(dirname "$0")" && pwd)
: "${AWSSIM_ENDPOINT:?run under tests/awssim/with-sim.sh}"
aws() { /usr/bin/aws --endpoint-url "$AWSSIM_ENDPOINT" "$@"; }
work=$(mktemp -d "${TMPDIR:-/tmp}/kiln-s3mod.XXXXXX")
trap 'rm -rf "$work"' EXIT
export AWS_ENDPOINT_URL=$AWSSIM_ENDPOINT
bucket=kiln-s3-modules
aws s3 mb "s3://$bucket" >/dev/null

fail() { echo "FAIL: $*" >&2; exit 1; }

# doc NAME ACTION INPUTS-YAML: a one-step component document.
doc() {
    { printf 'name: %s\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n' "$1"
      printf '      - name: Step\n        action: %s\n        inputs:\n' "$2"
      printf '%s\n' "$3"; } > "$work/$1.yml"
}
# run NAME: run it; the JSON summary goes to $work/NAME.json, progress to $work/NAME.err.
run() {
    local rc=0
    "$agent" run --documents "$work/$1.yml" --log-directory "$work/logs" \
        >"$work/$1.json" 2>"$work/$1.err" || rc=$?
    cat "$work/$1.err" >&2
    return $rc
}
status() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' \
    "$work/$1.json" "$2"; }
random_file() { head -c "$2" /dev/urandom > "$1"; }

case $case_name in
download-one)
    random_file "$work/src.bin" 300000
    aws s3 cp "$work/src.bin" "s3://$bucket/dir/one.bin" >/dev/null
    mkdir "$work/out"
    doc dl S3Download "          - source: s3://$bucket/dir/one.bin
            destination: $work/out/renamed.bin
          - source: s3://$bucket/dir/one.bin
            destination: $work/out/"
    run dl || fail "S3Download failed"
    [ "$(status dl status)" = success ] || fail "status $(status dl status)"
    cmp "$work/src.bin" "$work/out/renamed.bin"
    cmp "$work/src.bin" "$work/out/one.bin"
    [ "$(ls -A "$work/out" | wc -l)" = 2 ] || fail "unexpected files: $(ls -A "$work/out")"
    ;;
download-prefix)
    mkdir -p "$work/src/sub"
    random_file "$work/src/a.txt" 1000
    random_file "$work/src/sub/b.bin" 1048576
    random_file "$work/other.txt" 10
    aws s3 cp --recursive "$work/src" "s3://$bucket/pre/" >/dev/null
    aws s3 cp "$work/other.txt" "s3://$bucket/other/c.txt" >/dev/null
    aws s3 cp "$work/other.txt" "s3://$bucket/prefixed.txt" >/dev/null
    mkdir "$work/out"
    doc dl S3Download "          - source: s3://$bucket/pre/*
            destination: $work/out"
    run dl || fail "S3Download of a prefix failed"
    cmp "$work/src/a.txt" "$work/out/a.txt"
    cmp "$work/src/sub/b.bin" "$work/out/sub/b.bin"
    [ "$(find "$work/out" -type f | wc -l)" = 2 ] || fail "extra files: $(find "$work/out")"
    ;;
overwrite-false)
    echo new > "$work/new.txt"
    aws s3 cp "$work/new.txt" "s3://$bucket/f.txt" >/dev/null
    mkdir "$work/out"
    echo old > "$work/out/f.txt"
    doc keep S3Download "          - source: s3://$bucket/f.txt
            destination: $work/out/f.txt
            overwrite: false"
    if run keep; then fail "overwrite: false replaced an existing file"; fi
    grep -q 'File already exists' "$work/keep.json" || fail "no clear message"
    [ "$(cat "$work/out/f.txt")" = old ] || fail "the existing file changed"
    [ "$(ls -A "$work/out")" = f.txt ] || fail "left behind: $(ls -A "$work/out")"
    doc replace S3Download "          - source: s3://$bucket/f.txt
            destination: $work/out/f.txt
            overwrite: true"
    run replace || fail "overwrite: true failed"
    [ "$(cat "$work/out/f.txt")" = new ] || fail "not replaced"
    ;;
missing-object)
    mkdir "$work/out"
    doc dl S3Download "          - source: s3://$bucket/no/such.txt
            destination: $work/out/such.txt"
    if run dl; then fail "a missing object downloaded"; fi
    [ "$(status dl status)" = failed ] || fail "status $(status dl status)"
    status dl failureMessage | grep -q "s3://$bucket/no/such.txt: no such object" ||
        fail "unclear message: $(status dl failureMessage)"
    [ -z "$(ls -A "$work/out")" ] || fail "left behind: $(ls -A "$work/out")"
    ;;
upload-file)
    random_file "$work/small.bin" 12345
    # Above one 16 MiB part: a multipart upload.
    random_file "$work/big.bin" $((20 * 1024 * 1024 + 17))
    doc up S3Upload "          - source: $work/small.bin
            destination: s3://$bucket/up/small.bin
          - source: $work/big.bin
            destination: s3://$bucket/up/"
    run up || fail "S3Upload failed"
    aws s3 cp "s3://$bucket/up/small.bin" "$work/small.back" >/dev/null
    aws s3 cp "s3://$bucket/up/big.bin" "$work/big.back" >/dev/null
    cmp "$work/small.bin" "$work/small.back"
    cmp "$work/big.bin" "$work/big.back"
    etag=$(aws s3api head-object --bucket "$bucket" --key up/big.bin --query ETag --output text)
    case $etag in
        *-2\"|*-2) ;;
        *) fail "big.bin was not a 2-part multipart upload (ETag $etag)" ;;
    esac
    ;;
upload-folder)
    mkdir -p "$work/tree/a/b" "$work/tree/c"
    random_file "$work/tree/top.txt" 100
    random_file "$work/tree/a/one.bin" 5000
    random_file "$work/tree/a/b/two.bin" 70000
    random_file "$work/tree/c/three.txt" 1
    doc up S3Upload "          - source: $work/tree
            destination: s3://$bucket/tree/
            recurse: true"
    run up || fail "S3Upload of a folder failed"
    aws s3 ls --recursive "s3://$bucket/tree/" | awk '{print $4}' | sort > "$work/keys"
    printf '%s\n' tree/a/b/two.bin tree/a/one.bin tree/c/three.txt tree/top.txt > "$work/want"
    diff "$work/want" "$work/keys" || fail "keys differ"
    mkdir "$work/back"
    aws s3 cp --recursive "s3://$bucket/tree/" "$work/back" >/dev/null
    diff -r "$work/tree" "$work/back" || fail "bytes differ"
    ;;
wrong-secret)
    echo x > "$work/x.txt"
    aws s3 cp "$work/x.txt" "s3://$bucket/x.txt" >/dev/null
    mkdir "$work/out"
    doc dl S3Download "          - source: s3://$bucket/x.txt
            destination: $work/out/x.txt"
    if AWS_SECRET_ACCESS_KEY=not-the-secret run dl; then fail "a wrong secret was accepted"; fi
    status dl failureMessage | grep -q "SignatureDoesNotMatch" ||
        fail "no SignatureDoesNotMatch: $(status dl failureMessage)"
    grep -q "Step Step: failed: .*SignatureDoesNotMatch" "$work/dl.err" || fail "step message"
    doc up S3Upload "          - source: $work/x.txt
            destination: s3://$bucket/y.txt"
    if AWS_SECRET_ACCESS_KEY=not-the-secret run up; then fail "a wrong secret was accepted"; fi
    status up failureMessage | grep -q "SignatureDoesNotMatch" || fail "upload message"
    if aws s3api head-object --bucket "$bucket" --key y.txt >/dev/null 2>&1; then
        fail "the object was written"
    fi
    [ -z "$(ls -A "$work/out")" ] || fail "left behind: $(ls -A "$work/out")"
    ;;
expected-owner)
    # The simulator does not check ownership: a recording proxy shows the header is sent.
    mkfifo "$work/hold"
    python3 "$here/peers.py" proxy "$AWSSIM_ENDPOINT" "$work/requests" "$work/port" \
        <"$work/hold" &
    exec 9>"$work/hold"
    for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
    export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$work/port")
    echo data > "$work/o.txt"
    mkdir "$work/out"
    doc owned S3Upload "          - source: $work/o.txt
            destination: s3://$bucket/owned/o.txt
            expectedBucketOwner: '123456789012'"
    run owned || fail "upload with the right owner failed"
    doc get S3Download "          - source: s3://$bucket/owned/*
            destination: $work/out
            expectedBucketOwner: '123456789012'"
    run get || fail "download with the right owner failed"
    cmp "$work/o.txt" "$work/out/o.txt"
    doc plain S3Download "          - source: s3://$bucket/owned/o.txt
            destination: $work/out/plain.txt"
    run plain || fail "download without an owner failed"
    cat "$work/requests" >&2
    python3 - "$work/requests" <<'PY'
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
want = [("PUT", "/kiln-s3-modules/owned/o.txt", "123456789012"),
        ("GET", "/kiln-s3-modules?", "123456789012"),
        ("GET", "/kiln-s3-modules/owned/o.txt", "123456789012"),
        ("GET", "/kiln-s3-modules/owned/o.txt", None)]
got = [(r["method"], r["path"], r["owner"]) for r in reqs]
assert len(got) == len(want), got
for (m, p, o), (gm, gp, go) in zip(want, got):
    assert gm == m and gp.startswith(p) and go == o, (m, p, o, gm, gp, go)
PY
    ;;
profile-config)
    # No environment keys or region: the profile names region, endpoint and keys.
    aws s3 mb "s3://$bucket-eu" --region eu-west-1 >/dev/null
    echo eu > "$work/eu.txt"
    aws s3 cp "$work/eu.txt" "s3://$bucket-eu/eu.txt" --region eu-west-1 >/dev/null
    printf '[profile kiln]\nregion = eu-west-1\nendpoint_url = %s\n' "$AWSSIM_ENDPOINT" \
        > "$work/config"
    printf '[kiln]\naws_access_key_id = %s\naws_secret_access_key = %s\n' \
        "$AWS_ACCESS_KEY_ID" "$AWS_SECRET_ACCESS_KEY" > "$work/credentials"
    mkdir "$work/out"
    doc dl S3Download "          - source: s3://$bucket-eu/eu.txt
            destination: $work/out/"
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_DEFAULT_REGION \
        -u AWS_ENDPOINT_URL AWS_PROFILE=kiln AWS_CONFIG_FILE="$work/config" \
        AWS_SHARED_CREDENTIALS_FILE="$work/credentials" \
        "$agent" run --documents "$work/dl.yml" --log-directory "$work/logs" >"$work/dl.json" ||
        fail "download through the profile failed"
    cmp "$work/eu.txt" "$work/out/eu.txt"
    ;;
instance-credentials)
    # A guest on EC2: no keys, no region; IMDSv2 gives both (the simulator accepts the
    # instance role's keys, see SIM_ARGS in tests/cmake/s3-modules.cmake).
    aws s3 mb "s3://$bucket-ap" --region ap-southeast-2 >/dev/null
    mkfifo "$work/hold"
    python3 "$here/peers.py" imds ap-southeast-2 AKIDKILNIMDS imds-secret imds-session \
        "$work/port" \
        <"$work/hold" &
    exec 9>"$work/hold"
    for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
    random_file "$work/i.bin" 4096
    doc up S3Upload "          - source: $work/i.bin
            destination: s3://$bucket-ap/from-instance.bin"
    env -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY -u AWS_DEFAULT_REGION \
        AWS_EC2_METADATA_DISABLED=false \
        AWS_EC2_METADATA_SERVICE_ENDPOINT="http://127.0.0.1:$(cat "$work/port")" \
        "$agent" run --documents "$work/up.yml" --log-directory "$work/logs" >"$work/up.json" ||
        fail "upload with instance credentials failed"
    aws s3 cp "s3://$bucket-ap/from-instance.bin" "$work/i.back" --region ap-southeast-2 \
        >/dev/null
    cmp "$work/i.bin" "$work/i.back"
    ;;
limits)
    # A hung endpoint: timeoutSeconds and SIGTERM must stop the transfer, not the client's
    # own (day-long) budget.
    mkfifo "$work/hold"
    python3 "$here/peers.py" stall "$work/port" <"$work/hold" &
    exec 9>"$work/hold"
    for _ in $(seq 100); do [ -s "$work/port" ] && break; sleep 0.1; done
    export AWS_ENDPOINT_URL=http://127.0.0.1:$(cat "$work/port")
    mkdir "$work/out"
    # timeoutSeconds belongs to the step.
    cat > "$work/slow.yml" <<EOD
name: slow
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: Step
        action: S3Download
        timeoutSeconds: 2
        inputs:
          - source: s3://$bucket/x.txt
            destination: $work/out/x.txt
EOD
    start=$(date +%s)
    if run slow; then fail "a hung endpoint succeeded"; fi
    took=$(( $(date +%s) - start ))
    echo "timeoutSeconds 2: failed after ${took}s" >&2
    [ "$took" -le 10 ] || fail "the time limit was not honoured (${took}s)"
    status slow failureMessage | grep -q "timed out" ||
        fail "unclear message: $(status slow failureMessage)"
    [ -z "$(ls -A "$work/out")" ] || fail "left behind: $(ls -A "$work/out")"
    doc hang S3Download "          - source: s3://$bucket/x.txt
            destination: $work/out/x.txt"
    "$agent" run --documents "$work/hang.yml" --log-directory "$work/logs" \
        >"$work/hang.json" 2>"$work/hang.err" &
    pid=$!
    sleep 2
    start=$(date +%s)
    kill -TERM $pid
    for _ in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done
    if kill -0 $pid 2>/dev/null; then
        kill -KILL $pid
        fail "kiln-agent still running 10 s after SIGTERM"
    fi
    rc=0
    wait $pid || rc=$?
    took=$(( $(date +%s) - start ))
    cat "$work/hang.err" >&2
    echo "SIGTERM: exit $rc after ${took}s" >&2
    [ "$rc" = 130 ] || fail "exit status $rc after SIGTERM, wanted 130 (cancelled)"
    [ "$took" -le 5 ] || fail "cancellation took ${took}s"
    [ -z "$(ls -A "$work/out")" ] || fail "left behind: $(ls -A "$work/out")"
    ;;
*)
    echo "unknown case $case_name" >&2
    exit 2
    ;;
esac
echo "ok $case_name"
