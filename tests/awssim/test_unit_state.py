"""Unit tests of the simulator's state machines and protocol details, in process (no AWS
CLI): instance, image, snapshot and import-task lifecycles on a controlled clock, Query
parameter nesting, filters, pagination, aws-chunked uploads with chunk signatures and
trailing checksums, the control API and the shell/Python helpers."""

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import subprocess
import tempfile
import unittest
import urllib.parse
import zlib
from unittest import mock

import awssim
import ec2
import s3
import sigv4
from simctl import Simulator
from util import AwsError

HERE = os.path.dirname(os.path.abspath(__file__))


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
    def __init__(self, t=1_700_000_000.0):
        self.t = t

    def __call__(self):
        return self.t


class InProcess(unittest.TestCase):
    """A Sim object without a server; requests go straight to the EC2 handler."""

    def setUp(self):
        self.tmp = tempfile.mkdtemp(prefix="awssim-unit-")
        self.addCleanup(lambda: subprocess.run(["rm", "-rf", self.tmp]))
        self.clock = Clock()
        p = mock.patch("time.time", self.clock)
        p.start()
        self.addCleanup(p.stop)
        self.sim = awssim.Sim(self.tmp, [awssim.Credential("AKIDKILNTEST", "s")], (0.0, ()),
                              1.0, 5)

    def ec2(self, action, **params):
        form = dict(params, Action=action, Version="2016-11-15")
        data = urllib.parse.urlencode(form).encode()
        req = awssim.Request(None, "POST", "/", "", Headers(
            [("Content-Type", "application/x-www-form-urlencoded")]),
            awssim.Body(data=data, size=len(data)))
        req.service, req.region, req.cred = "ec2", "us-east-1", self.sim.creds["AKIDKILNTEST"]
        resp = ec2.handle(self.sim, req)
        return resp.body.decode()

    def ec2_error(self, action, **params):
        with self.assertRaises(AwsError) as cm:
            self.ec2(action, **params)
        return cm.exception.code

    def tick(self, seconds):
        self.clock.t += seconds

    def state(self, iid):
        return self.sim.region("us-east-1").instances[iid]["state"]

    def launch(self, n=1, **kw):
        img = [i for i in self.sim.region("us-east-1").images.values()
               if i["architecture"] == "x86_64"][0]["id"]
        self.ec2("RunInstances", ImageId=img, MinCount=n, MaxCount=n, **kw)
        return sorted(self.sim.region("us-east-1").instances,
                      key=lambda i: self.sim.region("us-east-1").instances[i]["index"])


