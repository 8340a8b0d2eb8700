"""Authentication through the real AWS CLI and raw signed requests: STS identity and
AssumeRole credentials, wrong secret / unknown key per service, a CLI request tampered with
in flight, stale dates, unsigned requests; each refused with AWS's status, code and format."""

import datetime
import hashlib
import http.client
import json
import socket
import threading
import unittest

import sigv4
from clitest import CliTest

SIG_MSG = ("The request signature we calculated does not match the signature you provided. "
           "Check your key and signing method.")


class TamperProxy:
    """A TCP proxy that rewrites bytes of the requests passing through it (same length, so
    Content-Length stays right): the signature then covers different content."""

    def __init__(self, target_port, old, new):
        self.target_port, self.old, self.new = target_port, old, new
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.hits = 0
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                c, _ = self.sock.accept()
            except OSError:
                return
            u = socket.create_connection(("127.0.0.1", self.target_port))
            threading.Thread(target=self.pipe, args=(c, u, True), daemon=True).start()
            threading.Thread(target=self.pipe, args=(u, c, False), daemon=True).start()

    def pipe(self, a, b, rewrite):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                if rewrite and self.old in data:
                    data = data.replace(self.old, self.new)
                    self.hits += 1
                b.sendall(data)
        except OSError:
            pass
        finally:
            try:
                b.shutdown(socket.SHUT_WR)
            except OSError:
                pass

    def close(self):
        self.sock.close()


