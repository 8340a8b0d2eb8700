#!/usr/bin/env bash
# Engine overhead: a generated 1,000-step document (ExecuteBash `true` alternating with
# CreateFile) run by kiln-agent, against 1,000 bare `bash -c true`. Prints the per-step overhead
# in milliseconds and kiln-agent's peak RSS (from /usr/bin/time -v).
# Usage: bench/engine-overhead.sh [path/to/kiln-agent] [steps]
set -euo pipefail
cd "$(dirname "$0")/.."
agent=${1:-build/guest-agent/kiln-agent}
steps=${2:-1000}
[ -x "$agent" ] || { echo "engine-overhead: $agent not built" >&2; exit 2; }
[ -x /usr/bin/time ] || { echo "engine-overhead: /usr/bin/time (package time) is needed" >&2; exit 2; }
work=$(mktemp -d /tmp/kiln-bench.XXXXXX)
trap 'rm -rf "$work"' EXIT

doc=$work/bench.yml
{
    echo "name: engine-overhead"
    echo "schemaVersion: 1.0"
    echo "phases:"
    echo "  - name: build"
    echo "    steps:"
    for ((i = 0; i < steps; i++)); do
        if ((i % 2 == 0)); then
            printf '      - name: Bash%d\n        action: ExecuteBash\n        inputs:\n          commands: ["true"]\n' "$i"
        else
            printf '      - name: File%d\n        action: CreateFile\n        inputs:\n          - path: %s/f%d.txt\n            content: step %d\n' "$i" "$work" "$i" "$i"
        fi
    done
} > "$doc"

# The same number of CreateFile steps alone: the engine's own cost, without process spawning.
files_doc=$work/files.yml
{
    echo "name: engine-overhead-files"
    echo "schemaVersion: 1.0"
    echo "phases:"
    echo "  - name: build"
    echo "    steps:"
    for ((i = 0; i < steps; i++)); do
        printf '      - name: File%d\n        action: CreateFile\n        inputs:\n          - path: %s/g%d.txt\n            content: step %d\n' "$i" "$work" "$i" "$i"
    done
} > "$files_doc"

now_ms() { date +%s%3N; }

t0=$(now_ms)
for ((i = 0; i < steps; i++)); do bash -c true; done
t1=$(now_ms)
bare=$((t1 - t0))

t0=$(now_ms)
/usr/bin/time -v -o "$work/time.txt" "$agent" run --documents "$doc" --log-directory "$work/logs" \
    > "$work/summary.json" 2> "$work/stderr.txt"
t1=$(now_ms)
agent_ms=$((t1 - t0))
grep -q '"status": "success"' "$work/summary.json" || { cat "$work/stderr.txt" >&2; exit 1; }
rss_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time.txt")

# The same with a one-step document: what the process costs before any step (mostly the shared
# libraries it maps), so that the growth with the document's size shows.
printf 'name: one\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: A\n        action: Assert\n        inputs:\n          stringEquals: a\n          value: a\n' > "$work/one.yml"
/usr/bin/time -v -o "$work/time1.txt" "$agent" run --documents "$work/one.yml" --log-directory "$work/logs" > /dev/null 2>&1
base_kib=$(awk -F: '/Maximum resident set size/ {gsub(/ /, "", $2); print $2}' "$work/time1.txt")

t0=$(now_ms)
"$agent" run --documents "$files_doc" --log-directory "$work/logs" > "$work/summary2.json" 2>/dev/null
t1=$(now_ms)
files_ms=$((t1 - t0))
grep -q '"status": "success"' "$work/summary2.json" || exit 1

# Half the steps start bash; the other half are CreateFile. The bare baseline is one bash per
# step, so this overstates nothing: overhead = (agent - bare) / steps. Load on the machine and
# the process module's wait for the step's exit both show up in these figures.
awk -v a="$agent_ms" -v b="$bare" -v f="$files_ms" -v n="$steps" -v rss="$rss_kib" -v base="$base_kib" 'BEGIN {
    printf "steps: %d\n", n
    printf "kiln-agent run: %d ms (%.3f ms/step)\n", a, a / n
    printf "bare bash -c true x%d: %d ms (%.3f ms/step)\n", n, b, b / n
    printf "engine overhead per step: %.3f ms\n", (a - b) / n
    printf "kiln-agent run, %d CreateFile steps only: %d ms (%.3f ms/step, no process spawned)\n", n, f, f / n
    printf "peak RSS: %.1f MiB (a one-step run: %.1f MiB)\n", rss / 1024, base / 1024
}'