class InstanceMachine(InProcess):
    def test_lifecycle(self):
        iid = self.launch()[0]
        d = ec2.DELAYS
        self.assertEqual(self.state(iid), "pending")
        self.tick(d["boot"] - 1)
        self.ec2("DescribeInstances")
        self.assertEqual(self.state(iid), "pending")
        self.tick(2)
        out = self.ec2("DescribeInstances")
        self.assertIn("<name>running</name>", out)
        self.assertIn("<code>16</code>", out)
        out = self.ec2("StopInstances", **{"InstanceId.1": iid})
        self.assertIn("<currentState><code>64</code><name>stopping</name>", out)
        self.assertIn("<previousState><code>16</code><name>running</name>", out)
        self.tick(d["stop"] + 1)
        self.ec2("DescribeInstances")
        self.assertEqual(self.state(iid), "stopped")
        self.ec2("StartInstances", **{"InstanceId.1": iid})
        self.assertEqual(self.state(iid), "pending")
        self.tick(d["boot"] + 1)
        self.ec2("DescribeInstances")
        self.assertEqual(self.state(iid), "running")
        out = self.ec2("TerminateInstances", **{"InstanceId.1": iid})
        self.assertIn("<name>shutting-down</name>", out)
        self.assertEqual(self.ec2_error("StopInstances", **{"InstanceId.1": iid}),
                         "IncorrectInstanceState")
        self.tick(d["terminate"] + 1)
        out = self.ec2("TerminateInstances", **{"InstanceId.1": iid})
        self.assertIn("<currentState><code>48</code><name>terminated</name>", out)
        self.assertIn("<previousState><code>48</code><name>terminated</name>", out)

    def test_stop_pending_refused_and_client_token(self):
        iid = self.launch(ClientToken="tok-1")[0]
        self.assertEqual(self.ec2_error("StopInstances", **{"InstanceId.1": iid}),
                         "IncorrectInstanceState")
        self.launch(ClientToken="tok-1")  # idempotent: no second instance
        self.assertEqual(len(self.sim.region("us-east-1").instances), 1)

    def test_filters_and_pagination(self):
        ids = self.launch(12, **{"TagSpecification.1.ResourceType": "instance",
                                 "TagSpecification.1.Tag.1.Key": "Name",
                                 "TagSpecification.1.Tag.1.Value": "web-1"})
        self.ec2("CreateTags", **{"ResourceId.1": ids[0], "Tag.1.Key": "role",
                                  "Tag.1.Value": "db"})
        out = self.ec2("DescribeInstances", **{"Filter.1.Name": "tag:role",
                                               "Filter.1.Value.1": "d?"})
        self.assertEqual(out.count("<instanceId>"), 1)
        out = self.ec2("DescribeInstances", **{"Filter.1.Name": "tag:Name",
                                               "Filter.1.Value.1": "web-*",
                                               "Filter.2.Name": "tag-key",
                                               "Filter.2.Value.1": "nope"})
        self.assertEqual(out.count("<instanceId>"), 0)
        seen, token, pages = [], None, 0
        while True:
            kw = {"MaxResults": 5}
            if token:
                kw["NextToken"] = token
            out = self.ec2("DescribeInstances", **kw)
            pages += 1
            seen += [s.split("<")[0] for s in out.split("<instanceId>")[1:]]
            if "<nextToken>" not in out:
                break
            token = out.split("<nextToken>")[1].split("<")[0]
        self.assertEqual((pages, sorted(seen)), (3, sorted(ids)))
        self.assertEqual(self.ec2_error("DescribeInstances", MaxResults=3),
                         "InvalidParameterValue")
        self.assertEqual(self.ec2_error("DescribeInstances", NextToken="garbage!"),
                         "InvalidPaginationToken")
        self.assertEqual(self.ec2_error("DescribeInstances", **{"Filter.1.Name": "bogus",
                                                                "Filter.1.Value.1": "x"}),
                         "InvalidParameterValue")