class AuthCli(CliTest):
    def test_sts_get_caller_identity(self):
        out = self.aws_json("sts", "get-caller-identity")
        self.assertEqual(out["Account"], "123456789012")
        self.assertEqual(out["Arn"], "arn:aws:iam::123456789012:user/kiln-test")
        self.assertEqual(self.requests("sts:GetCallerIdentity"), 1)

    def test_assume_role_credentials(self):
        out = self.aws_json("sts", "assume-role", "--role-arn",
                            "arn:aws:iam::123456789012:role/kiln-builder",
                            "--role-session-name", "build-1")
        c = out["Credentials"]
        self.assertTrue(c["AccessKeyId"].startswith("ASIA"))
        env = {"AWS_ACCESS_KEY_ID": c["AccessKeyId"],
               "AWS_SECRET_ACCESS_KEY": c["SecretAccessKey"],
               "AWS_SESSION_TOKEN": c["SessionToken"]}
        who = self.aws_json("sts", "get-caller-identity", env=env)
        self.assertEqual(who["Arn"],
                         "arn:aws:sts::123456789012:assumed-role/kiln-builder/build-1")
        self.aws("ec2", "describe-regions", env=env)
        self.aws("s3", "mb", "s3://kiln-role", env=env)
        self.assertIn("kiln-role", self.aws("s3", "ls", env=env))
        bad = dict(env, AWS_SESSION_TOKEN=c["SessionToken"][:-4] + "AAAA")
        code, err = self.aws_fail("sts", "get-caller-identity", env=bad)
        self.assertIn("InvalidClientTokenId", err)
        code, err = self.aws_fail("s3", "ls", env=bad)
        self.assertIn("InvalidToken", err)
        code, err = self.aws_fail("sts", "assume-role", "--role-arn",
                                  "arn:aws:iam::123456789012:user/not-a-role",
                                  "--role-session-name", "xx")
        self.assertIn("ValidationError", err)

    def test_extra_credentials_flag(self):
        self.sim.stop()
        from simctl import Simulator
        self.sim = Simulator(credentials=["AKIDSECOND:second-secret",
                                          "AKIDTOKEN:third-secret:the-token"]).start()
        self.addCleanup(self.sim.stop)
        self.aws("sts", "get-caller-identity", env={"AWS_ACCESS_KEY_ID": "AKIDSECOND",
                                                    "AWS_SECRET_ACCESS_KEY": "second-secret"})
        env = {"AWS_ACCESS_KEY_ID": "AKIDTOKEN", "AWS_SECRET_ACCESS_KEY": "third-secret"}
        self.aws("s3", "ls", env=dict(env, AWS_SESSION_TOKEN="the-token"))
        code, err = self.aws_fail("s3", "ls", env=env)  # the token is required
        self.assertIn("InvalidToken", err)
        self.aws("ec2", "describe-regions")  # the default key keeps working

    def test_wrong_secret(self):
        env = {"AWS_SECRET_ACCESS_KEY": "not-the-secret"}
        for args, op in ((("ec2", "describe-regions"), "DescribeRegions"),
                         (("s3api", "list-buckets"), "ListBuckets"),
                         (("sts", "get-caller-identity"), "GetCallerIdentity")):
            code, err = self.aws_fail(*args, env=env)
            self.assertEqual(code, 254, err)
            self.assertIn("An error occurred (SignatureDoesNotMatch) when calling the %s "
                          "operation: %s" % (op, SIG_MSG), err)
        code, err = self.aws_fail("ebs", "list-snapshot-blocks", "--snapshot-id",
                                  "snap-0123456789abcdef0", env=env)
        self.assertIn("InvalidSignatureException", err)
        fails = self.sim.state()["auth_failures"]
        self.assertGreaterEqual(fails["SignatureDoesNotMatch"], 3)

    def test_unknown_access_key(self):
        env = {"AWS_ACCESS_KEY_ID": "AKIDNOBODY"}
        code, err = self.aws_fail("ec2", "describe-regions", env=env)
        self.assertIn("An error occurred (AuthFailure) when calling the DescribeRegions "
                      "operation: AWS was not able to validate the provided access credentials",
                      err)
        code, err = self.aws_fail("s3api", "list-buckets", env=env)
        self.assertIn("(InvalidAccessKeyId)", err)
        self.assertIn("The AWS Access Key Id you provided does not exist in our records.", err)
        code, err = self.aws_fail("sts", "get-caller-identity", env=env)
        self.assertIn("(InvalidClientTokenId)", err)
        code, err = self.aws_fail("ebs", "list-snapshot-blocks", "--snapshot-id",
                                  "snap-0123456789abcdef0", env=env)
        self.assertIn("UnrecognizedClientException", err)

    def test_tampered_request(self):
        # The CLI signs DescribeRegions for us-east-1; the proxy changes it to eu-west-1.
        proxy = TamperProxy(self.sim.port, b"RegionName.1=us-east-1",
                            b"RegionName.1=eu-west-1")
        self.addCleanup(proxy.close)
        e = self.sim.env()
        import subprocess
        p = subprocess.run(["/usr/bin/aws", "--endpoint-url", "http://127.0.0.1:%d"
                            % proxy.port, "ec2", "describe-regions", "--region-names",
                            "us-east-1"], env=e, capture_output=True, timeout=120)
        self.assertGreater(proxy.hits, 0)
        self.assertEqual(p.returncode, 254)
        self.assertIn(("An error occurred (SignatureDoesNotMatch) when calling the "
                       "DescribeRegions operation: " + SIG_MSG).encode(), p.stderr)
        # An S3 upload whose body is changed in flight: the payload hash no longer matches.
        self.aws("s3", "mb", "s3://kiln-tamper")
        self.write("t.txt", b"original content")
        proxy2 = TamperProxy(self.sim.port, b"original content", b"modified content")
        self.addCleanup(proxy2.close)
        p = subprocess.run(["/usr/bin/aws", "--endpoint-url", "http://127.0.0.1:%d"
                            % proxy2.port, "s3api", "put-object", "--bucket", "kiln-tamper",
                            "--key", "t.txt", "--body", self.path("t.txt")], env=e,
                           capture_output=True, timeout=120)
        self.assertNotEqual(p.returncode, 0)
        self.assertTrue(b"XAmzContentSHA256Mismatch" in p.stderr or b"BadDigest" in p.stderr,
                        p.stderr)
        self.assertNotIn("t.txt", self.sim.state()["s3"]["kiln-tamper"]["objects"])

    def raw(self, method, path, service, body=b"", headers=(), date=None, secret=None,
            query=()):
        """Send a request signed by sigv4.sign_headers (to choose the date freely)."""
        host = "127.0.0.1:%d" % self.sim.port
        date = date or datetime.datetime.utcnow()
        amz = date.strftime("%Y%m%dT%H%M%SZ")
        hdrs = [("Host", host)] + list(headers)
        add = sigv4.sign_headers(method, path, list(query), hdrs, body, "AKIDKILNTEST",
                                 secret or "kiln-test-secret", "us-east-1", service, amz)
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=30)
        qs = "&".join("%s=%s" % (sigv4.uri_encode(k), sigv4.uri_encode(v)) for k, v in query)
        conn.putrequest(method, path + ("?" + qs if qs else ""), skip_host=True,
                        skip_accept_encoding=True)
        for n, v in hdrs + add:
            conn.putheader(n, v)
        conn.putheader("Content-Length", str(len(body)))
        conn.endheaders(body)
        r = conn.getresponse()
        data = r.read()
        self.last_headers = dict((k.lower(), v) for k, v in r.getheaders())
        conn.close()
        return r.status, data

    def test_stale_date(self):
        old = datetime.datetime.utcnow() - datetime.timedelta(minutes=20)
        form = [("Content-Type", "application/x-www-form-urlencoded; charset=utf-8")]
        status, body = self.raw("POST", "/", "ec2", b"Action=DescribeRegions&Version=2016-11-15",
                                form, date=old)
        self.assertEqual(status, 400)
        self.assertIn(b"<Code>RequestExpired</Code>", body)
        status, body = self.raw("GET", "/", "s3", date=old)
        self.assertEqual(status, 403)
        self.assertIn(b"<Code>RequestTimeTooSkewed</Code>", body)
        self.assertIn(b"<MaxAllowedSkewMilliseconds>900000</MaxAllowedSkewMilliseconds>", body)
        status, body = self.raw("POST", "/", "sts", b"Action=GetCallerIdentity&Version=2011-06-15",
                                form, date=old)
        self.assertEqual(status, 403)
        self.assertIn(b"Signature expired", body)
        status, body = self.raw("GET", "/snapshots/snap-0123456789abcdef0/blocks", "ebs",
                                date=old)
        self.assertEqual(status, 403)
        self.assertEqual(self.last_headers["x-amzn-errortype"], "InvalidSignatureException")
        self.assertIn("Signature expired", json.loads(body)["Message"])
        # Within 15 minutes is fine.
        recent = datetime.datetime.utcnow() - datetime.timedelta(minutes=10)
        status, body = self.raw("POST", "/", "ec2", b"Action=DescribeRegions&Version=2016-11-15",
                                form, date=recent)
        self.assertEqual(status, 200, body)

    def test_unsigned_and_malformed(self):
        conn = http.client.HTTPConnection("127.0.0.1", self.sim.port, timeout=30)
        conn.request("GET", "/")
        r = conn.getresponse()
        self.assertEqual(r.status, 403)
        self.assertIn(b"<Code>AccessDenied</Code>", r.read())
        conn.request("POST", "/", body=b"Action=DescribeRegions&Version=2016-11-15",
                     headers={"Content-Type": "application/x-www-form-urlencoded"})
        r = conn.getresponse()
        self.assertEqual(r.status, 401)
        self.assertIn(b"<Response><Errors><Error><Code>AuthFailure</Code>", r.read())
        conn.request("GET", "/", headers={"Authorization": "AWS AKIDKILNTEST:abc"})
        r = conn.getresponse()
        self.assertEqual(r.status, 400)
        self.assertIn(b"AuthorizationHeaderMalformed", r.read())
        # The control API is not signed.
        conn.request("GET", "/_kiln/state")
        r = conn.getresponse()
        self.assertEqual(r.status, 200)
        self.assertIn("requests", json.loads(r.read()))
        conn.close()


if __name__ == "__main__":
    unittest.main()
