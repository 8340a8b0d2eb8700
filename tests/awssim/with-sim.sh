#!/bin/sh
# Run a command against a fresh AWS simulator:
#   tests/awssim/with-sim.sh [--delay-scale X] [--faults SPEC] [--seed N] [--] CMD ARGS...
# Exports AWSSIM_ENDPOINT, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_DEFAULT_REGION,
# AWS_EC2_METADATA_DISABLED, AWS_CONFIG_FILE (an empty temp file); stops the simulator
# afterwards and exits with CMD's status.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
delay=${AWSSIM_DELAY_SCALE:-0.02}
extra=""
while [ $# -gt 0 ]; do
    case "$1" in
        --delay-scale) delay=$2; shift 2 ;;
        --faults|--seed|--credentials) extra="$extra $1 $2"; shift 2 ;;
        --) shift; break ;;
        *) break ;;
    esac
done
[ $# -gt 0 ] || { echo "usage: with-sim.sh [options] CMD..." >&2; exit 2; }
tmp=$(mktemp -d "${TMPDIR:-/tmp}/awssim-sh.XXXXXX")
pid=""
cleanup() {
    if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    rm -rf "$tmp"
}
trap cleanup EXIT INT TERM
# shellcheck disable=SC2086
python3 "$here/awssim.py" --host 127.0.0.1 --port 0 --ready-file "$tmp/port" \
    --state-dir "$tmp/state" --delay-scale "$delay" --exit-with-parent $extra \
    2>"$tmp/sim.log" &
pid=$!
i=0
while [ ! -s "$tmp/port" ]; do
    if ! kill -0 "$pid" 2>/dev/null || [ $i -ge 300 ]; then
        echo "with-sim.sh: simulator did not start" >&2; cat "$tmp/sim.log" >&2; exit 1
    fi
    sleep 0.05; i=$((i + 1))
done
: > "$tmp/aws-config"
AWSSIM_ENDPOINT="http://127.0.0.1:$(cat "$tmp/port")"
AWS_ACCESS_KEY_ID=AKIDKILNTEST
AWS_SECRET_ACCESS_KEY=kiln-test-secret
AWS_DEFAULT_REGION=us-east-1
AWS_EC2_METADATA_DISABLED=true
AWS_CONFIG_FILE="$tmp/aws-config"
AWS_SHARED_CREDENTIALS_FILE="$tmp/aws-credentials"
AWS_PAGER=""
AWSSIM_STATE_DIR="$tmp/state"
export AWSSIM_ENDPOINT AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_DEFAULT_REGION \
    AWS_EC2_METADATA_DISABLED AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE AWS_PAGER \
    AWSSIM_STATE_DIR
unset AWS_SESSION_TOKEN AWS_PROFILE 2>/dev/null || true
set +e
"$@"
rc=$?
set -e
exit $rc