class ImageMachine(InProcess):
    def test_create_image_snapshot_then_image(self):
        iid = self.launch()[0]
        self.tick(ec2.DELAYS["boot"] + 1)
        out = self.ec2("CreateImage", InstanceId=iid, Name="img-1")
        ami = out.split("<imageId>")[1].split("<")[0]
        r = self.sim.region("us-east-1")
        snap = r.images[ami]["bdm"][0]["snapshot"]
        self.assertEqual((r.images[ami]["state"], r.snapshots[snap]["status"]),
                         ("pending", "pending"))
        self.tick(ec2.DELAYS["snapshot"] + 1)
        self.ec2("DescribeImages", **{"ImageId.1": ami})
        self.assertEqual((r.images[ami]["state"], r.snapshots[snap]["status"]),
                         ("pending", "completed"))
        self.tick(ec2.DELAYS["image"])
        out = self.ec2("DescribeImages", **{"Owner.1": "self"})
        self.assertIn("<imageState>available</imageState>", out)
        self.assertEqual(self.ec2_error("DeleteSnapshot", SnapshotId=snap),
                         "InvalidSnapshot.InUse")
        # RegisterImage refuses a snapshot that is not completed.
        self.ec2("DeregisterImage", ImageId=ami)
        self.ec2("DeleteSnapshot", SnapshotId=snap)
        self.assertEqual(self.ec2_error("DescribeSnapshots", **{"SnapshotId.1": snap}),
                         "InvalidSnapshot.NotFound")

    def test_copy_image_between_regions(self):
        iid = self.launch()[0]
        self.tick(ec2.DELAYS["boot"] + 1)
        ami = self.ec2("CreateImage", InstanceId=iid, Name="img-2").split(
            "<imageId>")[1].split("<")[0]
        form = {"SourceRegion": "us-east-1", "SourceImageId": ami, "Name": "img-2"}
        self.assertEqual(self.ec2_error("CopyImage", **form), "IncorrectState")
        self.tick(ec2.DELAYS["image"] + 1)
        req_region = "eu-central-1"
        data = urllib.parse.urlencode(dict(form, Action="CopyImage")).encode()
        req = awssim.Request(None, "POST", "/", "", Headers(), awssim.Body(data=data,
                                                                           size=len(data)))
        req.service, req.region, req.cred = "ec2", req_region, self.sim.creds["AKIDKILNTEST"]
        out = ec2.handle(self.sim, req).body.decode()
        copy = out.split("<imageId>")[1].split("<")[0]
        eu = self.sim.region(req_region)
        self.assertEqual(eu.images[copy]["state"], "pending")
        self.assertEqual(eu.images[copy]["copied_from"], "us-east-1:" + ami)
        self.assertNotIn(copy, self.sim.region("us-east-1").images)
        self.tick(ec2.DELAYS["copy"] + 1)
        eu.advance()
        self.assertEqual(eu.images[copy]["state"], "available")

    def test_launch_permissions(self):
        iid = self.launch()[0]
        self.tick(ec2.DELAYS["boot"] + 1)
        ami = self.ec2("CreateImage", InstanceId=iid, Name="img-3").split(
            "<imageId>")[1].split("<")[0]
        self.ec2("ModifyImageAttribute", ImageId=ami, **{
            "LaunchPermission.Add.1.Group": "all", "LaunchPermission.Add.2.UserId":
            "111122223333"})
        out = self.ec2("DescribeImageAttribute", ImageId=ami, Attribute="launchPermission")
        self.assertIn("<item><group>all</group></item>", out)
        self.assertIn("<item><userId>111122223333</userId></item>", out)
        self.assertIn("<isPublic>true</isPublic>", self.ec2("DescribeImages",
                                                            **{"ImageId.1": ami}))
        self.assertEqual(self.ec2_error("ModifyImageAttribute", ImageId=ami, **{
            "LaunchPermission.Add.1.Group": "everyone"}), "InvalidParameterValue")


class ImportMachine(InProcess):
    def test_import_progress(self):
        os.makedirs(os.path.join(self.tmp, "src"), exist_ok=True)
        path = os.path.join(self.tmp, "s3", "obj")
        with open(path, "wb") as f:
            f.write(b"\x01" * (3 << 20))
        self.sim.s3.buckets["b"] = {"name": "b", "region": "us-east-1", "owner":
                                    "123456789012", "created": 0, "uploads": {},
                                    "objects": {"k": {"path": path, "size": 3 << 20}}}
        out = self.ec2("ImportSnapshot", **{"DiskContainer.Format": "raw",
                                            "DiskContainer.UserBucket.S3Bucket": "b",
                                            "DiskContainer.UserBucket.S3Key": "k"})
        tid = out.split("<importTaskId>")[1].split("<")[0]
        progress = []
        for _ in range(12):
            self.tick(ec2.DELAYS["import"] / 10)
            out = self.ec2("DescribeImportSnapshotTasks", **{"ImportTaskId.1": tid})
            status = out.split("<status>")[1].split("<")[0]
            if status == "active":
                progress.append(int(out.split("<progress>")[1].split("<")[0]))
        self.assertEqual(status, "completed")
        self.assertEqual(progress, sorted(progress))
        self.assertGreater(len(set(progress)), 3)
        sid = out.split("<snapshotId>")[1].split("<")[0]
        snap = self.sim.region("us-east-1").snapshots[sid]
        self.assertEqual((snap["status"], snap["size"]), ("completed", 1))
        self.assertEqual(self.ec2_error("ImportSnapshot", **{"DiskContainer.Format": "qcow2",
                                                             "DiskContainer.Url": "s3://b/k"}),
                         "InvalidParameter")


