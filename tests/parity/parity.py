"""Parity of Kiln's AWS client with the AWS CLI.

Each scenario runs twice, against two fresh simulators started with the same seed: once through
kiln-aws (Kiln's typed client APIs), once through /usr/bin/aws. Both end states
(GET /_kiln/state) are normalised and must be equal.

    python3 tests/parity/parity.py --kiln-aws build/cloud/kiln-aws SCENARIO
    python3 tests/parity/parity.py --self-test      # the comparison detects a difference

What is normalised, and why it may differ legitimately:
  * generated ids (i-, r-, vol-, ami-, snap-, import-snap-, upload ids): both simulators draw
    them from the same seeded generator, but one extra draw shifts every later id; they are
    replaced by <prefix#n>, n counted in the order they first appear in the state, which is the
    order of creation (the simulator keeps its records in insertion order);
  * timestamps (created, launched, started, last_modified, initiated, timeout): wall-clock;
  * the simulator's own state-dir paths (import sources), and the optional EBS progress
    report (see normalise);
  * client tokens: the CLI makes up a random UUID for each idempotent call; Kiln makes up its
    own. Both become <uuid>; a missing token stays null and shows as a difference;
  * request counters: waiters poll at different moments and the CLI's "s3 cp" asks HeadObject
    first; only counts of the operations that change state are compared
    (mutating_requests), and auth failures must be zero on both sides.
ETags are NOT normalised: with the same part size (the CLI configured to 5 MiB parts,
kiln-aws --part-size 5242880) the multipart ETag (md5 of the part md5s, -N) must be equal.
"""

import argparse
import difflib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "awssim"))
import simctl  # noqa: E402

AWS = "/usr/bin/aws"
REGION = "us-east-1"
COPY_REGION = "eu-west-1"
PART = 5 * 1024 * 1024
ACCOUNT2 = "111122223333"
DELAY_SCALE = 0.002
SEED = 4242

# -- drivers -------------------------------------------------------------------------------


class Failed(Exception):
    pass


def run(cmd, env):
    t0 = time.monotonic()
    p = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if os.environ.get("PARITY_TRACE"):
        print("%6.2fs %s" % (time.monotonic() - t0, " ".join(cmd[3:10])), file=sys.stderr)
    if p.returncode != 0:
        raise Failed("%s failed (%d):\n%s%s" % (" ".join(cmd), p.returncode, p.stdout, p.stderr))
    return p.stdout


class Kiln:
    """kiln-aws against one simulator."""
    name = "kiln-aws"

    def __init__(self, binary, sim, perturb=False):
        self.binary = binary
        self.sim = sim
        self.perturb = perturb  # --perturb: one tag value differs from what the CLI sets

    def k(self, *args, region=REGION):
        env = self.sim.env(region=region)
        return run([self.binary, "--endpoint-url", self.sim.endpoint, "--region", region,
                    "--wait-interval", "0.1"] + [str(a) for a in args], env).split()

    def run_instances(self, image, itype, count, tags):
        return self.k("ec2-run-instances", image, itype, count,
                      *["%s=%s" % kv for kv in tags.items()])

    def create_tags(self, rid, tags):
        if self.perturb:
            tags = {k: v + "-perturbed" for k, v in tags.items()}
        self.k("ec2-create-tags", rid, *["%s=%s" % kv for kv in tags.items()])

    def stop(self, ids):
        self.k("ec2-stop-instances", *ids)

    def terminate(self, ids):
        self.k("ec2-terminate-instances", *ids)

    def create_image(self, iid, name, tags):
        return self.k("ec2-create-image", iid, name, *["%s=%s" % kv for kv in tags.items()])[0]

    def register_image(self, name, snap):
        return self.k("ec2-register-image", name, snap)[0]

    def copy_image(self, src_region, image, name, region):
        return self.k("ec2-copy-image", src_region, image, name, region=region)[0]

    def add_launch_permission(self, image, account, region=REGION):
        self.k("ec2-add-launch-permission", image, account, region=region)

    def deregister(self, image):
        self.k("ec2-deregister-image", image)

    def delete_snapshot(self, snap):
        self.k("ec2-delete-snapshot", snap)

    def import_snapshot(self, bucket, key, description):
        task, snap = self.k("ec2-import-snapshot", bucket, key, description)
        return task, snap

    def mb(self, bucket):
        self.k("s3-mb", bucket)

    def put(self, path, bucket, key):
        self.k("s3-put", path, bucket, key)

    def upload(self, path, bucket, key):
        self.k("--part-size", PART, "s3-upload", path, bucket, key)

    def rm(self, bucket, key):
        self.k("s3-rm", bucket, key)

    def ls(self, bucket):
        out = run([self.binary, "--endpoint-url", self.sim.endpoint, "s3-ls", bucket],
                  self.sim.env())
        return sorted(tuple(line.split("\t")[:2]) for line in out.splitlines())

    def ebs_upload(self, path, description):
        out = self.k("--description", description, "ebs-upload", path)
        return json.loads(" ".join(out))["snapshot_id"]


