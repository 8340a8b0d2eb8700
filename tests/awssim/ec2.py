"""EC2 (Query protocol, XML in the 2016-11-15 namespace): instances, images, snapshots, tags,
snapshot imports, regions.  State machines advance lazily from timestamps, with every delay
multiplied by the simulator's --delay-scale."""

import math
import os
import re
import time
from xml.sax.saxutils import escape

from util import AwsError, iso8601, xml_elem, wildcard_match, encode_token, decode_token

NS = "http://ec2.amazonaws.com/doc/2016-11-15/"
REGIONS = ["us-east-1", "us-east-2", "us-west-1", "us-west-2", "ca-central-1", "eu-west-1",
           "eu-west-2", "eu-west-3", "eu-central-1", "eu-north-1", "ap-south-1",
           "ap-northeast-1", "ap-northeast-2", "ap-southeast-1", "ap-southeast-2", "sa-east-1"]
STATE_CODES = {"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48,
               "stopping": 64, "stopped": 80}
# Base durations in seconds, multiplied by --delay-scale.
DELAYS = {"boot": 20, "stop": 20, "terminate": 20, "snapshot": 90, "image": 120,
          "register": 5, "copy": 120, "import": 60}
PUBLIC_OWNER = "136693071363"  # the account that publishes the seeded public images
GIB = 1 << 30
BLOCK = 512 * 1024


def operation_name(req):
    return req.form().get("Action", "Unknown")


def throttle_error():
    return AwsError(503, "RequestLimitExceeded", "Request limit exceeded.")


def error_response(req, err):
    from awssim import Response
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>%s</Code>'
            '<Message>%s</Message></Error></Errors><RequestID>%s</RequestID></Response>'
            % (escape(err.code), escape(err.message), req.request_id))
    return Response(err.status, body.encode(), content_type="text/xml;charset=UTF-8")


def ok(req, action, fields):
    from awssim import Response
    inner = "".join(xml_elem(k, v) for k, v in fields.items())
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<%sResponse xmlns="%s"><requestId>%s'
            '</requestId>%s</%sResponse>' % (action, NS, req.request_id, inner, action))
    return Response(200, body.encode(), content_type="text/xml;charset=UTF-8")


# -- parameters ---------------------------------------------------------------------------

def nest(params):
    """Turn flat Query parameters (Filter.1.Value.2=x) into nested dicts."""
    root = {}
    for key, value in params.items():
        node = root
        parts = key.split(".")
        for part in parts[:-1]:
            nxt = node.get(part)
            if not isinstance(nxt, dict):
                nxt = {}
                node[part] = nxt
            node = nxt
        node[parts[-1]] = value
    return root


def lst(node):
    """Members of a Query list (keys 1, 2, ...), in index order."""
    if not isinstance(node, dict):
        return []
    items = [(int(k), v) for k, v in node.items() if k.isdigit()]
    return [v for _, v in sorted(items)]


def strs(node):
    return [v for v in lst(node) if isinstance(v, str)]


def req_param(p, name):
    v = p.get(name)
    if v is None or v == "":
        raise AwsError(400, "MissingParameter",
                       "The request must contain the parameter %s" % name)
    return v


def truthy(v):
    return str(v).lower() == "true"


def tag_specs(n, rtype):
    tags = {}
    for spec in lst(n.get("TagSpecification")):
        if spec.get("ResourceType") == rtype:
            for t in lst(spec.get("Tag")):
                tags[t.get("Key", "")] = t.get("Value", "")
    return tags


def tagset(tags):
    return [{"key": k, "value": v} for k, v in tags.items()]


def parse_filters(n, known):
    filters = []
    for f in lst(n.get("Filter")):
        name = f.get("Name", "")
        if name not in known and not name.startswith("tag:"):
            raise AwsError(400, "InvalidParameterValue", "The filter '%s' is invalid" % name)
        filters.append((name, strs(f.get("Value"))))
    return filters


def apply_filters(recs, filters, known):
    out = []
    for r in recs:
        good = True
        for name, values in filters:
            if name.startswith("tag:"):
                v = r["tags"].get(name[4:])
                have = [v] if v is not None else []
            else:
                have = known[name](r)
            if not any(wildcard_match(pat, h) for pat in values for h in have):
                good = False
                break
        if good:
            out.append(r)
    return out


def paginate(items, p, lo=5, hi=1000):
    start = 0
    tok = p.get("NextToken")
    if tok:
        d = decode_token(tok)
        if not isinstance(d, dict) or not isinstance(d.get("o"), int):
            raise AwsError(400, "InvalidPaginationToken", "The pagination token is invalid.")
        start = d["o"]
    mr = p.get("MaxResults")
    if mr is None:
        return items[start:], None
    try:
        mr = int(mr)
    except ValueError:
        raise AwsError(400, "InvalidParameterValue", "Invalid value '%s' for MaxResults" % mr)
    if mr < lo or mr > hi:
        raise AwsError(400, "InvalidParameterValue", "Value ( %d ) for parameter maxResults is "
                       "invalid. Expecting a value between %d and %d." % (mr, lo, hi))
    page = items[start:start + mr]
    nxt = encode_token({"o": start + mr}) if start + mr < len(items) else None
    return page, nxt


# -- state --------------------------------------------------------------------------------

