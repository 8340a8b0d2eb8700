"""EBS direct APIs through the real AWS CLI: write a snapshot block by block with SHA256
checksums, complete it with the LINEAR aggregate checksum, read it back, use it for an AMI;
checksum and count errors; changed blocks between a parent and a child snapshot."""

import base64
import hashlib
import unittest

from clitest import CliTest

BLOCK = 524288


def b64sha(data):
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def linear(blocks):
    agg = b"".join(hashlib.sha256(d).digest() for _, d in sorted(blocks.items()))
    return base64.b64encode(hashlib.sha256(agg).digest()).decode()


class EbsCli(CliTest):
    def start(self, size=1, parent=None):
        args = ["ebs", "start-snapshot", "--volume-size", size, "--description", "kiln",
                "--tags", "Key=kiln,Value=yes"]
        if parent:
            args += ["--parent-snapshot-id", parent]
        out = self.aws_json(*args)
        self.assertEqual(out["Status"], "pending")
        self.assertEqual(out["BlockSize"], BLOCK)
        return out["SnapshotId"]

    def put(self, sid, idx, data, checksum=None):
        name = "blk%d" % idx
        self.write(name, data)
        return self.run_aws("ebs", "put-snapshot-block", "--snapshot-id", sid, "--block-index",
                            idx, "--block-data", self.path(name), "--data-length", len(data),
                            "--checksum", checksum or b64sha(data), "--checksum-algorithm",
                            "SHA256", "--output", "json")

    def write_snapshot(self, blocks, parent=None):
        sid = self.start(parent=parent)
        for idx, data in blocks.items():
            p = self.put(sid, idx, data)
            self.assertEqual(p.returncode, 0, p.stderr.decode())
        out = self.aws_json("ebs", "complete-snapshot", "--snapshot-id", sid,
                            "--changed-blocks-count", len(blocks), "--checksum",
                            linear(blocks), "--checksum-algorithm", "SHA256",
                            "--checksum-aggregation-method", "LINEAR")
        self.assertIn(out["Status"], ("pending", "completed"))
        self.aws("ec2", "wait", "snapshot-completed", "--snapshot-ids", sid)
        return sid

    def test_write_read_register(self):
        blocks = {0: b"\x01" * BLOCK, 5: bytes(range(256)) * 2048, 100: b"kiln" * (BLOCK // 4)}
        sid = self.write_snapshot(blocks)
        snap = self.aws_json("ec2", "describe-snapshots", "--snapshot-ids", sid)["Snapshots"][0]
        self.assertEqual((snap["State"], snap["VolumeSize"], snap["Description"]),
                         ("completed", 1, "kiln"))
        self.assertEqual(snap["Tags"], [{"Key": "kiln", "Value": "yes"}])
        listed = self.aws_json("ebs", "list-snapshot-blocks", "--snapshot-id", sid)
        self.assertEqual([b["BlockIndex"] for b in listed["Blocks"]], [0, 5, 100])
        self.assertEqual(listed["VolumeSize"], 1)
        for b in listed["Blocks"]:
            out = self.aws_json("ebs", "get-snapshot-block", "--snapshot-id", sid,
                                "--block-index", b["BlockIndex"], "--block-token",
                                b["BlockToken"], self.path("out"))
            self.assertEqual(self.read("out"), blocks[b["BlockIndex"]])
            self.assertEqual(out["Checksum"], b64sha(blocks[b["BlockIndex"]]))
            self.assertEqual(out["ChecksumAlgorithm"], "SHA256")
            self.assertEqual(int(out["DataLength"]), BLOCK)
        code, err = self.aws_fail("ebs", "get-snapshot-block", "--snapshot-id", sid,
                                  "--block-index", 5, "--block-token",
                                  listed["Blocks"][0]["BlockToken"], self.path("bad"))
        self.assertIn("ValidationException", err)
        st = self.sim.state()["regions"]["us-east-1"]["snapshots"][sid]
        self.assertEqual((st["block_count"], st["bytes_received"]), (3, 3 * BLOCK))
        ami = self.aws("ec2", "register-image", "--name", "kiln-ebs", "--architecture",
                       "x86_64", "--root-device-name", "/dev/xvda", "--block-device-mappings",
                       "DeviceName=/dev/xvda,Ebs={SnapshotId=%s}" % sid, "--query", "ImageId",
                       "--output", "text").strip()
        self.aws("ec2", "wait", "image-available", "--image-ids", ami)

    def test_checksum_errors(self):
        sid = self.start()
        data = b"\x07" * BLOCK
        p = self.put(sid, 0, data, checksum=b64sha(b"other"))
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"ValidationException", p.stderr)
        p = self.put(sid, 1, data[:1000])
        self.assertNotEqual(p.returncode, 0)
        self.assertIn(b"ValidationException", p.stderr)
        p = self.put(sid, 2048, data)  # beyond a 1 GiB volume
        self.assertNotEqual(p.returncode, 0)
        self.assertEqual(self.put(sid, 0, data).returncode, 0)
        self.assertEqual(self.put(sid, 1, data).returncode, 0)
        code, err = self.aws_fail("ebs", "complete-snapshot", "--snapshot-id", sid,
                                  "--changed-blocks-count", 3)
        self.assertIn("ValidationException", err)
        code, err = self.aws_fail("ebs", "complete-snapshot", "--snapshot-id", sid,
                                  "--changed-blocks-count", 2, "--checksum",
                                  linear({1: data, 0: b"x" * BLOCK}), "--checksum-algorithm",
                                  "SHA256", "--checksum-aggregation-method", "LINEAR")
        self.assertIn("ValidationException", err)
        self.aws("ebs", "complete-snapshot", "--snapshot-id", sid, "--changed-blocks-count", 2,
                 "--checksum", linear({0: data, 1: data}), "--checksum-algorithm", "SHA256",
                 "--checksum-aggregation-method", "LINEAR")
        code, err = self.aws_fail("ebs", "list-snapshot-blocks", "--snapshot-id",
                                  "snap-0123456789abcdef0")
        self.assertIn("ResourceNotFoundException", err)

    def test_changed_blocks(self):
        base = {0: b"a" * BLOCK, 1: b"b" * BLOCK, 2: b"c" * BLOCK}
        first = self.write_snapshot(base)
        second = self.write_snapshot({1: b"B" * BLOCK, 7: b"n" * BLOCK}, parent=first)
        listed = self.aws_json("ebs", "list-snapshot-blocks", "--snapshot-id", second)
        self.assertEqual([b["BlockIndex"] for b in listed["Blocks"]], [0, 1, 2, 7])
        changed = self.aws_json("ebs", "list-changed-blocks", "--first-snapshot-id", first,
                                "--second-snapshot-id", second)["ChangedBlocks"]
        self.assertEqual([c["BlockIndex"] for c in changed], [1, 7])
        self.assertIn("FirstBlockToken", changed[0])
        self.assertNotIn("FirstBlockToken", changed[1])
        tok = [b for b in listed["Blocks"] if b["BlockIndex"] == 2][0]["BlockToken"]
        self.aws("ebs", "get-snapshot-block", "--snapshot-id", second, "--block-index", 2,
                 "--block-token", tok, self.path("inherited"))
        self.assertEqual(self.read("inherited"), base[2])


if __name__ == "__main__":
    unittest.main()