class QueryParams(unittest.TestCase):
    def test_nest_and_list_order(self):
        n = ec2.nest({"Filter.2.Name": "b", "Filter.10.Name": "c", "Filter.1.Name": "a",
                      "Filter.1.Value.1": "x", "Filter.1.Value.2": "y"})
        self.assertEqual([f["Name"] for f in ec2.lst(n["Filter"])], ["a", "b", "c"])
        self.assertEqual(ec2.strs(ec2.lst(n["Filter"])[0]["Value"]), ["x", "y"])

    def test_fault_spec(self):
        self.assertEqual(awssim.parse_faults("rate=0.25,kinds=throttle+reset"),
                         (0.25, ("throttle", "reset")))
        with self.assertRaises(ValueError):
            awssim.parse_faults("rate=0.1,kinds=meteor")


def chunked_body(data, chunk, key=None, seed_sig=None, amz_date=None, scope=None,
                 trailer=None):
    """Encode data as aws-chunked, with chunk signatures when key is given."""
    out = b""
    prev = seed_sig
    pieces = [data[i:i + chunk] for i in range(0, len(data), chunk)] + [b""]
    for p in pieces:
        if key:
            sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", amz_date, scope, prev,
                             sigv4.EMPTY_SHA256, hashlib.sha256(p).hexdigest()])
            sig = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
            out += b"%x;chunk-signature=%s\r\n" % (len(p), sig.encode())
            prev = sig
        else:
            out += b"%x\r\n" % len(p)
        out += p
        if p:
            out += b"\r\n"
    if trailer:
        out += trailer.encode() + b"\r\n"
    return out + b"\r\n"


