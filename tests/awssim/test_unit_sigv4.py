"""SigV4 canonicalisation and verification against AWS's published test suites
(testdata/sigv4/: aws-c-auth v4 suite and botocore's aws4_testsuite).  Each case checks that
the simulator rebuilds the canonical request, string to sign and signature byte for byte,
and that its verifier accepts the signed request and rejects a tampered one."""

import calendar
import hashlib
import json
import os
import time
import unittest

import sigv4
import awssim
from util import AwsError

HERE = os.path.dirname(os.path.abspath(__file__))
CRT = os.path.join(HERE, "testdata", "sigv4", "aws-c-auth-v4")
BOTO = os.path.join(HERE, "testdata", "sigv4", "botocore-aws4_testsuite")
BOTO_SECRET = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
STS_TOKEN_FILE = os.path.join(BOTO, "post-sts-token", "readme.txt")


def parse_http(text):
    """Parse a test-suite request file: request line, headers (with continuation lines),
    blank line, body.  Paths may hold raw spaces and UTF-8, as in the suite."""
    head, _, body = text.partition("\n\n")
    lines = head.split("\n")
    first = lines[0]
    method, rest = first.split(" ", 1)
    target = rest.rsplit(" ", 1)[0]
    headers = []
    for line in lines[1:]:
        if line[:1] in (" ", "\t") and headers:
            n, v = headers[-1]
            headers[-1] = (n, v + "\n" + line)
            continue
        n, _, v = line.partition(":")
        headers.append((n, v))
    path, _, query = target.partition("?")
    return method, path, query, headers, body.encode()


class FakeHeaders:
    """The subset of http.client.HTTPMessage the verifier uses."""

    def __init__(self, items):
        self._items = items

    def items(self):
        return list(self._items)

    def get(self, name, default=None):
        for n, v in self._items:
            if n.lower() == name.lower():
                return v
        return default


def verify(method, path, query, headers, body, secret, akid, token=None, now=None,
           service="service"):
    """Run the simulator's verifier over a parsed request."""
    awssim.SERVICES.setdefault("service", awssim.ebs)  # JSON-style errors for 'service'
    creds = [awssim.Credential(akid, secret, token)]
    sim = type("S", (), {"creds": {c.akid: c for c in creds}})()
    hdrs = FakeHeaders(headers)
    sha = hashlib.sha256(body).hexdigest()
    req = awssim.Request(None, method, path, query, hdrs,
                         awssim.Body(data=body, size=len(body), sha256=sha))
    return awssim.authenticate(sim, req, now=now)


def context_time(ctx):
    return calendar.timegm(time.strptime(ctx["timestamp"], "%Y-%m-%dT%H:%M:%SZ"))


def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()


class CrtSuite(unittest.TestCase):
    def check_case(self, name):
        d = os.path.join(CRT, name)
        ctx = json.loads(read(os.path.join(d, "context.json")))
        cred = ctx["credentials"]
        now = context_time(ctx)
        for mode in ("header", "query"):
            method, path, query, headers, body = parse_http(read(os.path.join(
                d, "%s-signed-request.txt" % mode)))
            pairs = sigv4.parse_query(query)
            if mode == "query" and ctx.get("omit_session_token"):
                # The token was appended after signing: it is not part of the canonical query.
                pairs = [(k, v) for k, v in pairs if k != "X-Amz-Security-Token"]
            if mode == "header":
                authz = dict((n.lower(), v) for n, v in headers)["authorization"]
                info = sigv4.parse_authorization(authz)
                amz_date = dict((n.lower(), v) for n, v in headers)["x-amz-date"]
            else:
                info = sigv4.parse_presigned(pairs)
                amz_date = info["amz_date"]
            declared = dict((n.lower(), v) for n, v in headers).get("x-amz-content-sha256")
            payload = declared or hashlib.sha256(body).hexdigest()
            creq = sigv4.canonical_request(method, path, pairs, headers, info["signed_headers"],
                                           payload, ctx["service"], ctx["normalize"])
            self.assertEqual(creq, read(os.path.join(d, "%s-canonical-request.txt" % mode)),
                             "%s %s canonical request" % (name, mode))
            scope = sigv4.scope_string(amz_date[:8], ctx["region"], ctx["service"])
            sts = sigv4.string_to_sign(amz_date, scope, creq)
            self.assertEqual(sts, read(os.path.join(d, "%s-string-to-sign.txt" % mode)))
            sig = sigv4.signature(cred["secret_access_key"], amz_date[:8], ctx["region"],
                                  ctx["service"], sts)
            self.assertEqual(sig, read(os.path.join(d, "%s-signature.txt" % mode)).strip())
            if not ctx["normalize"]:
                continue  # the simulator always normalises non-S3 paths, as AWS does
            if " " in path or any(ord(c) > 127 for c in path):
                continue  # not a valid request line on the wire; covered by the lines above
            token = cred.get("token") if not ctx.get("omit_session_token") else None
            if ctx.get("omit_session_token") and mode == "header":
                token = cred.get("token")  # sent, unsigned (post-sts-header-after)
            if mode == "query" and ctx.get("omit_session_token"):
                continue
            kw = dict(secret=cred["secret_access_key"], akid=cred["access_key_id"],
                      token=token, now=now + 30, service=ctx["service"])
            verify(method, path, query, headers, body, **kw)
            # One changed byte in the signed content must be refused.
            if mode == "header":
                bad = [(n, v + "x" if n.lower() == "host" else v) for n, v in headers]
                bad_query = query
            else:
                bad = headers
                bad_query = query.replace("X-Amz-Date=", "X-Amz-Date=1", 1) \
                    if "Param" not in query else query.replace("Param", "Parbm", 1)
                bad_query = query + "&extra=1"
            with self.assertRaises(AwsError) as cm:
                verify(method, path, bad_query, bad, body, **kw)
            self.assertIn(cm.exception.code, ("InvalidSignatureException",
                                              "SignatureDoesNotMatch"))


