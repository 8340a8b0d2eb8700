#!/usr/bin/env bash
# kiln-agent's command line, end to end: validate and run, exit codes, the summary on stdout and
# the log folder. Usage: cli-test.sh <kiln-agent> <source dir> <case>
set -euo pipefail
agent=$1
src=$2
case=$3
work=$(mktemp -d /tmp/kiln-cli-test.XXXXXX)
trap 'rm -rf "$work"' EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }

case $case in
validate-ok)
    "$agent" validate --documents "$src/examples/hello-world.yml" > "$work/out"
    grep -q '"status": "success"' "$work/out" || fail "no success summary"
    ;;
validate-errors)
    cat > "$work/bad.yml" <<'YAML'
name: bad
schemaVersion: 1.0
phases:
  - name: build
    steps:
      - name: A
        action: ExecuteBash
        onFailure: Sometimes
        inputs:
          commands: ["echo {{ nope }}"]
      - name: B
        action: ExecutePowerShell
        inputs:
          commands: [x]
YAML
    rc=0
    "$agent" validate --documents "$work/bad.yml" 2> "$work/err" || rc=$?
    [ $rc = 1 ] || fail "exit code $rc, expected 1"
    grep -qF "$work/bad.yml:8:20: phases[0].steps[0].onFailure: must be one of Abort, Continue, Ignore (got 'Sometimes')" "$work/err" || fail "onFailure message"
    grep -qF "$work/bad.yml:10:22: phases[0].steps[0].inputs: '{{ nope }}': no parameter or constant named 'nope'" "$work/err" || fail "variable message"
    grep -qF "$work/bad.yml:12:17: phases[0].steps[1]: ExecutePowerShell is not supported on Linux" "$work/err" || fail "windows message"
    grep -qF "3 problems" "$work/err" || fail "count"
    ;;
run-example)
    "$agent" run --documents "$src/examples/hello-world.yml" --parameters Greeting=Howdy \
        --execution-id cli-test-1 --log-directory "$work/logs" > "$work/out" 2> "$work/err"
    grep -q '"status": "success"' "$work/out" || fail "status"
    grep -q '"executedStepCount": 6' "$work/out" || fail "step count"
    folder=$(ls -d "$work"/logs/TOE_*_UTC-0_cli-test-1)
    for f in D0__hello-world.yml detailedoutput.json console.log application.log chaining.json; do
        [ -s "$folder/$f" ] || fail "missing $f"
    done
    grep -q "Stdout: Howdy World from the test phase." "$folder/console.log" || fail "console.log"
    grep -q "Step CheckGreeting: success" "$work/err" || fail "progress on stderr"
    ;;
run-failed)
    printf 'name: f\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: A\n        action: ExecuteBash\n        inputs:\n          commands: ["exit 7"]\n' > "$work/f.yml"
    rc=0
    "$agent" run --documents "$work/f.yml" --log-directory "$work/logs" > "$work/out" 2>/dev/null || rc=$?
    [ $rc = 1 ] || fail "exit code $rc, expected 1"
    grep -q '"status": "failed"' "$work/out" || fail "status"
    grep -q '"failedStepCount": 1' "$work/out" || fail "failed count"
    ;;
run-reboot)
    printf 'name: r\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: R\n        action: Reboot\n      - name: After\n        action: ExecuteBash\n        inputs:\n          commands: ["echo after"]\n' > "$work/r.yml"
    rc=0
    "$agent" run --documents "$work/r.yml" --log-directory "$work/logs" --state-directory "$work/state" > /dev/null 2> "$work/err" || rc=$?
    [ $rc = 194 ] || fail "exit code $rc, expected 194"
    grep -q "state-directory $work/state" "$work/err" || fail "no resume hint"
    "$agent" run --documents "$work/r.yml" --log-directory "$work/logs" --state-directory "$work/state" > "$work/out" 2>/dev/null
    grep -q '"status": "success"' "$work/out" || fail "resume status"
    [ "$(ls -d "$work"/logs/TOE_* | wc -l)" = 1 ] || fail "resume used another log folder"
    ;;
run-reboot-default-state)
    # Without --state-directory the same command resumes (state under the log directory).
    printf 'name: r\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: K\n        action: ExecuteBash\n        inputs:\n          commands:\n            - echo run >> %s/count\n            - "[ -f %s/done ] || { touch %s/done; exit 194; }"\n' "$work" "$work" "$work" > "$work/k.yml"
    rc=0
    "$agent" run --documents "$work/k.yml" --log-directory "$work/logs" > /dev/null 2>&1 || rc=$?
    [ $rc = 194 ] || fail "exit code $rc, expected 194"
    [ -f "$work/logs/.kiln-agent-state/kiln-agent-state.json" ] || fail "no state saved"
    "$agent" run --documents "$work/k.yml" --log-directory "$work/logs" > "$work/out" 2>/dev/null
    grep -q '"status": "success"' "$work/out" || fail "resume status"
    [ "$(cat "$work/count")" = "$(printf 'run\nrun')" ] || fail "step ran $(wc -l < "$work/count") times"
    [ ! -f "$work/logs/.kiln-agent-state/kiln-agent-state.json" ] || fail "state left behind"
    ;;
usage)
    rc=0
    "$agent" run > /dev/null 2>&1 || rc=$?
    [ $rc = 2 ] || fail "exit code $rc, expected 2"
    rc=0
    "$agent" frobnicate > /dev/null 2>&1 || rc=$?
    [ $rc = 2 ] || fail "exit code $rc, expected 2"
    # serve on a descriptor that is not open fails at once, naming it (it used to poll for ever).
    rc=0
    out=$(timeout 10 "$agent" serve --fd 99 2>&1 99<&-) || rc=$?
    [ $rc != 0 ] && [ $rc != 124 ] || fail "serve --fd 99: exit code $rc"
    case $out in *"file descriptor 99"*) ;; *) fail "serve --fd 99 said: $out" ;; esac
    ;;
*)
    fail "unknown case $case"
    ;;
esac
echo "ok $case"