def tag_spec(rtypes, tags):
    t = ",".join("{Key=%s,Value=%s}" % kv for kv in tags.items())
    return ["ResourceType=%s,Tags=[%s]" % (r, t) for r in rtypes]


class Cli:
    """/usr/bin/aws against one simulator, the way a user would script it."""
    name = "aws-cli"

    def __init__(self, sim):
        self.sim = sim
        # The same multipart geometry as kiln-aws --part-size, so ETags can be compared.
        cfg = sim.env()["AWS_CONFIG_FILE"]
        with open(cfg, "w") as f:
            f.write("[default]\ns3 =\n  multipart_threshold = 5MB\n"
                    "  multipart_chunksize = 5MB\n")

    def a(self, *args, region=REGION, text=True):
        cmd = [AWS, "--endpoint-url", self.sim.endpoint, "--region", region]
        cmd += [str(x) for x in args]
        if text:
            cmd += ["--output", "text"]
        return run(cmd, self.sim.env(region=region))

    def run_instances(self, image, itype, count, tags):
        ids = self.a("ec2", "run-instances", "--image-id", image, "--instance-type", itype,
                     "--count", count, "--tag-specifications",
                     *tag_spec(["instance", "volume"], tags),
                     "--query", "Instances[].InstanceId").split()
        self.a("ec2", "wait", "instance-running", "--instance-ids", *ids)
        return ids

    def create_tags(self, rid, tags):
        self.a("ec2", "create-tags", "--resources", rid, "--tags",
               *["Key=%s,Value=%s" % kv for kv in tags.items()])

    def stop(self, ids):
        self.a("ec2", "stop-instances", "--instance-ids", *ids)
        self.a("ec2", "wait", "instance-stopped", "--instance-ids", *ids)

    def terminate(self, ids):
        self.a("ec2", "terminate-instances", "--instance-ids", *ids)
        self.a("ec2", "wait", "instance-terminated", "--instance-ids", *ids)

    def create_image(self, iid, name, tags):
        ami = self.a("ec2", "create-image", "--instance-id", iid, "--name", name,
                     "--tag-specifications", *tag_spec(["image", "snapshot"], tags),
                     "--query", "ImageId").strip()
        self.a("ec2", "wait", "image-available", "--image-ids", ami)
        return ami

    def register_image(self, name, snap):
        ami = self.a("ec2", "register-image", "--name", name, "--architecture", "x86_64",
                     "--root-device-name", "/dev/xvda", "--virtualization-type", "hvm",
                     "--ena-support", "--block-device-mappings",
                     "DeviceName=/dev/xvda,Ebs={SnapshotId=%s,VolumeType=gp3,"
                     "DeleteOnTermination=true}" % snap, "--query", "ImageId").strip()
        self.a("ec2", "wait", "image-available", "--image-ids", ami)
        return ami

    def copy_image(self, src_region, image, name, region):
        ami = self.a("ec2", "copy-image", "--source-region", src_region, "--source-image-id",
                     image, "--name", name, "--query", "ImageId", region=region).strip()
        self.a("ec2", "wait", "image-available", "--image-ids", ami, region=region)
        return ami

    def add_launch_permission(self, image, account, region=REGION):
        self.a("ec2", "modify-image-attribute", "--image-id", image, "--launch-permission",
               "Add=[{UserId=%s}]" % account, region=region)

    def deregister(self, image):
        self.a("ec2", "deregister-image", "--image-id", image)

    def delete_snapshot(self, snap):
        self.a("ec2", "delete-snapshot", "--snapshot-id", snap)

    def import_snapshot(self, bucket, key, description):
        task = self.a("ec2", "import-snapshot", "--description", description,
                      "--disk-container", "Format=RAW,UserBucket={S3Bucket=%s,S3Key=%s}"
                      % (bucket, key), "--query", "ImportTaskId").strip()
        # The CLI has no waiter for imports (no "aws ec2 wait snapshot-imported" in awscli
        # v2.9): poll as a script would.
        deadline = time.time() + 120
        while True:
            status, snap = self.a(
                "ec2", "describe-import-snapshot-tasks", "--import-task-ids", task, "--query",
                "ImportSnapshotTasks[0].SnapshotTaskDetail.[Status,SnapshotId]").split()
            if status == "completed":
                return task, snap
            if status in ("deleting", "deleted") or time.time() > deadline:
                raise Failed("aws-cli: import %s ended %s" % (task, status))
            time.sleep(0.2)

    def mb(self, bucket):
        self.a("s3", "mb", "s3://%s" % bucket, text=False)

    def put(self, path, bucket, key):
        # "s3 cp" guesses the type from the file name (.bin: application/octet-stream, Kiln's
        # default); small files go up in one PutObject.
        self.a("s3", "cp", "--only-show-errors", path, "s3://%s/%s" % (bucket, key), text=False)

    def upload(self, path, bucket, key):
        self.a("s3", "cp", "--only-show-errors", path, "s3://%s/%s" % (bucket, key), text=False)

    def rm(self, bucket, key):
        self.a("s3", "rm", "--only-show-errors", "s3://%s/%s" % (bucket, key), text=False)

    def ls(self, bucket):
        out = self.a("s3api", "list-objects-v2", "--bucket", bucket, "--query",
                     "Contents[].[Key,Size]")
        return sorted(tuple(line.split("\t")[:2]) for line in out.splitlines())

    def ebs_upload(self, path, description):
        """What kiln-aws ebs-upload does, with the CLI's EBS direct API calls: the non-zero
        512 KiB blocks, then CompleteSnapshot with the LINEAR aggregate checksum."""
        import base64
        import hashlib
        size = os.path.getsize(path)
        gib = max(1, -(-size // (1 << 30)))
        snap = self.a("ebs", "start-snapshot", "--volume-size", gib, "--description",
                      description, "--query", "SnapshotId").strip()
        digests = []
        blk = 512 * 1024
        with open(path, "rb") as f:
            index = 0
            while True:
                data = f.read(blk)
                if not data:
                    break
                data = data.ljust(blk, b"\0")
                if data.count(0) != blk:
                    d = hashlib.sha256(data).digest()
                    digests.append(d)
                    bf = os.path.join(self.sim.tmp, "block")
                    with open(bf, "wb") as o:
                        o.write(data)
                    self.a("ebs", "put-snapshot-block", "--snapshot-id", snap, "--block-index",
                           index, "--block-data", bf, "--data-length", blk,
                           "--checksum", base64.b64encode(d).decode(),
                           "--checksum-algorithm", "SHA256")
                index += 1
        agg = base64.b64encode(hashlib.sha256(b"".join(digests)).digest()).decode()
        self.a("ebs", "complete-snapshot", "--snapshot-id", snap, "--changed-blocks-count",
               len(digests), "--checksum", agg, "--checksum-algorithm", "SHA256",
               "--checksum-aggregation-method", "LINEAR")
        self.a("ec2", "wait", "snapshot-completed", "--snapshot-ids", snap)
        return snap


# -- scenarios -----------------------------------------------------------------------------

def amazon_image(sim, arch="x86_64"):
    """The public image to launch. A harness look-up (read-only, so it does not count in the
    comparison), done the same way for both sides; it also makes the simulator create the
    region's state, which it does on first use."""
    out = run([AWS, "--endpoint-url", sim.endpoint, "ec2", "describe-images", "--owners",
               "amazon", "--filters", "Name=architecture,Values=" + arch, "--query",
               "Images[0].ImageId", "--output", "text"], sim.env())
    if not out.strip().startswith("ami-"):
        raise Failed("no public %s image in the simulator" % arch)
    return out.strip()


def image_snapshots(sim, image, region=REGION):
    return [d["snapshot"] for d in sim.state()["regions"][region]["images"][image]["bdm"]]


def scenario_ec2_instances(d, sim, work):
    img = amazon_image(sim)
    ids = d.run_instances(img, "t3.micro", 2, {"Name": "parity", "team": "kiln"})
    assert len(ids) == 2, ids
    d.create_tags(ids[0], {"stage": "test", "Name": "parity-0"})
    d.stop([ids[0]])
    d.terminate(ids)


def scenario_ec2_images(d, sim, work):
    img = amazon_image(sim)
    iid = d.run_instances(img, "t3.small", 1, {"Name": "builder"})[0]
    ami = d.create_image(iid, "parity-image-1", {"build": "42"})
    copy = d.copy_image(REGION, ami, "parity-image-1-copy", COPY_REGION)
    d.add_launch_permission(copy, ACCOUNT2, region=COPY_REGION)
    snaps = image_snapshots(sim, ami)
    d.deregister(ami)
    for s in snaps:
        d.delete_snapshot(s)
    d.terminate([iid])


def write_random(path, size, seed):
    import random
    rng = random.Random(seed)
    with open(path, "wb") as f:
        left = size
        while left:
            n = min(left, 1 << 20)
            f.write(rng.randbytes(n))
            left -= n


def scenario_s3_objects(d, sim, work):
    small = os.path.join(work, "small.bin")
    with open(small, "wb") as f:
        f.write(b"hello from the parity test\n")
    big = os.path.join(work, "big.bin")
    write_random(big, 12 * 1024 * 1024 + 12345, 1)
    d.mb("parity-bucket")
    d.put(small, "parity-bucket", "docs/small.txt")
    d.put(small, "parity-bucket", "docs/gone.txt")
    d.upload(big, "parity-bucket", "images/big.bin")
    d.rm("parity-bucket", "docs/gone.txt")
    got = d.ls("parity-bucket")
    want = [("docs/small.txt", "27"), ("images/big.bin", str(12 * 1024 * 1024 + 12345))]
    if got != want:
        raise Failed("%s: listing %r, expected %r" % (d.name, got, want))


def sparse_image(path):
    """A 1 GiB sparse raw image with data in blocks 0, 3 and 2047 (the last)."""
    import random
    rng = random.Random(7)
    blk = 512 * 1024
    with open(path, "wb") as f:
        f.truncate(1 << 30)
        for index in (0, 3, 2047):
            f.seek(index * blk)
            f.write(rng.randbytes(blk // 2))


def scenario_ebs_register(d, sim, work):
    raw = os.path.join(work, "disk.raw")
    sparse_image(raw)
    snap = d.ebs_upload(raw, "parity ebs upload")
    d.register_image("parity-ebs-image", snap)


def scenario_import_snapshot(d, sim, work):
    raw = os.path.join(work, "import.bin")
    write_random(raw, 3 * 1024 * 1024, 3)
    d.mb("parity-import")
    d.put(raw, "parity-import", "disks/import.raw")
    task, snap = d.import_snapshot("parity-import", "disks/import.raw", "parity import")
    if not task.startswith("import-snap-") or not snap.startswith("snap-"):
        raise Failed("%s: import gave %r %r" % (d.name, task, snap))
    d.register_image("parity-imported", snap)


SCENARIOS = {
    "ec2_instances": scenario_ec2_instances,
    "ec2_images": scenario_ec2_images,
    "s3_objects": scenario_s3_objects,
    "ebs_register": scenario_ebs_register,
    "import_snapshot": scenario_import_snapshot,
}

# -- normalisation and comparison ----------------------------------------------------------

TIME_KEYS = {"created", "launched", "started", "last_modified", "initiated", "completed_at",
             "start_time", "time", "timeout"}
STATE_DIR_RE = re.compile(r"^/.*?/awssim-test-[^/]+/state/")
ID_RE = re.compile(r"^(i|r|vol|ami|snap|import-snap)-[0-9a-f]{8,17}$")
UUID_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
READ_ONLY = re.compile(r":(Describe|List|Get|Head)")


def normalise(state):
    """A copy of a /_kiln/state dump with the legitimately differing parts replaced."""
    ids = {}
    counters = {}

    def id_of(s):
        if s not in ids:
            prefix = s.rsplit("-", 1)[0]
            counters[prefix] = counters.get(prefix, 0) + 1
            ids[s] = "<%s#%d>" % (prefix, counters[prefix])
        return ids[s]

    def walk(v, key=None, in_uploads=False):
        if isinstance(v, dict):
            out = {}
            for k, x in v.items():
                nk = id_of(k) if ID_RE.match(k) else k
                if in_uploads:
                    nk = "<upload#%d>" % (len(out) + 1)
                out[nk] = walk(x, k, k == "multipart_uploads")
            return out
        if isinstance(v, list):
            return [walk(x, key) for x in v]
        if key in TIME_KEYS and isinstance(v, (int, float)):
            return "<time>"
        if isinstance(v, str):
            if ID_RE.match(v):
                return id_of(v)
            if UUID_RE.match(v):
                return "<uuid>"
            if STATE_DIR_RE.match(v):
                v = STATE_DIR_RE.sub("<state-dir>/", v)
            # Ids inside text, e.g. "Created by CreateImage(i-…) for ami-…".
            return re.sub(r"\b(?:i|r|vol|ami|snap|import-snap)-[0-9a-f]{8,17}\b",
                          lambda m: id_of(m.group(0)), v)
        return v

    out = {k: v for k, v in state.items()
           if k not in ("requests", "auth_failures", "credentials")}
    # EBS PutSnapshotBlock's optional x-amz-Progress: Kiln reports it, the CLI only with
    # --progress, and with blocks in flight in parallel the last value depends on which
    # block lands last.
    out = json.loads(json.dumps(out))
    for region in out.get("regions", {}).values():
        for snap in region.get("snapshots", {}).values():
            if snap.get("ebs"):
                snap.pop("progress", None)
    out = walk(out)
    out["mutating_requests"] = {k: n for k, n in sorted(state.get("requests", {}).items())
                                if not READ_ONLY.search(k)}
    out["auth_failure_count"] = sum(state.get("auth_failures", {}).values())
    return out


def compare(a, b, name_a="kiln-aws", name_b="aws-cli"):
    """'' when the normalised states are equal, else a unified diff."""
    ta = json.dumps(normalise(a), indent=1, sort_keys=True).splitlines()
    tb = json.dumps(normalise(b), indent=1, sort_keys=True).splitlines()
    if ta == tb:
        return ""
    return "\n".join(difflib.unified_diff(ta, tb, name_a, name_b, lineterm="", n=6))


def run_scenario(name, kiln_binary, delay_scale=DELAY_SCALE, seed=SEED, perturb=False):
    fn = SCENARIOS[name]
    results = {}
    with simctl.Simulator(delay_scale=delay_scale, seed=seed) as sa, \
            simctl.Simulator(delay_scale=delay_scale, seed=seed) as sb, \
            tempfile.TemporaryDirectory(prefix="parity-") as work:
        drivers = [(Kiln(kiln_binary, sa, perturb), sa), (Cli(sb), sb)]

        def go(d, sim):
            w = os.path.join(work, d.name)
            os.mkdir(w)
            try:
                fn(d, sim, w)
                results[d.name] = sim.state()
            except Exception as e:  # reported below, with the simulator log
                results[d.name] = e
                results[d.name + ".log"] = sim.read_log()

        threads = [threading.Thread(target=go, args=x) for x in drivers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    for n in ("kiln-aws", "aws-cli"):
        if isinstance(results[n], Exception):
            raise Failed("%s: scenario %s failed: %s\nsimulator log tail:\n%s" % (
                n, name, results[n], results[n + ".log"][-3000:]))
    return results["kiln-aws"], results["aws-cli"]


# -- self-test: the comparison can fail ----------------------------------------------------

def self_test():
    """The comparison must see a changed tag value, a missing object, a different ETag and a
    different number of mutating calls, and must not see ids, times or client tokens."""
    import copy
    base = {
        "regions": {"us-east-1": {
            "instances": {"i-0123456789abcdef0": {
                "id": "i-0123456789abcdef0", "image": "ami-0a6a3a4506513270e",
                "tags": {"Name": "parity"}, "launched": 1.5, "token": None,
                "volume": "vol-13d9c172411e20b8f"}},
            "images": {"ami-0a6a3a4506513270e": {"name": "amd64"},
                       "ami-95d9dc9f81818e811": {"name": "arm64"}},
            "snapshots": {}, "import_tasks": {}}},
        "s3": {"b": {"created": 2.0, "objects": {"k": {"etag": "\"abc-2\"", "size": 3}},
                     "multipart_uploads": {}}},
        "requests": {"ec2:RunInstances": 1, "ec2:DescribeInstances": 4},
        "auth_failures": {},
    }
    checks = 0
    # Legitimate differences: other ids (consistently), times, polls.
    same = copy.deepcopy(base)
    # (a dict's order is its creation order; images come before instances in the dump)
    same["regions"]["us-east-1"] = {k: same["regions"]["us-east-1"][k]
                                    for k in ("images", "instances", "snapshots",
                                              "import_tasks")}
    inst = same["regions"]["us-east-1"]["instances"].pop("i-0123456789abcdef0")
    inst.update(id="i-fedcba9876543210f", launched=9.0, volume="vol-ffffffffffffffff1")
    same["regions"]["us-east-1"]["instances"]["i-fedcba9876543210f"] = inst
    same["s3"]["b"]["created"] = 3.0
    same["requests"]["ec2:DescribeInstances"] = 1
    if compare(base, same):
        raise Failed("self-test: legitimate differences reported:\n" + compare(base, same))
    checks += 1

    def must_differ(what, mutate):
        nonlocal checks
        other = copy.deepcopy(base)
        mutate(other)
        diff = compare(base, other)
        if not diff:
            raise Failed("self-test: %s not detected" % what)
        checks += 1
        return diff

    inst0 = lambda s: s["regions"]["us-east-1"]["instances"]["i-0123456789abcdef0"]  # noqa
    d = must_differ("changed tag value", lambda s: inst0(s)["tags"].update(Name="other"))
    if '"Name": "other"' not in d:
        raise Failed("self-test: the diff does not show the changed value:\n" + d)
    must_differ("missing object", lambda s: s["s3"]["b"]["objects"].clear())
    must_differ("different ETag", lambda s: s["s3"]["b"]["objects"]["k"].update(etag='"x-2"'))
    must_differ("extra mutating call", lambda s: s["requests"].update({"ec2:RunInstances": 2}))
    must_differ("client token missing on one side",
                lambda s: inst0(s).update(token="34d3d61a-e0ef-4f49-8990-ea21c561cc46"))
    must_differ("different image reference",
                lambda s: inst0(s).update(image="ami-95d9dc9f81818e811"))
    must_differ("auth failure", lambda s: s["auth_failures"].update(AuthFailure=1))
    print("self-test: %d checks passed" % checks)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln-aws", default=os.path.join(HERE, "..", "..", "build", "cloud",
                                                        "kiln-aws"))
    ap.add_argument("--delay-scale", type=float, default=DELAY_SCALE)
    ap.add_argument("--seed", type=int, default=SEED)
    ap.add_argument("--self-test", action="store_true")
    ap.add_argument("--show", action="store_true", help="print the normalised state")
    ap.add_argument("--perturb", action="store_true",
                    help="kiln-aws side sets other tag values in create-tags: the run must "
                         "find the difference (exit 0 only when it does)")
    ap.add_argument("scenario", nargs="?", choices=sorted(SCENARIOS))
    args = ap.parse_args()
    try:
        if args.self_test:
            self_test()
            return 0
        if not args.scenario:
            ap.error("a scenario or --self-test")
        a, b = run_scenario(args.scenario, args.kiln_aws, args.delay_scale, args.seed,
                            args.perturb)
        if args.show:
            print(json.dumps(normalise(a), indent=1, sort_keys=True))
        diff = compare(a, b)
        if args.perturb:
            if "-perturbed" not in diff:
                print("parity %s --perturb: the changed tag value was NOT detected:\n%s"
                      % (args.scenario, diff))
                return 1
            print("parity %s --perturb: difference detected as it must be:\n%s"
                  % (args.scenario, diff))
            return 0
        if diff:
            print("parity %s: the end states differ (- kiln-aws, + aws-cli):\n%s"
                  % (args.scenario, diff))
            return 1
        print("parity %s: equal end states" % args.scenario)
        return 0
    except Failed as e:
        print("parity: %s" % e, file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
