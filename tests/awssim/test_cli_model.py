"""Response shapes checked against the service models that ship with the AWS CLI (botocore
data in the awscli package): every XML element the simulator emits for EC2, STS and S3
operations must be a member the CLI's parser knows, at that place in the tree, with a value of
the member's type.  This catches misspelt or misplaced elements that the CLI would silently
drop."""

import glob
import json
import os
import subprocess
import tempfile
import unittest
import urllib.parse
import xml.etree.ElementTree as ET
from unittest import mock

import awssim
import ec2
import s3
import sts

DATA_DIRS = ["/usr/lib/python3/dist-packages/awscli/botocore/data",
             "/usr/share/awscli/botocore/data"]


def load_model(service):
    for d in DATA_DIRS:
        files = glob.glob(os.path.join(d, service, "*", "service-2.json"))
        if files:
            with open(sorted(files)[-1]) as f:
                return json.load(f)
    raise AssertionError("no botocore model for %s (is the awscli package installed?)"
                         % service)


def strip_ns(el):
    for e in el.iter():
        if "}" in e.tag:
            e.tag = e.tag.split("}", 1)[1]
    return el


class ShapeChecker:
    def __init__(self, model):
        self.model = model
        self.shapes = model["shapes"]

    def member_name(self, name, member):
        return member.get("locationName", name)

    def check(self, el, shape_name, path, errors):
        shape = self.shapes[shape_name]
        t = shape["type"]
        if t == "structure":
            by_xml = {}
            for name, m in shape.get("members", {}).items():
                if m.get("location") in ("header", "headers", "statusCode"):
                    continue
                target = self.shapes[m["shape"]]
                if target["type"] == "list" and target.get("flattened"):
                    # Flattened lists repeat the member element itself, without a wrapper.
                    by_xml[self.member_name(name, m)] = (target["member"]["shape"], True)
                else:
                    by_xml[self.member_name(name, m)] = (m["shape"], False)
            for child in el:
                if child.tag not in by_xml:
                    errors.append("%s/%s: not in shape %s" % (path, child.tag, shape_name))
                    continue
                self.check(child, by_xml[child.tag][0], path + "/" + child.tag, errors)
        elif t == "list":
            item = shape["member"].get("locationName", "member")
            for child in el:
                if child.tag != item:
                    errors.append("%s/%s: list items must be <%s>" % (path, child.tag, item))
                    continue
                self.check(child, shape["member"]["shape"], path + "/" + item, errors)
        else:
            text = el.text or ""
            if len(el):
                errors.append("%s: scalar %s has children" % (path, shape_name))
            elif t == "boolean" and text not in ("true", "false"):
                errors.append("%s: boolean %r" % (path, text))
            elif t in ("integer", "long"):
                try:
                    int(text)
                except ValueError:
                    errors.append("%s: integer %r" % (path, text))
            elif t in ("double", "float"):
                try:
                    float(text)
                except ValueError:
                    errors.append("%s: number %r" % (path, text))
            elif "enum" in shape and text not in shape["enum"]:
                errors.append("%s: %r not in enum %s" % (path, text, shape_name))


class Headers:
    def __init__(self, items=()):
        self._items = list(items)

    def items(self):
        return list(self._items)

    def get(self, name, default=None):
        for n, v in self._items:
            if n.lower() == name.lower():
                return v
        return default


class Clock:
    t = 1_700_000_000.0

    def __call__(self):
        return self.t