def _add_crt_cases():
    for name in sorted(os.listdir(CRT)):
        if os.path.isdir(os.path.join(CRT, name)):
            setattr(CrtSuite, "test_" + name.replace("-", "_"),
                    lambda self, n=name: self.check_case(n))


_add_crt_cases()


class BotocoreSuite(unittest.TestCase):
    def check_case(self, rel):
        d = os.path.join(BOTO, rel)
        base = os.path.join(d, os.path.basename(rel))
        method, path, query, headers, body = parse_http(read(base + ".sreq"))
        authz = dict((n.lower(), v) for n, v in headers)["authorization"]
        info = sigv4.parse_authorization(authz)
        amz_date = dict((n.lower(), v) for n, v in headers)["x-amz-date"]
        creq = sigv4.canonical_request(method, path, sigv4.parse_query(query), headers,
                                       info["signed_headers"], hashlib.sha256(body).hexdigest(),
                                       "service")
        self.assertEqual(creq, read(base + ".creq"))
        sts = sigv4.string_to_sign(amz_date, sigv4.scope_string(amz_date[:8], "us-east-1",
                                                                "service"), creq)
        self.assertEqual(sts, read(base + ".sts"))
        sig = sigv4.signature(BOTO_SECRET, amz_date[:8], "us-east-1", "service", sts)
        # The .authz file is the reference (in get-vanilla-with-session-token the .sreq file
        # carries a different, inconsistent signature).
        self.assertEqual(read(base + ".authz").split("Signature=")[1].strip(), sig)


def _add_boto_cases():
    for root, dirs, files in os.walk(BOTO):
        for f in files:
            if f.endswith(".sreq"):
                rel = os.path.relpath(root, BOTO)
                name = "test_" + rel.replace("/", "_").replace("-", "_")
                setattr(BotocoreSuite, name, lambda self, r=rel: self.check_case(r))


_add_boto_cases()


class Skew(unittest.TestCase):
    def test_stale_date_refused(self):
        d = os.path.join(CRT, "get-vanilla")
        ctx = json.loads(read(os.path.join(d, "context.json")))
        method, path, query, headers, body = parse_http(read(os.path.join(
            d, "header-signed-request.txt")))
        kw = dict(secret=ctx["credentials"]["secret_access_key"],
                  akid=ctx["credentials"]["access_key_id"])
        verify(method, path, query, headers, body, now=context_time(ctx) + 14 * 60, **kw)
        with self.assertRaises(AwsError) as cm:
            verify(method, path, query, headers, body, now=context_time(ctx) + 16 * 60, **kw)
        self.assertIn("Signature expired", cm.exception.message)

    def test_presigned_expiry(self):
        d = os.path.join(CRT, "get-vanilla")
        ctx = json.loads(read(os.path.join(d, "context.json")))
        method, path, query, headers, body = parse_http(read(os.path.join(
            d, "query-signed-request.txt")))
        kw = dict(secret=ctx["credentials"]["secret_access_key"],
                  akid=ctx["credentials"]["access_key_id"])
        verify(method, path, query, headers, body, now=context_time(ctx) + 3599, **kw)
        with self.assertRaises(AwsError) as cm:
            verify(method, path, query, headers, body, now=context_time(ctx) + 3601, **kw)
        self.assertEqual((cm.exception.status, cm.exception.code, cm.exception.message),
                         (403, "AccessDenied", "Request has expired"))

    def test_unknown_key_and_wrong_secret(self):
        d = os.path.join(CRT, "get-vanilla")
        ctx = json.loads(read(os.path.join(d, "context.json")))
        method, path, query, headers, body = parse_http(read(os.path.join(
            d, "header-signed-request.txt")))
        now = context_time(ctx)
        with self.assertRaises(AwsError) as cm:
            verify(method, path, query, headers, body, secret="x", akid="OTHER", now=now)
        self.assertEqual(cm.exception.code, "UnrecognizedClientException")
        with self.assertRaises(AwsError) as cm:
            verify(method, path, query, headers, body, secret="wrong", akid="AKIDEXAMPLE",
                   now=now)
        self.assertEqual(cm.exception.code, "InvalidSignatureException")


if __name__ == "__main__":
    unittest.main()
