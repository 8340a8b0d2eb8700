#!/usr/bin/env bash
# End to end on the Debian 12 base image: `kiln build` of the example recipe in a throw-away Kiln
# home (sharing the prepared base images), then checks that the image is AVAILABLE, that its
# qcow2 output is sound and holds the greeting the component wrote, that the manifest lists the
# installed packages, and that nothing of the build is left: no libvirt domain, no work folder,
# no live resource in the state store.
# Usage: tests/vm/kiln-build-debian.sh BUILD_DIR
set -euo pipefail
src=$(cd "$(dirname "$0")/../.." && pwd)
build=$(realpath "${1:?usage: kiln-build-debian.sh BUILD_DIR}")
kiln=$build/factory/kiln
catalog=${KILN_CATALOG_HOME:-/var/lib/kiln}
home=$(mktemp -d /var/tmp/kiln-e2e-debian.XXXXXX)
trap 'rm -rf "$home"' EXIT
ln -s "$catalog/images" "$home/images"

fail() { echo "FAIL: $*" >&2; exit 1; }

"$kiln" --home "$home" build --recipe "$src/examples/recipes/hello-world-debian-12.yml" \
    || fail "kiln build exited $?"

show=$("$kiln" --home "$home" image show hello-world-debian-12/1.0.0/1 --json)
field() { python3 -c 'import json,sys; d=json.load(sys.stdin); print(eval(sys.argv[1]))' "$1" <<<"$show"; }
[ "$(field 'd["status"]')" = AVAILABLE ] || fail "status is $(field 'd["status"]')"
build_id=$(field 'd["buildId"]')
out=$(field '[o["path"] for o in d["outputs"] if o["format"] == "qcow2"][0]')
manifest=$(field 'd["manifest"]')

qemu-img check -q "$out" || fail "qemu-img check $out"
[ "$(qemu-img info --output=json "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin).get("backing-filename", ""))')" = "" ] \
    || fail "$out still has a backing file"
python3 - "$manifest" <<'PY' || fail "manifest $manifest"
import json, sys
m = json.load(open(sys.argv[1]))
names = {p["name"] for p in m["installedPackages"]}
assert {"bash", "systemd", "linux-image-cloud-amd64"} <= names, sorted(names)[:20]
assert m["components"][0]["sha256"] and m["outputs"][0]["sha256"]
PY
# The greeting is in the image (read offline with libguestfs).
greeting=$(LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg \
    guestfish --ro -a "$out" -i cat /etc/hello)
[ "$greeting" = "hello from kiln" ] || fail "/etc/hello is '$greeting'"

# Nothing left behind.
if virsh -c qemu:///system list --all --name | grep -q "^$build_id"; then
    fail "domain of $build_id still defined"
fi
[ ! -e "$home/builds/$build_id" ] || fail "work folder $home/builds/$build_id left"
left=$(sqlite3 "$home/kiln.db" "select count(*) from resources" 2>/dev/null || echo "?")
[ "$left" = 0 ] || fail "$left live resources left in the state store"
echo "ok: $build_id AVAILABLE, $out"