class ModelConformance(unittest.TestCase):
    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="awssim-model-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.tmp]))
        self.clock = Clock()
        p = mock.patch("time.time", self.clock)
        p.start()
        self.addCleanup(p.stop)
        self.sim = awssim.Sim(self.tmp, [awssim.Credential("AKIDKILNTEST", "s")], (0.0, ()),
                              1.0, 9)
        self.errors = []

    def req(self, service, method="POST", path="/", query="", form=None, body=b"",
            headers=(), region="us-east-1"):
        if form is not None:
            body = urllib.parse.urlencode(form).encode()
            headers = list(headers) + [("Content-Type", "application/x-www-form-urlencoded")]
        r = awssim.Request(None, method, path, query, Headers(headers),
                           awssim.Body(data=body, size=len(body),
                                       md5=__import__("hashlib").md5(body).hexdigest()))
        r.service, r.region, r.cred = service, region, self.sim.creds["AKIDKILNTEST"]
        r.sig_info = {"payload_hash": "UNSIGNED-PAYLOAD"}
        r.host = "127.0.0.1:1"
        return r

    def query_op(self, module, model, action, region="us-east-1", **params):
        resp = module.handle(self.sim, self.req(module.__name__, form=dict(
            params, Action=action), region=region))
        root = strip_ns(ET.fromstring(resp.body))
        self.assertEqual(root.tag, action + "Response")
        out = model["operations"][action].get("output")
        checker = ShapeChecker(model)
        if module is sts:
            result = root.find(action + "Result")
            self.assertIsNotNone(result)
            checker.check(result, out["shape"], action, self.errors)
        else:
            rest = [c for c in root if c.tag != "requestId"]
            wrapper = ET.Element("x")
            wrapper.extend(rest)
            if out:
                checker.check(wrapper, out["shape"], action, self.errors)
            else:
                # Operations without an output shape answer <return>true</return>, as in
                # AWS's own CreateTags example.
                self.assertEqual([(c.tag, c.text) for c in rest], [("return", "true")], action)
        return root

    def tick(self, s):
        self.clock.t += s

    def test_ec2_responses_match_model(self):
        m = load_model("ec2")
        q = lambda action, **kw: self.query_op(ec2, m, action, **kw)  # noqa: E731
        q("DescribeRegions")
        img = q("DescribeImages", **{"Owner.1": "amazon"}).find(
            "imagesSet/item/imageId").text
        root = q("RunInstances", ImageId=img, MinCount=2, MaxCount=2, **{
            "TagSpecification.1.ResourceType": "instance",
            "TagSpecification.1.Tag.1.Key": "Name", "TagSpecification.1.Tag.1.Value": "x"})
        iid = root.find("instancesSet/item/instanceId").text
        self.tick(60)
        q("DescribeInstances")
        q("StopInstances", **{"InstanceId.1": iid})
        self.tick(60)
        q("DescribeInstances", MaxResults=5)
        q("StartInstances", **{"InstanceId.1": iid})
        self.tick(60)
        ami = q("CreateImage", InstanceId=iid, Name="model-1").find("imageId").text
        q("CreateTags", **{"ResourceId.1": ami, "Tag.1.Key": "k", "Tag.1.Value": "v"})
        q("DescribeTags")
        q("DeleteTags", **{"ResourceId.1": ami, "Tag.1.Key": "k"})
        self.tick(600)
        q("DescribeImages", **{"ImageId.1": ami})
        q("ModifyImageAttribute", ImageId=ami, **{"LaunchPermission.Add.1.Group": "all"})
        for attr in ("launchPermission", "description", "blockDeviceMapping"):
            q("DescribeImageAttribute", ImageId=ami, Attribute=attr)
        snaps = q("DescribeSnapshots", **{"Owner.1": "self"})
        sid = snaps.find("snapshotSet/item/snapshotId").text
        q("ModifySnapshotAttribute", SnapshotId=sid, Attribute="createVolumePermission",
          OperationType="add", **{"UserId.1": "111122223333"})
        q("DescribeSnapshotAttribute", SnapshotId=sid, Attribute="createVolumePermission")
        q("RegisterImage", Name="model-2", RootDeviceName="/dev/xvda",
          **{"BlockDeviceMapping.1.DeviceName": "/dev/xvda",
             "BlockDeviceMapping.1.Ebs.SnapshotId": sid})
        q("CopyImage", region="eu-west-1", SourceRegion="us-east-1", SourceImageId=ami,
          Name="model-3")
        q("DeregisterImage", ImageId=ami)
        q("TerminateInstances", **{"InstanceId.1": iid})
        path = os.path.join(self.tmp, "s3", "obj")
        with open(path, "wb") as f:
            f.write(b"\x01" * 1000)
        self.sim.s3.buckets["b"] = {"name": "b", "region": "us-east-1", "owner":
                                    "123456789012", "created": 0, "uploads": {},
                                    "objects": {"k": {"path": path, "size": 1000}}}
        tid = q("ImportSnapshot", Description="d", **{
            "DiskContainer.Format": "RAW", "DiskContainer.UserBucket.S3Bucket": "b",
            "DiskContainer.UserBucket.S3Key": "k"}).find("importTaskId").text
        q("DescribeImportSnapshotTasks", **{"ImportTaskId.1": tid})
        self.tick(600)
        q("DescribeImportSnapshotTasks")
        self.assertEqual(self.errors, [])

    def test_checker_catches_mistakes(self):
        m = load_model("ec2")
        bad = ET.fromstring("<x><imagesSet><item><imageIdd>ami-1</imageIdd><isPublic>yes"
                            "</isPublic></item><image/></imagesSet></x>")
        errors = []
        ShapeChecker(m).check(bad, "DescribeImagesResult", "DescribeImages", errors)
        self.assertEqual(len(errors), 3, errors)

    def test_sts_responses_match_model(self):
        m = load_model("sts")
        self.query_op(sts, m, "GetCallerIdentity")
        self.query_op(sts, m, "AssumeRole", RoleArn="arn:aws:iam::123456789012:role/r",
                      RoleSessionName="s")
        self.assertEqual(self.errors, [])

    def check_json(self, model, op, obj, shape_name=None, path=None):
        """Every JSON key must be a body member of the output shape, with the right type."""
        shapes = model["shapes"]
        shape = shapes[shape_name or model["operations"][op]["output"]["shape"]]
        path = path or op
        t = shape["type"]
        if t == "structure":
            self.assertIsInstance(obj, dict, path)
            for k, v in obj.items():
                m = shape["members"].get(k)
                if m is None or m.get("location"):
                    self.errors.append("%s.%s: not a body member" % (path, k))
                    continue
                self.check_json(model, op, v, m["shape"], path + "." + k)
        elif t == "list":
            self.assertIsInstance(obj, list, path)
            for i, v in enumerate(obj):
                self.check_json(model, op, v, shape["member"]["shape"], "%s[%d]" % (path, i))
        elif t in ("integer", "long"):
            if not isinstance(obj, int) or isinstance(obj, bool):
                self.errors.append("%s: not an integer: %r" % (path, obj))
        elif t == "timestamp":
            if not isinstance(obj, (int, float)):
                self.errors.append("%s: timestamps are epoch seconds in JSON: %r" % (path, obj))
        elif t == "string":
            if not isinstance(obj, str):
                self.errors.append("%s: not a string: %r" % (path, obj))
            elif "enum" in shape and obj not in shape["enum"]:
                self.errors.append("%s: %r not in enum" % (path, obj))

    def test_ebs_responses_match_model(self):
        import ebs
        import hashlib
        import base64
        m = load_model("ebs")

        def call(method, path, query="", body=b"", headers=()):
            r = self.req("ebs", method, path, query, body=body, headers=headers)
            r.body.sha256 = hashlib.sha256(body).hexdigest()
            resp = ebs.handle(self.sim, r)
            if resp.headers and ("Content-Type", "application/json") in resp.headers:
                self.check_json(m, r.op, json.loads(resp.body))
            return r.op, resp

        op, resp = call("POST", "/snapshots", body=json.dumps({
            "VolumeSize": 1, "Description": "d", "Tags": [{"Key": "k", "Value": "v"}]}).encode())
        sid = json.loads(resp.body)["SnapshotId"]
        data = b"\x01" * 524288
        digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
        op, resp = call("PUT", "/snapshots/%s/blocks/3" % sid, body=data, headers=[
            ("x-amz-Data-Length", "524288"), ("x-amz-Checksum", digest),
            ("x-amz-Checksum-Algorithm", "SHA256")])
        self.assertEqual((op, resp.status), ("PutSnapshotBlock", 201))
        call("POST", "/snapshots/completion/" + sid, headers=[("x-amz-ChangedBlocksCount", "1")])
        self.tick(60)
        op, resp = call("GET", "/snapshots/%s/blocks" % sid)
        self.assertEqual(op, "ListSnapshotBlocks")
        call("GET", "/snapshots/%s/changedblocks" % sid)
        self.assertEqual(self.errors, [])

    def test_s3_responses_match_model(self):
        m = load_model("s3")
        checker = ShapeChecker(m)

        def call(op, method, path, query="", body=b"", headers=()):
            r = self.req("s3", method, path, query, body=body, headers=headers)
            resp = s3.handle(self.sim, r)
            self.assertEqual(r.op, op)
            out = m["operations"][op].get("output")
            if resp.body and out:
                root = strip_ns(ET.fromstring(resp.body))
                shape = m["shapes"][out["shape"]]
                payload = shape.get("payload")
                if payload:
                    checker.check(root, shape["members"][payload]["shape"], op, self.errors)
                else:
                    checker.check(root, out["shape"], op, self.errors)
            return resp

        call("CreateBucket", "PUT", "/bkt")
        call("PutObject", "PUT", "/bkt/a/b.txt", body=b"hello")
        call("PutObject", "PUT", "/bkt/c.txt", body=b"hello")
        call("ListBuckets", "GET", "/")
        call("ListObjectsV2", "GET", "/bkt", "list-type=2&delimiter=/&max-keys=1")
        call("ListObjects", "GET", "/bkt", "delimiter=/")
        call("CopyObject", "PUT", "/bkt/d.txt", headers=[("x-amz-copy-source", "/bkt/c.txt")])
        up = call("CreateMultipartUpload", "POST", "/bkt/m", "uploads").body
        uid = strip_ns(ET.fromstring(up)).find("UploadId").text
        call("UploadPart", "PUT", "/bkt/m", "partNumber=1&uploadId=" + uid, body=b"p")
        call("ListParts", "GET", "/bkt/m", "uploadId=" + uid)
        call("ListMultipartUploads", "GET", "/bkt", "uploads")
        call("CompleteMultipartUpload", "POST", "/bkt/m", "uploadId=" + uid,
             body=b"<CompleteMultipartUpload><Part><PartNumber>1</PartNumber><ETag>\"%s\""
                  b"</ETag></Part></CompleteMultipartUpload>"
                  % __import__("hashlib").md5(b"p").hexdigest().encode())
        call("DeleteObjects", "POST", "/bkt", "delete",
             body=b"<Delete><Object><Key>c.txt</Key></Object></Delete>")
        self.assertEqual(self.errors, [])


if __name__ == "__main__":
    unittest.main()