class RawS3(unittest.TestCase):
    def setUp(self):
        self.s = Simulator(delay_scale=0.01).start()
        self.addCleanup(self.s.stop)
        self.host = "127.0.0.1:%d" % self.s.port

    def send(self, method, path, headers, body, payload_hash):
        amz = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
        hdrs = [("Host", self.host), ("X-Amz-Date", amz),
                ("x-amz-content-sha256", payload_hash)] + headers
        signed = sorted(n.lower() for n, _ in hdrs)
        creq = sigv4.canonical_request(method, path, [], hdrs, signed, payload_hash, "s3")
        scope = sigv4.scope_string(amz[:8], "us-east-1", "s3")
        sig = sigv4.signature("kiln-test-secret", amz[:8], "us-east-1", "s3",
                              sigv4.string_to_sign(amz, scope, creq))
        hdrs.append(("Authorization", "AWS4-HMAC-SHA256 Credential=AKIDKILNTEST/%s, "
                     "SignedHeaders=%s, Signature=%s" % (scope, ";".join(signed), sig)))
        if callable(body):
            body = body(sig, amz, scope)
        c = http.client.HTTPConnection("127.0.0.1", self.s.port, timeout=30)
        c.putrequest(method, path, skip_host=True, skip_accept_encoding=True)
        for n, v in hdrs:
            c.putheader(n, v)
        c.putheader("Content-Length", str(len(body)))
        c.endheaders(body)
        r = c.getresponse()
        data = r.read()
        c.close()
        return r.status, data

    def test_upload_ids_read_as_values(self):
        # A random URL-safe ID starts with '-' once in 64; the AWS CLI then takes
        # `--upload-id -...` for an option and refuses the command.
        ids = [s3.new_upload_id() for _ in range(2000)]
        self.assertEqual(len(set(ids)), len(ids))
        self.assertEqual([u for u in ids if not u[0].isalnum()], [])

    def test_signed_chunks(self):
        self.assertEqual(self.send("PUT", "/chunky", [], b"", sigv4.EMPTY_SHA256)[0], 200)
        data = os.urandom(200000)
        key = sigv4.signing_key("kiln-test-secret", datetime.datetime.utcnow().strftime(
            "%Y%m%d"), "us-east-1", "s3")
        hdrs = [("Content-Encoding", "aws-chunked"),
                ("x-amz-decoded-content-length", str(len(data)))]
        status, body = self.send(
            "PUT", "/chunky/signed.bin", hdrs,
            lambda sig, amz, scope: chunked_body(data, 65536, key, sig, amz, scope),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        self.assertEqual(status, 200, body)
        obj = self.s.state()["s3"]["chunky"]["objects"]["signed.bin"]
        self.assertEqual((obj["size"], obj["md5"]), (len(data), hashlib.md5(data).hexdigest()))
        # A chunk signed with the wrong seed is refused.
        status, body = self.send(
            "PUT", "/chunky/bad.bin", hdrs,
            lambda sig, amz, scope: chunked_body(data, 65536, key, "0" * 64, amz, scope),
            "STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
        self.assertEqual(status, 403)
        self.assertIn(b"SignatureDoesNotMatch", body)

    def test_virtual_host_style(self):
        self.assertEqual(self.send("PUT", "/vhost", [], b"", sigv4.EMPTY_SHA256)[0], 200)
        self.host = "vhost.localhost:%d" % self.s.port
        data = b"virtual host"
        status, body = self.send("PUT", "/dir/obj.txt", [], data,
                                 hashlib.sha256(data).hexdigest())
        self.assertEqual(status, 200, body)
        self.assertIn("dir/obj.txt", self.s.state()["s3"]["vhost"]["objects"])
        status, body = self.send("GET", "/dir/obj.txt", [], b"", sigv4.EMPTY_SHA256)
        self.assertEqual((status, body), (200, data))

    def test_unsigned_trailer(self):
        self.send("PUT", "/chunky", [], b"", sigv4.EMPTY_SHA256)
        data = os.urandom(100000)
        crc = base64.b64encode(zlib.crc32(data).to_bytes(4, "big")).decode()
        hdrs = [("Content-Encoding", "aws-chunked"), ("x-amz-trailer", "x-amz-checksum-crc32"),
                ("x-amz-decoded-content-length", str(len(data)))]
        status, body = self.send("PUT", "/chunky/t.bin", hdrs, chunked_body(
            data, 30000, trailer="x-amz-checksum-crc32:" + crc),
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        self.assertEqual(status, 200, body)
        status, body = self.send("PUT", "/chunky/t2.bin", hdrs, chunked_body(
            data, 30000, trailer="x-amz-checksum-crc32:AAAAAA=="),
            "STREAMING-UNSIGNED-PAYLOAD-TRAILER")
        self.assertEqual(status, 400)
        self.assertIn(b"BadDigest", body)


class ControlApi(unittest.TestCase):
    def test_faults_endpoint_validates(self):
        with Simulator() as s:
            self.assertEqual(s.set_faults(0.5, ["slow"]), {"rate": 0.5, "kinds": ["slow"]})
            c = http.client.HTTPConnection("127.0.0.1", s.port, timeout=10)
            c.request("POST", "/_kiln/faults", body=json.dumps({"rate": 2}))
            self.assertEqual(c.getresponse().status, 400)
            c.close()
            self.assertEqual(s.state()["faults"]["rate"], 0.5)

    def test_with_sim_sh(self):
        script = ('test -n "$AWSSIM_ENDPOINT" && test "$AWS_DEFAULT_REGION" = us-east-1 && '
                  'test "$AWS_EC2_METADATA_DISABLED" = true && test -f "$AWS_CONFIG_FILE" && '
                  'python3 -c "import json,sys,urllib.request; '
                  'd=json.load(urllib.request.urlopen(sys.argv[1]+\'/_kiln/state\')); '
                  'sys.exit(0 if \'requests\' in d else 1)" "$AWSSIM_ENDPOINT" && exit 7')
        p = subprocess.run([os.path.join(HERE, "with-sim.sh"), "sh", "-c", script],
                           capture_output=True, timeout=60)
        self.assertEqual(p.returncode, 7, p.stderr)


if __name__ == "__main__":
    unittest.main()