class RegionState:
    def __init__(self, sim, name):
        self.sim = sim
        self.name = name
        self.instances = {}
        self.images = {}
        self.snapshots = {}
        self.import_tasks = {}
        self.reservations = {}
        now = time.time()
        # Public images every region offers, so RunInstances has something to launch.
        for arch in ("x86_64", "arm64"):
            snap = self.add_snapshot(PUBLIC_OWNER, 8, "debian-12 %s root" % arch, "completed")
            img = {
                "id": sim.new_id("ami"), "name": "debian-12-%s-20240101-1" % (
                    "amd64" if arch == "x86_64" else "arm64"),
                "description": "Debian 12 (20240101-1)", "owner": PUBLIC_OWNER,
                "alias": "amazon", "state": "available", "created": now,
                "architecture": arch, "root_device": "/dev/xvda",
                "virtualization": "hvm", "ena": True, "boot_mode": None,
                "bdm": [{"device": "/dev/xvda", "snapshot": snap["id"], "size": 8,
                         "type": "gp3", "delete": True}],
                "launch_users": set(), "launch_groups": {"all"}, "tags": {},
                "timeline": [], "source_instance": None,
            }
            self.images[img["id"]] = img

    def add_snapshot(self, owner, size_gib, description, status, timeline=None, tags=None):
        snap = {
            "id": self.sim.new_id("snap"), "volume": "vol-ffffffff", "owner": owner,
            "size": size_gib, "description": description, "status": status,
            "started": time.time(), "tags": dict(tags or {}),
            "timeline": list(timeline or []), "cvp_users": set(), "cvp_groups": set(),
            "blocks": {}, "source": None, "ebs": False, "bytes_received": 0,
        }
        self.snapshots[snap["id"]] = snap
        return snap

    def advance(self):
        now = time.time()
        for coll in (self.instances, self.images, self.snapshots):
            for rec in coll.values():
                key = "status" if coll is self.snapshots else "state"
                while rec["timeline"] and rec["timeline"][0][0] <= now:
                    _, new = rec["timeline"].pop(0)
                    rec[key] = new
                    if coll is self.instances and new in ("stopped", "terminated"):
                        rec["reason"] = ("Client.UserInitiatedShutdown: User initiated "
                                         "shutdown")
        for task in self.import_tasks.values():
            self.advance_import(task, now)

    def advance_import(self, task, now):
        if task["status"] != "active":
            return
        frac = (now - task["started"]) / max(task["duration"], 1e-6)
        if task.get("error"):
            if frac >= 0.2:
                task["status"] = "deleted"
                task["message"] = task["error"]
            return
        if frac < 1:
            task["progress"] = str(min(99, int(frac * 100)))
            task["message"] = ("pending" if frac < 0.1 else "downloading/converting"
                               if frac < 0.8 else "validating")
            return
        size = task["size"]
        snap = self.add_snapshot(task["owner"], max(1, math.ceil(size / GIB)),
                                 "Created by AWS-VMImport service for %s" % task["id"],
                                 "completed")
        snap["source"] = task["source"]
        snap["source_size"] = size
        task["snapshot"] = snap["id"]
        task["status"] = "completed"
        task["progress"] = None
        task["message"] = None

    def dump(self):
        self.advance()

        def clean(rec):
            out = {}
            for k, v in rec.items():
                if k == "blocks":
                    out["block_count"] = len(v)
                elif k == "source_blocks":
                    out["source_block_count"] = len(v)
                elif k == "timeline":
                    continue
                elif isinstance(v, set):
                    out[k] = sorted(v)
                else:
                    out[k] = v
            return out
        return {
            "instances": {k: clean(v) for k, v in self.instances.items()},
            "images": {k: clean(v) for k, v in self.images.items()},
            "snapshots": {k: clean(v) for k, v in self.snapshots.items()},
            "import_tasks": {k: clean(v) for k, v in self.import_tasks.items()},
        }


# -- rendering ----------------------------------------------------------------------------

def render_instance(inst, region):
    ip = inst["ip"]
    state = inst["state"]
    out = {
        "instanceId": inst["id"], "imageId": inst["image"],
        "instanceState": {"code": STATE_CODES[state], "name": state},
        "privateDnsName": "ip-%s.ec2.internal" % ip.replace(".", "-")
        if state != "terminated" else "",
        "dnsName": "", "reason": inst.get("reason", ""),
        "keyName": inst.get("key"), "amiLaunchIndex": inst["index"], "productCodes": [],
        "instanceType": inst["type"], "launchTime": iso8601(inst["launched"]),
        "placement": {"availabilityZone": region + "a", "groupName": "", "tenancy": "default"},
        "monitoring": {"state": "disabled"},
    }
    if state != "terminated":
        out.update({"subnetId": inst["subnet"], "vpcId": "vpc-0a1b2c3d4e5f60718",
                    "privateIpAddress": ip})
    out.update({
        "sourceDestCheck": True,
        "groupSet": [{"groupId": g, "groupName": "default"} for g in inst["groups"]],
    })
    if inst.get("reason"):
        out["stateReason"] = {"code": "Client.UserInitiatedShutdown",
                              "message": inst["reason"]}
    out.update({
        "architecture": inst["arch"], "rootDeviceType": "ebs", "rootDeviceName": "/dev/xvda",
        "blockDeviceMapping": [] if state == "terminated" else [{
            "deviceName": "/dev/xvda",
            "ebs": {"volumeId": inst["volume"], "status": "attached",
                    "attachTime": iso8601(inst["launched"]), "deleteOnTermination": True}}],
        "virtualizationType": "hvm", "clientToken": inst.get("token") or "",
        "tagSet": tagset(inst["tags"]) if inst["tags"] else None,
        "hypervisor": "xen", "networkInterfaceSet": [], "ebsOptimized": False,
        "enaSupport": True,
    })
    return out


def render_image(img):
    out = {
        "imageId": img["id"],
        "imageLocation": "%s/%s" % (img.get("alias") or img["owner"], img["name"]),
        "imageState": img["state"], "imageOwnerId": img["owner"],
        "creationDate": iso8601(img["created"]),
        "isPublic": "all" in img["launch_groups"],
        "architecture": img["architecture"], "imageType": "machine",
        "imageOwnerAlias": img.get("alias"),
        "name": img["name"], "description": img.get("description"),
        "rootDeviceType": "ebs", "rootDeviceName": img["root_device"],
        "blockDeviceMapping": [{
            "deviceName": b["device"],
            "ebs": {"snapshotId": b["snapshot"], "volumeSize": b["size"],
                    "deleteOnTermination": b["delete"], "volumeType": b["type"],
                    "encrypted": False}} for b in img["bdm"]],
        "virtualizationType": img["virtualization"], "tagSet": tagset(img["tags"])
        if img["tags"] else None,
        "hypervisor": "xen", "enaSupport": img.get("ena"), "bootMode": img.get("boot_mode"),
        "platformDetails": "Linux/UNIX", "usageOperation": "RunInstances",
    }
    if img["state"] == "failed":
        out["stateReason"] = {"code": "Client.InvalidSnapshot",
                              "message": img.get("failure", "failed")}
    return out


