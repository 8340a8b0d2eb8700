#!/usr/bin/env bash
# End to end on the Debian 12 base image: `kiln build` of tests/vm/data/debian-e2e/recipe.yml
# (the README example's component, checks that the first step finds the network up and /tmp
# settled, a package removal) in a throw-away Kiln home (sharing the prepared base images), then
# checks that the image is AVAILABLE, that its qcow2 output is sound and holds the greeting the
# component wrote, that the manifest's package list is the one libguestfs inspection
# (virt-inspector) reads from the output image, and that nothing of the build is left: no
# libvirt domain, no work folder, no live resource in the state store.
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

"$kiln" --home "$home" build --recipe "$src/tests/vm/data/debian-e2e/recipe.yml" \
    || fail "kiln build exited $?"

show=$("$kiln" --home "$home" image show debian-e2e/1.0.0/1 --json)
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
assert "openssh-server" not in names, "openssh-server was removed (its configuration kept)"
assert m["components"][0]["sha256"] and m["outputs"][0]["sha256"]
PY
# The same list as libguestfs inspection of the output image (virt-inspector): names, epochs,
# versions and architectures.
LIBGUESTFS_BACKEND=direct LIBGUESTFS_BACKEND_SETTINGS=force_tcg \
    virt-inspector --no-icon -a "$out" >"$home/inspect.xml" || fail "virt-inspector $out"
python3 - "$manifest" "$home/inspect.xml" <<'PY' || fail "manifest and virt-inspector disagree"
import json, sys, xml.etree.ElementTree as ET
m = json.load(open(sys.argv[1]))
ours = {(p["name"], p["version"], p.get("architecture", "")) for p in m["installedPackages"]}
theirs = set()
for a in ET.parse(sys.argv[2]).getroot().iter("application"):
    get = lambda tag: (a.findtext(tag) or "").strip()
    version = get("version") + ("-" + get("release") if get("release") else "")
    if get("epoch") not in ("", "0"):
        version = get("epoch") + ":" + version
    theirs.add((get("name"), version, get("arch")))
if ours != theirs:
    print("only in the manifest:", sorted(ours - theirs)[:10])
    print("only in virt-inspector:", sorted(theirs - ours)[:10])
    sys.exit(1)
print(f"manifest and virt-inspector agree on {len(ours)} packages")
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
