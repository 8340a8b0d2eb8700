#!/usr/bin/env bash
# Boot benchmark: for each base image, the time from "create the domain" to the agent's hello
# (what every build waits for), against a bare direct-kernel boot of the same image to its login
# prompt (agent kept from starting). Medians of 3 runs, one guest at a time, under TCG unless
# KILN_BENCH_ACCEL=kvm. Goal: agent ready within 0.6x of the bare boot to login.
# Usage: bench/boot.sh [BUILD_DIR] [IMAGE...]   (default: build; tiny debian-12)
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build}
shift || true
images=("$@")
[ ${#images[@]} -gt 0 ] || images=(tiny debian-12)
bin=$build/tests/kiln-bench-boot
[ -x "$bin" ] || { echo "boot: $bin is not built" >&2; exit 2; }
runs=${KILN_BENCH_RUNS:-3}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

printf '%-12s %-28s %-28s %s\n' image "agent ready (s): median [runs]" "bare to login (s): median [runs]" ratio
for image in "${images[@]}"; do
    agent=() bare=()
    for _ in $(seq "$runs"); do
        agent+=("$("$bin" "$image" agent)")
        bare+=("$("$bin" "$image" bare)")
    done
    ma=$(median "${agent[@]}")
    mb=$(median "${bare[@]}")
    printf '%-12s %-28s %-28s %s\n' "$image" "$ma [${agent[*]}]" "$mb [${bare[*]}]" \
        "$(awk -v a="$ma" -v b="$mb" 'BEGIN { printf "%.2f", a / b }')"
done