def render_snapshot(snap):
    return {
        "snapshotId": snap["id"], "volumeId": snap["volume"], "status": snap["status"],
        "startTime": iso8601(snap["started"]),
        "progress": "100%" if snap["status"] == "completed" else "0%",
        "ownerId": snap["owner"], "volumeSize": snap["size"],
        "description": snap["description"], "encrypted": False,
        "tagSet": tagset(snap["tags"]) if snap["tags"] else None,
        "storageTier": "standard",
    }


def render_import(task):
    detail = {
        "description": task.get("description"), "diskImageSize": float(task["size"])
        if task["status"] == "completed" else None,
        "format": task["format"], "progress": task.get("progress"),
        "snapshotId": task.get("snapshot"), "status": task["status"],
        "statusMessage": task.get("message"),
        "userBucket": {"s3Bucket": task["bucket"], "s3Key": task["key"]},
        "url": task.get("url"),
    }
    return {"description": task.get("description"), "importTaskId": task["id"],
            "snapshotTaskDetail": detail,
            "tagSet": tagset(task["tags"]) if task["tags"] else None}


# -- operations ---------------------------------------------------------------------------

ID_RE = re.compile(r"^(i|ami|snap|import-snap)-[0-9a-f]{8,17}$")


def check_id(value, prefix, what):
    if not re.match(r"^%s-[0-9a-f]{8,17}$" % re.escape(prefix), value or ""):
        raise AwsError(400, "Invalid%s.Malformed" % what, "Invalid id: \"%s\"" % value)


def visible_image(img, account):
    return (img["owner"] == account or "all" in img["launch_groups"]
            or account in img["launch_users"])


def visible_snapshot(snap, account):
    return (snap["owner"] == account or "all" in snap["cvp_groups"]
            or account in snap["cvp_users"])


def get_instance(r, iid, account):
    check_id(iid, "i", "InstanceID")
    inst = r.instances.get(iid)
    if inst is None or inst["owner"] != account:
        raise AwsError(400, "InvalidInstanceID.NotFound",
                       "The instance ID '%s' does not exist" % iid)
    return inst


def get_image(r, iid, account, own=False):
    check_id(iid, "ami", "AMIID")
    img = r.images.get(iid)
    if img is None or not visible_image(img, account):
        raise AwsError(400, "InvalidAMIID.NotFound", "The image id '[%s]' does not exist" % iid)
    if own and img["owner"] != account:
        raise AwsError(400, "AuthFailure", "Not authorized for image:%s" % iid)
    return img


def get_snapshot(r, sid, account, own=False):
    check_id(sid, "snap", "Snapshot")
    snap = r.snapshots.get(sid)
    if snap is None or not visible_snapshot(snap, account):
        raise AwsError(400, "InvalidSnapshot.NotFound",
                       "The snapshot '%s' does not exist." % sid)
    if own and snap["owner"] != account:
        raise AwsError(400, "InvalidSnapshot.NotFound",
                       "The snapshot '%s' does not exist." % sid)
    return snap


def state_change(inst, prev):
    return {"instanceId": inst["id"],
            "currentState": {"code": STATE_CODES[inst["state"]], "name": inst["state"]},
            "previousState": {"code": STATE_CODES[prev], "name": prev}}


def op_describe_regions(sim, req, r, n, p):
    names = strs(n.get("RegionName"))
    for name in names:
        if name not in REGIONS:
            raise AwsError(400, "InvalidParameterValue", "Invalid region name: %s" % name)
    known = {"region-name": lambda x: [x["n"]], "endpoint": lambda x: [x["e"]],
             "opt-in-status": lambda x: ["opt-in-not-required"]}
    recs = [{"n": x, "e": "ec2.%s.amazonaws.com" % x, "tags": {}} for x in REGIONS
            if not names or x in names]
    recs = apply_filters(recs, parse_filters(n, known), known)
    return {"regionInfo": [{"regionName": x["n"], "regionEndpoint": x["e"],
                            "optInStatus": "opt-in-not-required"} for x in recs]}


def op_run_instances(sim, req, r, n, p):
    account = req.cred.account
    image_id = req_param(p, "ImageId")
    img = get_image(r, image_id, account)
    if img["state"] != "available":
        raise AwsError(400, "InvalidAMIID.Unavailable",
                       "The image id '[%s]' is not available" % image_id)
    try:
        lo, hi = int(req_param(p, "MinCount")), int(req_param(p, "MaxCount"))
    except ValueError:
        raise AwsError(400, "InvalidParameterValue", "MinCount and MaxCount must be integers")
    if lo < 1 or hi < lo:
        raise AwsError(400, "InvalidParameterValue", "Invalid value for MinCount/MaxCount")
    if hi > 20:
        raise AwsError(400, "InstanceLimitExceeded", "You have requested more instances (%d) "
                       "than your current instance limit of 20 allows" % hi)
    itype = p.get("InstanceType", "m1.small")
    if not re.match(r"^[a-z0-9-]+\.[a-z0-9]+$", itype):
        raise AwsError(400, "InvalidParameterValue",
                       "Invalid value '%s' for InstanceType." % itype)
    token = p.get("ClientToken")
    if token:
        for res in r.reservations.values():
            if res["token"] == token and res["owner"] == account:
                return reservation_fields(r, res)
    res_id = sim.new_id("r")
    tags = tag_specs(n, "instance")
    now = time.time()
    ids = []
    for i in range(hi):
        iid = sim.new_id("i")
        inst = {
            "id": iid, "image": image_id, "type": itype, "state": "pending", "owner": account,
            "launched": now, "index": i, "key": p.get("KeyName"), "token": token,
            "ip": "172.31.%d.%d" % (sim.rng.randrange(256), sim.rng.randrange(1, 255)),
            "subnet": p.get("SubnetId", "subnet-0123456789abcdef0"),
            "groups": strs(n.get("SecurityGroupId")) or ["sg-0123456789abcdef0"],
            "arch": img["architecture"], "volume": sim.new_id("vol"), "tags": dict(tags),
            "user_data": p.get("UserData"), "reservation": res_id,
            "timeline": [(now + sim.delay(DELAYS["boot"]), "running")],
        }
        r.instances[iid] = inst
        ids.append(iid)
    res = {"id": res_id, "owner": account, "token": token, "instances": ids}
    r.reservations[res_id] = res
    return reservation_fields(r, res)


