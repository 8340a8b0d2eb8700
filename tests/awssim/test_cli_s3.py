"""S3 through the real AWS CLI: buckets, small and multipart (100 MiB) copies with byte
comparison, listing with prefixes/delimiters/pagination, ranges, the multipart API, copy,
presigned URLs fetched with curl (valid, tampered, expired)."""

import hashlib
import os
import subprocess
import time
import unittest

from clitest import CliTest


class S3Cli(CliTest):
    def test_small_copy_ls_rm(self):
        self.assertIn("make_bucket: kiln-small", self.aws("s3", "mb", "s3://kiln-small"))
        data = b"hello kiln\n" * 100
        self.write("small.txt", data)
        self.aws("s3", "cp", self.path("small.txt"), "s3://kiln-small/dir/small.txt")
        ls = self.aws("s3", "ls", "s3://kiln-small/", "--recursive")
        self.assertRegex(ls, r"\s%d dir/small.txt" % len(data))
        self.aws("s3", "cp", "s3://kiln-small/dir/small.txt", self.path("back.txt"))
        self.assertEqual(self.read("back.txt"), data)
        obj = self.sim.state()["s3"]["kiln-small"]["objects"]["dir/small.txt"]
        self.assertEqual(obj["md5"], hashlib.md5(data).hexdigest())
        self.assertEqual(obj["etag"], '"%s"' % hashlib.md5(data).hexdigest())
        buckets = self.aws_json("s3api", "list-buckets")["Buckets"]
        self.assertEqual([b["Name"] for b in buckets], ["kiln-small"])
        self.aws("s3api", "head-bucket", "--bucket", "kiln-small")
        odd = "dir/ünï c (1)!'*+=&$@,;~.txt"  # characters that exercise path encoding
        self.aws("s3", "cp", self.path("small.txt"), "s3://kiln-small/" + odd)
        self.aws("s3api", "get-object", "--bucket", "kiln-small", "--key", odd,
                 self.path("odd.txt"))
        self.assertEqual(self.read("odd.txt"), data)
        self.assertIn(odd, self.sim.state()["s3"]["kiln-small"]["objects"])
        self.aws("s3", "rm", "s3://kiln-small/" + odd)
        self.aws("s3", "rm", "s3://kiln-small/dir/small.txt")
        self.assertEqual(self.aws("s3", "ls", "s3://kiln-small/", "--recursive"), "")
        code, err = self.aws_fail("s3", "cp", "s3://kiln-small/dir/small.txt",
                                  self.path("gone"))
        self.assertIn("404", err)
        self.aws("s3", "rb", "s3://kiln-small")
        code, err = self.aws_fail("s3api", "head-bucket", "--bucket", "kiln-small")
        self.assertIn("404", err)
        code, err = self.aws_fail("s3", "mb", "s3://Bad_Name")
        self.assertIn("InvalidBucketName", err)

    def test_large_multipart_copy(self):
        self.aws("s3", "mb", "s3://kiln-big")
        size = 100 * 1024 * 1024
        src = self.path("big.bin")
        h = hashlib.md5()
        with open(src, "wb") as f:
            for i in range(size // (1 << 20)):
                chunk = hashlib.sha256(b"%d" % i).digest() * 32768
                f.write(chunk)
                h.update(chunk)
        self.aws("s3", "cp", src, "s3://kiln-big/big.bin", "--only-show-errors")
        st = self.sim.state()
        obj = st["s3"]["kiln-big"]["objects"]["big.bin"]
        self.assertEqual(obj["size"], size)
        self.assertEqual(obj["md5"], h.hexdigest())
        self.assertRegex(obj["etag"], r'^"[0-9a-f]{32}-\d+"$')
        parts = int(obj["etag"].strip('"').split("-")[1])
        self.assertGreater(parts, 1)
        self.assertEqual(st["requests"]["s3:UploadPart"], parts)
        self.assertEqual(st["requests"]["s3:CompleteMultipartUpload"], 1)
        self.assertEqual(st["s3"]["kiln-big"]["multipart_uploads"], {})
        dst = self.path("big.out")
        self.aws("s3", "cp", "s3://kiln-big/big.bin", dst, "--only-show-errors")
        self.assertEqual(os.path.getsize(dst), size)
        subprocess.run(["cmp", src, dst], check=True)

    def test_slow_one_gib_object(self):
        """A 1 GiB object: streamed to disk, multipart up, ranged GETs down, byte-identical."""
        self.aws("s3", "mb", "s3://kiln-gib")
        size = 1 << 30
        src = self.path("gib.bin")
        h = hashlib.md5()
        block = os.urandom(1 << 20)
        with open(src, "wb") as f:
            for i in range(size >> 20):
                chunk = i.to_bytes(8, "big") + block[8:]
                f.write(chunk)
                h.update(chunk)
        t0 = time.time()
        self.aws("s3", "cp", src, "s3://kiln-gib/gib.bin", "--only-show-errors", timeout=1500)
        t1 = time.time()
        obj = self.sim.state()["s3"]["kiln-gib"]["objects"]["gib.bin"]
        self.assertEqual((obj["size"], obj["md5"]), (size, h.hexdigest()))
        dst = self.path("gib.out")
        self.aws("s3", "cp", "s3://kiln-gib/gib.bin", dst, "--only-show-errors", timeout=1500)
        t2 = time.time()
        subprocess.run(["cmp", src, dst], check=True)
        print("1 GiB: upload %.1f s, download %.1f s" % (t1 - t0, t2 - t1))

    def test_list_objects_v2(self):
        self.aws("s3", "mb", "s3://kiln-list")
        keys = ["a/%02d" % i for i in range(23)] + ["b/one", "b/two", "c d+e.txt", "top"]
        for k in keys:
            os.makedirs(os.path.dirname(self.path("tree/" + k)), exist_ok=True)
            self.write("tree/" + k, k.encode())
        self.aws("s3", "cp", "--recursive", self.path("tree"), "s3://kiln-list/",
                 "--only-show-errors")
        self.assertEqual(self.requests("s3:PutObject"), len(keys))
        before = self.requests("s3:ListObjectsV2")
        out = self.aws_json("s3api", "list-objects-v2", "--bucket", "kiln-list",
                            "--page-size", "10")
        self.assertEqual([o["Key"] for o in out["Contents"]], sorted(keys))
        self.assertEqual(self.requests("s3:ListObjectsV2") - before, 3)
        out = self.aws_json("s3api", "list-objects-v2", "--bucket", "kiln-list",
                            "--delimiter", "/")
        self.assertEqual([p["Prefix"] for p in out["CommonPrefixes"]], ["a/", "b/"])
        self.assertEqual([o["Key"] for o in out["Contents"]], ["c d+e.txt", "top"])
        out = self.aws_json("s3api", "list-objects-v2", "--bucket", "kiln-list", "--prefix",
                            "b/", "--no-paginate")
        self.assertEqual([o["Key"] for o in out["Contents"]], ["b/one", "b/two"])
        self.assertEqual(out["KeyCount"], 2)
        ls = self.aws("s3", "ls", "s3://kiln-list/")
        self.assertIn("PRE a/", ls)
        self.assertIn("c d+e.txt", ls)
        self.aws("s3", "rm", "s3://kiln-list/a/", "--recursive")
        out = self.aws_json("s3api", "list-objects-v2", "--bucket", "kiln-list")
        self.assertEqual(len(out["Contents"]), 4)

    def test_range_get_and_copy(self):
        self.aws("s3", "mb", "s3://kiln-range")
        data = bytes(range(256)) * 40
        self.write("r.bin", data)
        self.aws("s3", "cp", self.path("r.bin"), "s3://kiln-range/r.bin")
        out = self.aws_json("s3api", "get-object", "--bucket", "kiln-range", "--key", "r.bin",
                            "--range", "bytes=100-199", self.path("part"))
        self.assertEqual(self.read("part"), data[100:200])
        self.assertEqual(out["ContentRange"], "bytes 100-199/%d" % len(data))
        self.aws("s3api", "get-object", "--bucket", "kiln-range", "--key", "r.bin",
                 "--range", "bytes=-10", self.path("tail"))
        self.assertEqual(self.read("tail"), data[-10:])
        code, err = self.aws_fail("s3api", "get-object", "--bucket", "kiln-range", "--key",
                                  "r.bin", "--range", "bytes=999999-", self.path("none"))
        self.assertIn("InvalidRange", err)
        self.aws("s3", "cp", "s3://kiln-range/r.bin", "s3://kiln-range/copy.bin")
        self.aws("s3", "cp", "s3://kiln-range/copy.bin", self.path("copy"))
        self.assertEqual(self.read("copy"), data)
        self.assertGreaterEqual(self.requests("s3:CopyObject"), 1)

    def test_multipart_api(self):
        self.aws("s3", "mb", "s3://kiln-mpu")
        up = self.aws_json("s3api", "create-multipart-upload", "--bucket", "kiln-mpu", "--key",
                           "m.bin")["UploadId"]
        p1 = os.urandom(5 * 1024 * 1024)
        p2 = os.urandom(1000)
        self.write("p1", p1)
        self.write("p2", p2)
        e1 = self.aws_json("s3api", "upload-part", "--bucket", "kiln-mpu", "--key", "m.bin",
                           "--upload-id", up, "--part-number", "1", "--body",
                           self.path("p1"))["ETag"]
        e2 = self.aws_json("s3api", "upload-part", "--bucket", "kiln-mpu", "--key", "m.bin",
                           "--upload-id", up, "--part-number", "2", "--body",
                           self.path("p2"))["ETag"]
        parts = self.aws_json("s3api", "list-parts", "--bucket", "kiln-mpu", "--key", "m.bin",
                              "--upload-id", up)["Parts"]
        self.assertEqual([(p["PartNumber"], p["Size"]) for p in parts],
                         [(1, len(p1)), (2, len(p2))])
        code, err = self.aws_fail(
            "s3api", "complete-multipart-upload", "--bucket", "kiln-mpu", "--key", "m.bin",
            "--upload-id", up, "--multipart-upload",
            '{"Parts":[{"PartNumber":2,"ETag":%s},{"PartNumber":1,"ETag":%s}]}' % (
                '"\\"%s\\""' % e2.strip('"'), '"\\"%s\\""' % e1.strip('"')))
        self.assertIn("InvalidPartOrder", err)
        done = self.aws_json(
            "s3api", "complete-multipart-upload", "--bucket", "kiln-mpu", "--key", "m.bin",
            "--upload-id", up, "--multipart-upload",
            '{"Parts":[{"PartNumber":1,"ETag":%s},{"PartNumber":2,"ETag":%s}]}' % (
                '"\\"%s\\""' % e1.strip('"'), '"\\"%s\\""' % e2.strip('"')))
        agg = hashlib.md5(hashlib.md5(p1).digest() + hashlib.md5(p2).digest()).hexdigest()
        self.assertEqual(done["ETag"], '"%s-2"' % agg)
        self.aws("s3", "cp", "s3://kiln-mpu/m.bin", self.path("m.out"))
        self.assertEqual(self.read("m.out"), p1 + p2)
        # Too-small non-final part, and abort.
        up2 = self.aws_json("s3api", "create-multipart-upload", "--bucket", "kiln-mpu",
                            "--key", "n.bin")["UploadId"]
        for n in (1, 2):
            self.aws("s3api", "upload-part", "--bucket", "kiln-mpu", "--key", "n.bin",
                     "--upload-id", up2, "--part-number", n, "--body", self.path("p2"))
        etag = '"\\"%s\\""' % hashlib.md5(p2).hexdigest()
        code, err = self.aws_fail(
            "s3api", "complete-multipart-upload", "--bucket", "kiln-mpu", "--key", "n.bin",
            "--upload-id", up2, "--multipart-upload",
            '{"Parts":[{"PartNumber":1,"ETag":%s},{"PartNumber":2,"ETag":%s}]}' % (etag, etag))
        self.assertIn("EntityTooSmall", err)
        self.aws("s3api", "abort-multipart-upload", "--bucket", "kiln-mpu", "--key", "n.bin",
                 "--upload-id", up2)
        code, err = self.aws_fail("s3api", "list-parts", "--bucket", "kiln-mpu", "--key",
                                  "n.bin", "--upload-id", up2)
        self.assertIn("NoSuchUpload", err)

    def curl(self, url):
        p = subprocess.run(["curl", "-s", "-o", self.path("curl.out"), "-w", "%{http_code}",
                            url], capture_output=True, timeout=60)
        return int(p.stdout), self.read("curl.out")

    def test_presigned_get(self):
        self.aws("s3", "mb", "s3://kiln-presign")
        data = os.urandom(3000)
        self.write("p.bin", data)
        self.aws("s3", "cp", self.path("p.bin"), "s3://kiln-presign/p.bin")
        url = self.aws("s3", "presign", "s3://kiln-presign/p.bin", "--expires-in",
                       "3").strip()
        self.assertIn("X-Amz-Signature=", url)
        status, body = self.curl(url)
        self.assertEqual((status, body), (200, data))
        status, body = self.curl(url.replace("p.bin", "q.bin"))
        self.assertEqual(status, 403)
        self.assertIn(b"<Code>SignatureDoesNotMatch</Code>", body)
        time.sleep(4.5)
        status, body = self.curl(url)
        self.assertEqual(status, 403)
        self.assertIn(b"<Code>AccessDenied</Code><Message>Request has expired</Message>", body)

    def test_presigned_put(self):
        # The CLI only presigns GET; sign a PUT URL with the simulator's own SigV4 code and
        # upload with curl (the signature format is the one the CLI's GET URLs prove).
        import datetime
        import urllib.parse
        import sigv4
        self.aws("s3", "mb", "s3://kiln-presign")
        host = "127.0.0.1:%d" % self.sim.port
        amz_date = datetime.datetime.utcnow().strftime("%Y%m%dT%H%M%SZ")
        scope = sigv4.scope_string(amz_date[:8], "us-east-1", "s3")
        q = [("X-Amz-Algorithm", "AWS4-HMAC-SHA256"),
             ("X-Amz-Credential", "AKIDKILNTEST/" + scope), ("X-Amz-Date", amz_date),
             ("X-Amz-Expires", "60"), ("X-Amz-SignedHeaders", "host")]
        creq = sigv4.canonical_request("PUT", "/kiln-presign/up.bin", q, [("Host", host)],
                                       ["host"], "UNSIGNED-PAYLOAD", "s3")
        sig = sigv4.signature("kiln-test-secret", amz_date[:8], "us-east-1", "s3",
                              sigv4.string_to_sign(amz_date, scope, creq))
        url = "%s/kiln-presign/up.bin?%s&X-Amz-Signature=%s" % (
            self.sim.endpoint, urllib.parse.urlencode(q, quote_via=urllib.parse.quote), sig)
        self.write("up.bin", b"presigned upload")
        p = subprocess.run(["curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "-T",
                            self.path("up.bin"), url], capture_output=True, timeout=60)
        self.assertEqual(p.stdout, b"200")
        self.aws("s3", "cp", "s3://kiln-presign/up.bin", self.path("up.back"))
        self.assertEqual(self.read("up.back"), b"presigned upload")


if __name__ == "__main__":
    unittest.main()