def reservation_fields(r, res):
    return {"reservationId": res["id"], "ownerId": res["owner"], "groupSet": [],
            "instancesSet": [render_instance(r.instances[i], r.name) for i in res["instances"]]}


INSTANCE_FILTERS = {
    "instance-id": lambda x: [x["id"]],
    "instance-state-name": lambda x: [x["state"]],
    "instance-state-code": lambda x: [str(STATE_CODES[x["state"]])],
    "image-id": lambda x: [x["image"]],
    "instance-type": lambda x: [x["type"]],
    "reservation-id": lambda x: [x["reservation"]],
    "tag-key": lambda x: list(x["tags"]),
    "tag-value": lambda x: list(x["tags"].values()),
    "private-ip-address": lambda x: [x["ip"]],
    "key-name": lambda x: [x["key"]] if x.get("key") else [],
}


def op_describe_instances(sim, req, r, n, p):
    account = req.cred.account
    ids = strs(n.get("InstanceId"))
    if ids and p.get("MaxResults"):
        raise AwsError(400, "InvalidParameterCombination", "The parameter instancesSet cannot "
                       "be used with the parameter maxResults")
    filters = parse_filters(n, INSTANCE_FILTERS)
    if ids:
        recs = [get_instance(r, i, account) for i in ids]
    else:
        recs = [x for x in r.instances.values() if x["owner"] == account]
    recs = apply_filters(recs, filters, INSTANCE_FILTERS)
    page, nxt = paginate(recs, p)
    reservations = []
    by_res = {}
    for inst in page:
        res = by_res.get(inst["reservation"])
        if res is None:
            res = {"reservationId": inst["reservation"], "ownerId": account, "groupSet": [],
                   "instancesSet": []}
            by_res[inst["reservation"]] = res
            reservations.append(res)
        res["instancesSet"].append(render_instance(inst, r.name))
    return {"reservationSet": reservations, "nextToken": nxt}


def op_stop_instances(sim, req, r, n, p):
    ids = strs(n.get("InstanceId"))
    if not ids:
        raise AwsError(400, "MissingParameter",
                       "The request must contain the parameter InstanceId")
    insts = [get_instance(r, i, req.cred.account) for i in ids]
    for inst in insts:
        if inst["state"] in ("terminated", "shutting-down"):
            raise AwsError(400, "IncorrectInstanceState", "This instance '%s' is not in a "
                           "state from which it can be stopped." % inst["id"])
        if inst["state"] == "pending":
            raise AwsError(400, "IncorrectInstanceState", "The instance '%s' is not in a state "
                           "from which it can be stopped." % inst["id"])
    out = []
    now = time.time()
    for inst in insts:
        prev = inst["state"]
        if prev == "running":
            inst["state"] = "stopping"
            inst["timeline"] = [(now + sim.delay(DELAYS["stop"]), "stopped")]
        out.append(state_change(inst, prev))
    return {"instancesSet": out}


def op_start_instances(sim, req, r, n, p):
    ids = strs(n.get("InstanceId"))
    if not ids:
        raise AwsError(400, "MissingParameter",
                       "The request must contain the parameter InstanceId")
    insts = [get_instance(r, i, req.cred.account) for i in ids]
    for inst in insts:
        if inst["state"] in ("terminated", "shutting-down", "stopping"):
            raise AwsError(400, "IncorrectInstanceState", "The instance '%s' is not in a state "
                           "from which it can be started." % inst["id"])
    out = []
    now = time.time()
    for inst in insts:
        prev = inst["state"]
        if prev == "stopped":
            inst["state"] = "pending"
            inst.pop("reason", None)
            inst["timeline"] = [(now + sim.delay(DELAYS["boot"]), "running")]
        out.append(state_change(inst, prev))
    return {"instancesSet": out}


def op_terminate_instances(sim, req, r, n, p):
    ids = strs(n.get("InstanceId"))
    if not ids:
        raise AwsError(400, "MissingParameter",
                       "The request must contain the parameter InstanceId")
    insts = [get_instance(r, i, req.cred.account) for i in ids]
    out = []
    now = time.time()
    for inst in insts:
        prev = inst["state"]
        if prev not in ("terminated", "shutting-down"):
            inst["state"] = "shutting-down"
            inst["timeline"] = [(now + sim.delay(DELAYS["terminate"]), "terminated")]
        out.append(state_change(inst, prev))
    return {"instancesSet": out}


NAME_RE = re.compile(r"^[a-zA-Z0-9()\[\] ./\-'@_]{3,128}$")


def check_image_name(r, name, account):
    if not NAME_RE.match(name):
        raise AwsError(400, "InvalidAMIName.Malformed", "AMI names must be between 3 and 128 "
                       "characters long, and may contain letters, numbers, '(', ')', '.', "
                       "'-', '/' and '_'")
    for img in r.images.values():
        if img["owner"] == account and img["name"] == name:
            raise AwsError(400, "InvalidAMIName.Duplicate",
                           "AMI name %s is already in use by AMI %s" % (name, img["id"]))


def new_image(sim, r, account, name, desc, arch, bdm, delay, tags, **kw):
    now = time.time()
    img = {
        "id": sim.new_id("ami"), "name": name, "description": desc, "owner": account,
        "alias": None, "state": "pending", "created": now, "architecture": arch,
        "root_device": kw.get("root_device", "/dev/xvda"),
        "virtualization": kw.get("virtualization", "hvm"), "ena": kw.get("ena", True),
        "boot_mode": kw.get("boot_mode"), "bdm": bdm, "launch_users": set(),
        "launch_groups": set(), "tags": dict(tags), "source_instance": kw.get("instance"),
        "timeline": [(now + delay, "available")],
    }
    r.images[img["id"]] = img
    return img


def op_create_image(sim, req, r, n, p):
    account = req.cred.account
    inst = get_instance(r, req_param(p, "InstanceId"), account)
    name = req_param(p, "Name")
    if inst["state"] not in ("running", "stopped"):
        raise AwsError(400, "IncorrectInstanceState", "The instance '%s' is not in a state "
                       "from which it can be imaged." % inst["id"])
    check_image_name(r, name, account)
    now = time.time()
    src = r.images.get(inst["image"])
    size = src["bdm"][0]["size"] if src and src["bdm"] else 8
    snap = r.add_snapshot(account, size, "", "pending",
                          [(now + sim.delay(DELAYS["snapshot"]), "completed")],
                          tag_specs(n, "snapshot"))
    img = new_image(sim, r, account, name, p.get("Description"), inst["arch"],
                    [{"device": "/dev/xvda", "snapshot": snap["id"], "size": size,
                      "type": "gp3", "delete": True}],
                    sim.delay(max(DELAYS["image"], DELAYS["snapshot"])),
                    tag_specs(n, "image"), instance=inst["id"])
    snap["description"] = "Created by CreateImage(%s) for %s" % (inst["id"], img["id"])
    return {"imageId": img["id"]}


def op_register_image(sim, req, r, n, p):
    account = req.cred.account
    name = req_param(p, "Name")
    check_image_name(r, name, account)
    bdm = []
    for b in lst(n.get("BlockDeviceMapping")):
        ebs = b.get("Ebs") or {}
        dev = b.get("DeviceName")
        if not dev:
            raise AwsError(400, "MissingParameter", "The request must contain the parameter "
                           "BlockDeviceMapping.DeviceName")
        sid = ebs.get("SnapshotId")
        if not sid:
            if b.get("VirtualName") or b.get("NoDevice") is not None:
                continue
            raise AwsError(400, "InvalidBlockDeviceMapping", "snapshotId or volumeSize is "
                           "required for device %s" % dev)
        snap = get_snapshot(r, sid, account)
        if snap["status"] != "completed":
            raise AwsError(400, "IncorrectState", "Snapshot '%s' is not 'completed'." % sid)
        size = int(ebs.get("VolumeSize", snap["size"]))
        if size < snap["size"]:
            raise AwsError(400, "InvalidBlockDeviceMapping", "Volume of %d GiB is smaller "
                           "than snapshot '%s', expect size >= %d" % (size, sid, snap["size"]))
        bdm.append({"device": dev, "snapshot": sid, "size": size,
                    "type": ebs.get("VolumeType", "gp2"),
                    "delete": ebs.get("DeleteOnTermination", "true").lower() == "true"})
    root = p.get("RootDeviceName", bdm[0]["device"] if bdm else None)
    if not bdm or not any(b["device"] == root for b in bdm):
        raise AwsError(400, "InvalidParameterValue", "Value (%s) for parameter rootDeviceName "
                       "is invalid. The root device must have a block device mapping with a "
                       "snapshot." % root)
    arch = p.get("Architecture", "x86_64")
    if arch not in ("i386", "x86_64", "arm64", "x86_64_mac", "arm64_mac"):
        raise AwsError(400, "InvalidParameterValue", "Invalid value '%s' for architecture"
                       % arch)
    img = new_image(sim, r, account, name, p.get("Description"), arch, bdm,
                    sim.delay(DELAYS["register"]), tag_specs(n, "image"), root_device=root,
                    virtualization=p.get("VirtualizationType", "paravirtual"),
                    ena=truthy(p["EnaSupport"]) if "EnaSupport" in p else None,
                    boot_mode=p.get("BootMode"))
    return {"imageId": img["id"]}


def op_copy_image(sim, req, r, n, p):
    account = req.cred.account
    src_region = req_param(p, "SourceRegion")
    if src_region not in REGIONS:
        raise AwsError(400, "InvalidParameterValue", "Invalid region: %s" % src_region)
    name = req_param(p, "Name")
    sr = sim.region(src_region)
    sr.advance()
    src = get_image(sr, req_param(p, "SourceImageId"), account)
    if src["state"] != "available":
        raise AwsError(400, "IncorrectState", "Image %s is not in available state"
                       % src["id"])
    token = p.get("ClientToken")
    if token:
        for img in r.images.values():
            if img.get("client_token") == token and img["owner"] == account:
                return {"imageId": img["id"]}
    now = time.time()
    bdm = []
    delay = sim.delay(DELAYS["copy"])
    for b in src["bdm"]:
        ss = sr.snapshots.get(b["snapshot"])
        snap = r.add_snapshot(account, b["size"], "", "pending", [(now + delay, "completed")])
        if ss is not None:
            snap["blocks"] = dict(ss["blocks"])
            snap["source"] = ss.get("source")
            snap["source_size"] = ss.get("source_size")
            snap["ebs"] = ss.get("ebs", False)
        bdm.append(dict(b, snapshot=snap["id"]))
    tags = dict(src["tags"]) if truthy(p.get("CopyImageTags", "false")) else {}
    img = new_image(sim, r, account, name, p.get("Description", src.get("description")),
                    src["architecture"], bdm, delay, tags, root_device=src["root_device"],
                    virtualization=src["virtualization"], ena=src.get("ena"),
                    boot_mode=src.get("boot_mode"))
    img["client_token"] = token
    img["copied_from"] = "%s:%s" % (src_region, src["id"])
    for b in bdm:
        r.snapshots[b["snapshot"]]["description"] = (
            "Copied for DestinationAmi %s from SourceAmi %s for SourceSnapshot %s"
            % (img["id"], src["id"], b["snapshot"]))
    return {"imageId": img["id"]}


IMAGE_FILTERS = {
    "image-id": lambda x: [x["id"]],
    "name": lambda x: [x["name"]],
    "state": lambda x: [x["state"]],
    "owner-id": lambda x: [x["owner"]],
    "owner-alias": lambda x: [x["alias"]] if x.get("alias") else [],
    "architecture": lambda x: [x["architecture"]],
    "is-public": lambda x: ["true" if "all" in x["launch_groups"] else "false"],
    "description": lambda x: [x["description"]] if x.get("description") else [],
    "tag-key": lambda x: list(x["tags"]),
    "tag-value": lambda x: list(x["tags"].values()),
    "block-device-mapping.snapshot-id": lambda x: [b["snapshot"] for b in x["bdm"]],
    "image-type": lambda x: ["machine"],
    "root-device-type": lambda x: ["ebs"],
    "virtualization-type": lambda x: [x["virtualization"]],
}


def op_describe_images(sim, req, r, n, p):
    account = req.cred.account
    ids = strs(n.get("ImageId"))
    owners = strs(n.get("Owner"))
    execs = strs(n.get("ExecutableBy"))
    filters = parse_filters(n, IMAGE_FILTERS)
    if ids:
        missing = []
        recs = []
        for i in ids:
            check_id(i, "ami", "AMIID")
            img = r.images.get(i)
            if img is None or not visible_image(img, account):
                missing.append(i)
            else:
                recs.append(img)
        if missing:
            raise AwsError(400, "InvalidAMIID.NotFound", "The image id '[%s]' does not exist"
                           % ", ".join(missing))
    else:
        recs = [x for x in r.images.values() if visible_image(x, account)]
    if owners:
        want = set()
        for o in owners:
            if o == "self":
                want.add(account)
            elif o in ("amazon", "aws-marketplace"):
                want.update(x["owner"] for x in r.images.values() if x.get("alias") == o)
            elif re.match(r"^\d{12}$", o):
                want.add(o)
            else:
                raise AwsError(400, "InvalidUserID.Malformed",
                               "Invalid user id: \"%s\"" % o)
        recs = [x for x in recs if x["owner"] in want]
    if execs:
        def can(x):
            return any((e == "all" and "all" in x["launch_groups"]) or
                       (e == "self" and visible_image(x, account)) or
                       (e in x["launch_users"]) or e == x["owner"] for e in execs)
        recs = [x for x in recs if can(x)]
    recs = apply_filters(recs, filters, IMAGE_FILTERS)
    page, nxt = paginate(recs, p)
    return {"imagesSet": [render_image(x) for x in page], "nextToken": nxt}


def op_deregister_image(sim, req, r, n, p):
    img = get_image(r, req_param(p, "ImageId"), req.cred.account, own=True)
    del r.images[img["id"]]
    return {"return": True}


def perm_changes(n, p, section, attr_user, attr_group, group_param):
    """Add/remove lists from either the structured form (LaunchPermission.Add.N.Group) or
    the flat form (OperationType + UserId.N + UserGroup.N)."""
    add_u, add_g, rem_u, rem_g = [], [], [], []
    sec = n.get(section) or {}
    for item in lst(sec.get("Add")):
        if item.get("UserId"):
            add_u.append(item["UserId"])
        if item.get("Group"):
            add_g.append(item["Group"])
    for item in lst(sec.get("Remove")):
        if item.get("UserId"):
            rem_u.append(item["UserId"])
        if item.get("Group"):
            rem_g.append(item["Group"])
    users, groups = strs(n.get("UserId")), strs(n.get(group_param))
    if users or groups:
        optype = p.get("OperationType")
        if optype not in ("add", "remove"):
            raise AwsError(400, "InvalidParameterValue", "OperationType must be add or remove")
        (add_u if optype == "add" else rem_u).extend(users)
        (add_g if optype == "add" else rem_g).extend(groups)
    for g in add_g + rem_g:
        if g != "all":
            raise AwsError(400, "InvalidParameterValue", "Invalid value '%s' for group" % g)
    for u in add_u + rem_u:
        if not re.match(r"^\d{12}$", u):
            raise AwsError(400, "InvalidUserID.Malformed", "Invalid user id: \"%s\"" % u)
    return add_u, add_g, rem_u, rem_g


def op_modify_image_attribute(sim, req, r, n, p):
    img = get_image(r, req_param(p, "ImageId"), req.cred.account, own=True)
    changed = False
    if "Description.Value" in p or (p.get("Attribute") == "description" and "Value" in p):
        img["description"] = p.get("Description.Value", p.get("Value"))
        changed = True
    attr = p.get("Attribute")
    if attr not in (None, "launchPermission", "description"):
        raise AwsError(400, "InvalidParameterValue", "Invalid attribute: %s" % attr)
    add_u, add_g, rem_u, rem_g = perm_changes(n, p, "LaunchPermission", "UserId", "Group",
                                              "UserGroup")
    if add_u or add_g or rem_u or rem_g:
        img["launch_users"] |= set(add_u)
        img["launch_groups"] |= set(add_g)
        img["launch_users"] -= set(rem_u)
        img["launch_groups"] -= set(rem_g)
        changed = True
    if not changed:
        raise AwsError(400, "MissingParameter", "The request must contain the parameter "
                       "LaunchPermission or Description")
    return {"return": True}


def op_describe_image_attribute(sim, req, r, n, p):
    img = get_image(r, req_param(p, "ImageId"), req.cred.account, own=True)
    attr = req_param(p, "Attribute")
    out = {"imageId": img["id"]}
    if attr == "launchPermission":
        out["launchPermission"] = ([{"group": g} for g in sorted(img["launch_groups"])] +
                                   [{"userId": u} for u in sorted(img["launch_users"])])
    elif attr == "description":
        out["description"] = {"value": img.get("description")} if img.get("description") \
            else {}
    elif attr == "blockDeviceMapping":
        out["blockDeviceMapping"] = render_image(img)["blockDeviceMapping"]
    elif attr == "bootMode":
        out["bootMode"] = {"value": img["boot_mode"]} if img.get("boot_mode") else {}
    elif attr in ("kernel", "ramdisk", "sriovNetSupport", "productCodes"):
        out[attr] = [] if attr == "productCodes" else {}
    else:
        raise AwsError(400, "InvalidParameterValue", "Value (%s) for parameter attribute is "
                       "invalid. Unknown attribute." % attr)
    return out


SNAPSHOT_FILTERS = {
    "snapshot-id": lambda x: [x["id"]],
    "status": lambda x: [x["status"]],
    "owner-id": lambda x: [x["owner"]],
    "description": lambda x: [x["description"]] if x.get("description") else [],
    "volume-id": lambda x: [x["volume"]],
    "volume-size": lambda x: [str(x["size"])],
    "tag-key": lambda x: list(x["tags"]),
    "tag-value": lambda x: list(x["tags"].values()),
}


def op_describe_snapshots(sim, req, r, n, p):
    account = req.cred.account
    ids = strs(n.get("SnapshotId"))
    owners = strs(n.get("Owner"))
    restorable = strs(n.get("RestorableBy"))
    if ids and p.get("MaxResults"):
        raise AwsError(400, "InvalidParameterCombination", "The parameter snapshotSet cannot "
                       "be used with the parameter maxResults")
    filters = parse_filters(n, SNAPSHOT_FILTERS)
    if ids:
        recs = [get_snapshot(r, i, account) for i in ids]
    else:
        recs = [x for x in r.snapshots.values() if visible_snapshot(x, account)]
    if owners:
        want = {account if o == "self" else o for o in owners}
        recs = [x for x in recs if x["owner"] in want]
    if restorable:
        recs = [x for x in recs if any(
            (u == "all" and "all" in x["cvp_groups"]) or
            ((u == "self" or u == account) and visible_snapshot(x, account)) or
            u in x["cvp_users"] for u in restorable)]
    recs = apply_filters(recs, filters, SNAPSHOT_FILTERS)
    page, nxt = paginate(recs, p)
    return {"snapshotSet": [render_snapshot(x) for x in page], "nextToken": nxt}


def op_delete_snapshot(sim, req, r, n, p):
    snap = get_snapshot(r, req_param(p, "SnapshotId"), req.cred.account, own=True)
    for img in r.images.values():
        if any(b["snapshot"] == snap["id"] for b in img["bdm"]):
            raise AwsError(400, "InvalidSnapshot.InUse", "The snapshot %s is currently in use "
                           "by %s" % (snap["id"], img["id"]))
    del r.snapshots[snap["id"]]
    return {"return": True}


def op_modify_snapshot_attribute(sim, req, r, n, p):
    snap = get_snapshot(r, req_param(p, "SnapshotId"), req.cred.account, own=True)
    attr = p.get("Attribute", "createVolumePermission")
    if attr != "createVolumePermission":
        raise AwsError(400, "InvalidParameterValue", "Invalid attribute: %s" % attr)
    add_u, add_g, rem_u, rem_g = perm_changes(n, p, "CreateVolumePermission", "UserId",
                                              "Group", "UserGroup")
    if not (add_u or add_g or rem_u or rem_g):
        raise AwsError(400, "MissingParameter", "The request must contain the parameter "
                       "createVolumePermission")
    snap["cvp_users"] |= set(add_u)
    snap["cvp_groups"] |= set(add_g)
    snap["cvp_users"] -= set(rem_u)
    snap["cvp_groups"] -= set(rem_g)
    return {"return": True}


def op_describe_snapshot_attribute(sim, req, r, n, p):
    snap = get_snapshot(r, req_param(p, "SnapshotId"), req.cred.account, own=True)
    attr = req_param(p, "Attribute")
    if attr != "createVolumePermission":
        raise AwsError(400, "InvalidParameterValue", "Invalid attribute: %s" % attr)
    return {"snapshotId": snap["id"], "createVolumePermission":
            [{"group": g} for g in sorted(snap["cvp_groups"])] +
            [{"userId": u} for u in sorted(snap["cvp_users"])]}


RESOURCE_TYPES = {"i": "instance", "ami": "image", "snap": "snapshot",
                  "import-snap": "import-snapshot-task"}


def find_resource(r, rid, account):
    if rid.startswith("import-snap-"):
        t = r.import_tasks.get(rid)
        if t is None or t["owner"] != account:
            raise AwsError(400, "InvalidID", "The ID '%s' is not valid" % rid)
        return t
    prefix = rid.split("-", 1)[0]
    if prefix == "i":
        return get_instance(r, rid, account)
    if prefix == "ami":
        return get_image(r, rid, account, own=True)
    if prefix == "snap":
        return get_snapshot(r, rid, account, own=True)
    raise AwsError(400, "InvalidID", "The ID '%s' is not valid" % rid)


def op_create_tags(sim, req, r, n, p):
    ids = strs(n.get("ResourceId"))
    if not ids:
        raise AwsError(400, "MissingParameter",
                       "The request must contain the parameter resourceIdSet")
    recs = [find_resource(r, i, req.cred.account) for i in ids]
    tags = lst(n.get("Tag"))
    for t in tags:
        k = t.get("Key", "")
        if not k or k.startswith("aws:") or len(k) > 128:
            raise AwsError(400, "InvalidParameterValue", "Tag key '%s' is invalid" % k)
    for rec in recs:
        for t in tags:
            rec["tags"][t["Key"]] = t.get("Value", "")
        if len(rec["tags"]) > 50:
            raise AwsError(400, "TagLimitExceeded", "The maximum number of Tags for a resource"
                           " has been reached.")
    return {"return": True}


def op_delete_tags(sim, req, r, n, p):
    ids = strs(n.get("ResourceId"))
    if not ids:
        raise AwsError(400, "MissingParameter",
                       "The request must contain the parameter resourceIdSet")
    recs = [find_resource(r, i, req.cred.account) for i in ids]
    tags = lst(n.get("Tag"))
    for rec in recs:
        if not tags:
            rec["tags"].clear()
        for t in tags:
            k = t.get("Key")
            if k in rec["tags"] and ("Value" not in t or rec["tags"][k] == t["Value"]):
                del rec["tags"][k]
    return {"return": True}


TAG_FILTERS = {
    "resource-id": lambda x: [x["resourceId"]],
    "resource-type": lambda x: [x["resourceType"]],
    "key": lambda x: [x["key"]],
    "value": lambda x: [x["value"]],
}


def op_describe_tags(sim, req, r, n, p):
    account = req.cred.account
    rows = []
    for coll, own in ((r.instances, lambda x: x["owner"] == account),
                      (r.images, lambda x: x["owner"] == account),
                      (r.snapshots, lambda x: x["owner"] == account),
                      (r.import_tasks, lambda x: x["owner"] == account)):
        for rec in coll.values():
            if not own(rec):
                continue
            rtype = RESOURCE_TYPES[rec["id"].rsplit("-", 1)[0]]
            for k, v in rec["tags"].items():
                rows.append({"resourceId": rec["id"], "resourceType": rtype, "key": k,
                             "value": v, "tags": {k: v}})
    rows.sort(key=lambda x: (x["resourceId"], x["key"]))
    rows = apply_filters(rows, parse_filters(n, TAG_FILTERS), TAG_FILTERS)
    page, nxt = paginate(rows, p)
    return {"tagSet": [{k: x[k] for k in ("resourceId", "resourceType", "key", "value")}
                       for x in page], "nextToken": nxt}


def op_import_snapshot(sim, req, r, n, p):
    account = req.cred.account
    dc = n.get("DiskContainer") or {}
    fmt = (dc.get("Format") or "").upper()
    if fmt not in ("RAW", "VHD", "VMDK"):
        raise AwsError(400, "InvalidParameter", "Invalid format '%s': must be one of RAW, VHD,"
                       " VMDK" % dc.get("Format"))
    ub = dc.get("UserBucket") or {}
    bucket, key, url = ub.get("S3Bucket"), ub.get("S3Key"), dc.get("Url")
    if url:
        m = re.match(r"^s3://([^/]+)/(.+)$", url)
        if not m:
            raise AwsError(400, "InvalidParameter", "Only s3:// URLs are supported: %s" % url)
        bucket, key = m.group(1), m.group(2)
    if not bucket or not key:
        raise AwsError(400, "InvalidParameter", "DiskContainer.UserBucket (S3Bucket, S3Key) or "
                       "DiskContainer.Url is required")
    token = p.get("ClientToken")
    if token:
        for t in r.import_tasks.values():
            if t.get("token") == token and t["owner"] == account:
                return import_result(t)
    obj = sim.s3.lookup(bucket, key)
    error = None
    size = 0
    source = None
    if obj is None:
        error = ("ClientError: Unable to access the S3 object s3://%s/%s: The specified key "
                 "does not exist." % (bucket, key))
    elif obj["size"] == 0:
        error = "ClientError: Disk validation failed [Unsupported disk image (empty file)]"
    else:
        size = obj["size"]
        # Keep the bytes even if the object is later deleted or overwritten.
        source = os.path.join(sim.state_dir, "ebs", "import-" + sim.new_id("src", 12))
        os.link(obj["path"], source)
    tid = sim.new_id("import-snap")
    task = {
        "id": tid, "owner": account, "format": fmt, "bucket": bucket, "key": key, "url": url,
        "description": p.get("Description"), "status": "active", "progress": "0",
        "message": "pending", "started": time.time(),
        "duration": sim.delay(DELAYS["import"]), "size": size, "source": source,
        "error": error, "snapshot": None, "token": token,
        "tags": tag_specs(n, "import-snapshot-task"),
    }
    r.import_tasks[tid] = task
    return import_result(task)


def import_result(t):
    d = render_import(t)
    return {"description": d["description"], "importTaskId": t["id"],
            "snapshotTaskDetail": d["snapshotTaskDetail"], "tags": d["tagSet"]}


def op_describe_import_snapshot_tasks(sim, req, r, n, p):
    account = req.cred.account
    ids = strs(n.get("ImportTaskId"))
    recs = []
    for i in ids:
        t = r.import_tasks.get(i)
        if t is None or t["owner"] != account:
            raise AwsError(400, "InvalidConversionTaskId.Malformed",
                           "The import task ID '%s' is not valid" % i)
        recs.append(t)
    if not ids:
        recs = [t for t in r.import_tasks.values() if t["owner"] == account]
    known = {"task-state": lambda x: [x["status"]]}
    recs = apply_filters(recs, parse_filters(n, known), known)
    page, nxt = paginate(recs, p, lo=1)
    return {"importSnapshotTaskSet": [render_import(t) for t in page], "nextToken": nxt}


OPS = {
    "DescribeRegions": op_describe_regions,
    "RunInstances": op_run_instances,
    "DescribeInstances": op_describe_instances,
    "StopInstances": op_stop_instances,
    "StartInstances": op_start_instances,
    "TerminateInstances": op_terminate_instances,
    "CreateImage": op_create_image,
    "RegisterImage": op_register_image,
    "CopyImage": op_copy_image,
    "DescribeImages": op_describe_images,
    "DeregisterImage": op_deregister_image,
    "ModifyImageAttribute": op_modify_image_attribute,
    "DescribeImageAttribute": op_describe_image_attribute,
    "DescribeSnapshots": op_describe_snapshots,
    "DeleteSnapshot": op_delete_snapshot,
    "ModifySnapshotAttribute": op_modify_snapshot_attribute,
    "DescribeSnapshotAttribute": op_describe_snapshot_attribute,
    "CreateTags": op_create_tags,
    "DeleteTags": op_delete_tags,
    "DescribeTags": op_describe_tags,
    "ImportSnapshot": op_import_snapshot,
    "DescribeImportSnapshotTasks": op_describe_import_snapshot_tasks,
}


def handle(sim, req):
    p = req.form()
    action = p.get("Action")
    req.op = action or "Unknown"
    if not action:
        raise AwsError(400, "MissingAction", "The request must contain the parameter Action")
    fn = OPS.get(action)
    if fn is None:
        raise AwsError(400, "InvalidAction",
                       "The action %s is not valid for this web service." % action)
    if req.region not in REGIONS:
        raise AwsError(401, "AuthFailure", "AWS was not able to validate the provided access "
                       "credentials")
    if truthy(p.get("DryRun", "false")):
        raise AwsError(412, "DryRunOperation",
                       "Request would have succeeded, but DryRun flag is set.")
    with sim.lock:
        r = sim.region(req.region)
        r.advance()
        fields = fn(sim, req, r, nest(p), p)
    if action == "RunInstances":
        return ok(req, action, fields)
    return ok(req, action, fields)
