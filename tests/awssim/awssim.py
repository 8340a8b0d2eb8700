#!/usr/bin/env python3
"""Kiln's local AWS simulator: EC2, S3, EBS direct APIs and STS behind one HTTP endpoint.

Every request is SigV4-verified as AWS does it; the service and region come from the
credential scope.  A control API under /_kiln/ (unsigned, loopback only) dumps state, sets
faults and resets.  Python 3 standard library only.  See docs/awssim.md.
"""

import argparse
import calendar
import datetime
import email.utils
import hashlib
import hmac
import json
import os
import random
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
import traceback
import urllib.parse
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import sigv4  # noqa: E402
from util import AwsError  # noqa: E402
import ec2  # noqa: E402
import s3  # noqa: E402
import ebs  # noqa: E402
import sts  # noqa: E402

DEFAULT_AKID = "AKIDKILNTEST"
DEFAULT_SECRET = "kiln-test-secret"
DEFAULT_ACCOUNT = "123456789012"
MAX_SKEW = 15 * 60
MEM_BODY_LIMIT = 1 << 20
SERVICES = {"ec2": ec2, "s3": s3, "ebs": ebs, "sts": sts}
FAULT_KINDS = ("throttle", "500", "reset", "slow")


class Credential:
    def __init__(self, akid, secret, token=None, account=DEFAULT_ACCOUNT, arn=None,
                 user_id=None, expires=None):
        self.akid = akid
        self.secret = secret
        self.token = token
        self.account = account
        self.arn = arn or "arn:aws:iam::%s:user/kiln-test" % account
        self.user_id = user_id or "AIDA" + hashlib.sha1(akid.encode()).hexdigest()[:17].upper()
        self.expires = expires


class Body:
    """A request body, in memory when small, in a file under the state dir when large."""

    def __init__(self, data=None, path=None, size=0, sha256=None, md5=None):
        self.data = data
        self.path = path
        self.size = size
        self.sha256 = sha256
        self.md5 = md5

    def read_all(self, limit=64 << 20):
        if self.data is not None:
            return self.data
        if self.size > limit:
            raise AwsError(400, "EntityTooLarge", "request body too large")
        with open(self.path, "rb") as f:
            return f.read()

    def discard(self):
        if self.path and os.path.exists(self.path):
            os.unlink(self.path)
        self.path = None


class Request:
    def __init__(self, handler, method, raw_path, raw_query, headers, body):
        self.handler = handler
        self.method = method
        self.raw_path = raw_path
        self.path = urllib.parse.unquote(raw_path)
        self.raw_query = raw_query
        self.query_pairs = sigv4.parse_query(raw_query)
        self.query = {}
        for k, v in self.query_pairs:
            self.query.setdefault(k, v)
        self.headers = headers
        self.body = body
        self.service = None
        self.region = "us-east-1"
        self.cred = None
        self.op = None
        self.request_id = str(uuid.uuid4())
        self.host = headers.get("Host", "")

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def form(self):
        """Query-protocol parameters: URL query plus a form-encoded body."""
        params = dict(self.query_pairs)
        if self.body is not None and self.body.size:
            ctype = (self.header("Content-Type") or "").split(";")[0].strip()
            if ctype in ("application/x-www-form-urlencoded", ""):
                text = self.body.read_all(8 << 20).decode("utf-8", "replace")
                for k, v in urllib.parse.parse_qsl(text, keep_blank_values=True):
                    params[k] = v
        return params


class Response:
    def __init__(self, status=200, body=b"", headers=None, file=None, length=None,
                 content_type=None):
        self.status = status
        self.body = body
        self.headers = list(headers or [])
        self.file = file          # (path, offset) for streamed file bodies
        self.length = length if length is not None else len(body)
        if content_type:
            self.headers.append(("Content-Type", content_type))


class Sim:
    def __init__(self, state_dir, creds, faults, delay_scale, seed):
        self.state_dir = state_dir
        self.lock = threading.RLock()
        self.creds = {c.akid: c for c in creds}
        self.delay_scale = delay_scale
        self.seed = seed
        self.rng = random.Random(seed)
        self.fault_rng = random.Random(seed + 1 if seed is not None else None)
        self.fault_rate, self.fault_kinds = faults
        self.counters = {}
        self.fault_counters = {k: 0 for k in FAULT_KINDS}
        self.auth_failures = {}
        self.reset_state()

    def reset_state(self):
        with self.lock:
            for sub in ("s3", "ebs", "tmp"):
                p = os.path.join(self.state_dir, sub)
                shutil.rmtree(p, ignore_errors=True)
                os.makedirs(p, exist_ok=True)
            self.counters = {}
            self.fault_counters = {k: 0 for k in FAULT_KINDS}
            self.auth_failures = {}
            self.regions = {}
            self.s3 = s3.S3State(self)
            self.sts_issued = 0
            # Temporary credentials from AssumeRole die with a reset.
            self.creds = {k: c for k, c in self.creds.items() if c.token is None
                          or not k.startswith("ASIA")}

    def region(self, name):
        with self.lock:
            r = self.regions.get(name)
            if r is None:
                r = ec2.RegionState(self, name)
                self.regions[name] = r
            return r

    def new_id(self, prefix, n=17):
        with self.lock:
            return "%s-%0*x" % (prefix, n, self.rng.getrandbits(4 * n))

    def delay(self, seconds):
        return seconds * self.delay_scale

    def tmp_path(self):
        return os.path.join(self.state_dir, "tmp", uuid.uuid4().hex)

    def count(self, service, op):
        with self.lock:
            key = "%s:%s" % (service, op)
            self.counters[key] = self.counters.get(key, 0) + 1

    def dump(self):
        with self.lock:
            return {
                "regions": {n: r.dump() for n, r in self.regions.items()},
                "s3": self.s3.dump(),
                "requests": dict(self.counters),
                "auth_failures": dict(self.auth_failures),
                "faults": {"rate": self.fault_rate, "kinds": list(self.fault_kinds),
                           "injected": dict(self.fault_counters)},
                "delay_scale": self.delay_scale,
                "credentials": sorted(self.creds),
            }

    def pick_fault(self):
        with self.lock:
            if self.fault_rate <= 0 or not self.fault_kinds:
                return None
            if self.fault_rng.random() >= self.fault_rate:
                return None
            kind = self.fault_rng.choice(self.fault_kinds)
            self.fault_counters[kind] = self.fault_counters.get(kind, 0) + 1
            return kind


def guess_service(req):
    """Service for formatting an error when the credential scope cannot be read."""
    if req.raw_path.startswith("/snapshots"):
        return "ebs"
    if req.body is not None and req.body.data and b"Action=" in req.body.data:
        if b"Action=GetCallerIdentity" in req.body.data or b"Action=AssumeRole" in req.body.data:
            return "sts"
        return "ec2"
    if "Action" in req.query:
        return "ec2"
    return "s3"


def parse_amz_date(value):
    try:
        return calendar.timegm(time.strptime(value, "%Y%m%dT%H%M%SZ"))
    except (ValueError, TypeError):
        return None


def header_date(req):
    """X-Amz-Date, or the HTTP Date header converted to the same form (SigV4 allows it)."""
    v = req.header("X-Amz-Date")
    if v is not None:
        return v
    d = req.header("Date")
    if d:
        try:
            t = email.utils.parsedate_to_datetime(d)
            return t.astimezone(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        except (TypeError, ValueError):
            return None
    return None


def auth_error(req, kind, detail=""):
    """The error AWS returns for an authentication failure, per service."""
    # REST-JSON services (and the test suites' "service") share the JSON error style of ebs.
    svc = req.service if req.service in ("s3", "ec2", "sts") else "ebs"
    if kind == "missing":
        return {
            "s3": AwsError(403, "AccessDenied", "Access Denied"),
            "ec2": AwsError(401, "AuthFailure",
                            "AWS was not able to validate the provided access credentials"),
            "sts": AwsError(403, "MissingAuthenticationToken",
                            "Request is missing Authentication Token"),
            "ebs": AwsError(403, "MissingAuthenticationTokenException",
                            "Missing Authentication Token"),
        }[svc]
    if kind == "unknown-key":
        return {
            "s3": AwsError(403, "InvalidAccessKeyId",
                           "The AWS Access Key Id you provided does not exist in our records.",
                           AWSAccessKeyId=detail),
            "ec2": AwsError(401, "AuthFailure",
                            "AWS was not able to validate the provided access credentials"),
            "sts": AwsError(403, "InvalidClientTokenId",
                            "The security token included in the request is invalid."),
            "ebs": AwsError(403, "UnrecognizedClientException",
                            "The security token included in the request is invalid."),
        }[svc]
    if kind == "bad-token":
        return {
            "s3": AwsError(400, "InvalidToken",
                           "The provided token is malformed or otherwise invalid."),
            "ec2": AwsError(401, "AuthFailure",
                            "AWS was not able to validate the provided access credentials"),
            "sts": AwsError(403, "InvalidClientTokenId",
                            "The security token included in the request is invalid."),
            "ebs": AwsError(403, "UnrecognizedClientException",
                            "The security token included in the request is invalid."),
        }[svc]
    if kind == "expired-token":
        return {
            "s3": AwsError(400, "ExpiredToken", "The provided token has expired."),
            "ec2": AwsError(400, "RequestExpired", "Request has expired."),
            "sts": AwsError(403, "ExpiredToken", "The security token included in the request "
                            "is expired"),
            "ebs": AwsError(403, "ExpiredTokenException", "The security token included in the "
                            "request is expired"),
        }[svc]
    if kind == "skew":
        return {
            "s3": AwsError(403, "RequestTimeTooSkewed", "The difference between the request "
                           "time and the current time is too large.", **detail),
            "ec2": AwsError(400, "RequestExpired", "Request has expired."),
            "sts": AwsError(403, "SignatureDoesNotMatch", "Signature expired: %s is now earlier"
                            " than %s" % (detail.get("RequestTime"), detail.get("Earliest"))),
            "ebs": AwsError(403, "InvalidSignatureException", "Signature expired: %s is now "
                            "earlier than %s" % (detail.get("RequestTime"),
                                                 detail.get("Earliest"))),
        }[svc]
    if kind == "presign-expired":
        return AwsError(403, "AccessDenied", "Request has expired", **detail)
    if kind == "malformed":
        return {
            "s3": AwsError(400, "AuthorizationHeaderMalformed",
                           "The authorization header is malformed; " + detail),
            "ec2": AwsError(400, "IncompleteSignature", detail),
            "sts": AwsError(400, "IncompleteSignature", detail),
            "ebs": AwsError(403, "IncompleteSignatureException", detail),
        }[svc]
    if kind == "sha-mismatch":
        if svc == "s3":
            return AwsError(400, "XAmzContentSHA256Mismatch", "The provided "
                            "'x-amz-content-sha256' header does not match what was computed.",
                            **detail)
        kind = "signature"
    # signature mismatch
    msg = ("The request signature we calculated does not match the signature you provided. "
           "Check your key and signing method.")
    if svc == "s3":
        return AwsError(403, "SignatureDoesNotMatch", msg, **(detail or {}))
    if svc == "ebs":
        return AwsError(403, "InvalidSignatureException", msg)
    return AwsError(403, "SignatureDoesNotMatch", msg)


def authenticate(sim, req, now=None):
    """Verify the SigV4 signature of req (header or presigned query).  Sets req.service,
    req.region and req.cred; raises AwsError in the service's own error format."""
    now = time.time() if now is None else now
    authz = req.header("Authorization")
    presigned = None
    if authz is None:
        presigned = sigv4.parse_presigned(req.query_pairs)
        if presigned is None:
            req.service = guess_service(req)
            raise auth_error(req, "missing")
        info = presigned
        amz_date = info["amz_date"]
    else:
        info = sigv4.parse_authorization(authz)
        if info is None:
            req.service = guess_service(req)
            raise auth_error(req, "malformed", "expected AWS4-HMAC-SHA256 Credential=, "
                             "SignedHeaders=, Signature=")
        amz_date = header_date(req)
    req.service = info["service"] if info["service"] in SERVICES else guess_service(req)
    if info["service"] not in SERVICES:
        raise auth_error(req, "malformed", "unknown service '%s'" % info["service"])
    req.region = info["region"]
    if info["terminator"] != "aws4_request":
        raise auth_error(req, "malformed", "credential scope must end in aws4_request")
    ts = parse_amz_date(amz_date)
    if ts is None:
        raise auth_error(req, "malformed", "missing or invalid X-Amz-Date")
    if amz_date[:8] != info["date"]:
        raise auth_error(req, "malformed", "credential date does not match X-Amz-Date")
    cred = sim.creds.get(info["akid"])
    if cred is None:
        raise auth_error(req, "unknown-key", info["akid"])
    token = req.header("X-Amz-Security-Token") if presigned is None else presigned["token"]
    if cred.token is not None and token != cred.token:
        raise auth_error(req, "bad-token")
    if cred.token is None and token:
        raise auth_error(req, "bad-token")
    if presigned is None:
        if abs(now - ts) > MAX_SKEW:
            raise auth_error(req, "skew", {
                "RequestTime": amz_date, "ServerTime": time.strftime(
                    "%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
                "MaxAllowedSkewMilliseconds": "900000",
                "Earliest": time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now - MAX_SKEW))})
    else:
        if info["expires"] < 1 or info["expires"] > 604800:
            raise AwsError(400, "AuthorizationQueryParametersError",
                           "X-Amz-Expires must be less than a week (in seconds) that is; "
                           "604800 seconds")
        if now > ts + info["expires"] or now < ts - MAX_SKEW:
            raise auth_error(req, "presign-expired", {
                "X-Amz-Expires": str(info["expires"]),
                "Expires": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                         time.gmtime(ts + info["expires"])),
                "ServerTime": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))})
    if cred.expires is not None and now > cred.expires:
        raise auth_error(req, "expired-token")
    if "host" not in info["signed_headers"]:
        raise auth_error(req, "malformed", "'Host' must be a signed header")

    declared = req.header("x-amz-content-sha256")
    if declared is not None:
        payload_hash = declared
    elif presigned is not None and req.service == "s3":
        payload_hash = sigv4.UNSIGNED_PAYLOAD
    elif req.service == "s3" and presigned is None:
        raise AwsError(400, "InvalidRequest",
                       "Missing required header for this request: x-amz-content-sha256")
    else:
        payload_hash = req.body.sha256 if req.body else sigv4.EMPTY_SHA256

    headers = list(req.headers.items())
    creq = sigv4.canonical_request(req.method, req.raw_path, req.query_pairs, headers,
                                   info["signed_headers"], payload_hash, req.service)
    scope = sigv4.scope_string(info["date"], info["region"], info["service"])
    sts_text = sigv4.string_to_sign(amz_date, scope, creq)
    expect = sigv4.signature(cred.secret, info["date"], info["region"], info["service"],
                             sts_text)
    if not hmac.compare_digest(expect, info["signature"]):
        raise auth_error(req, "signature", {
            "AWSAccessKeyId": info["akid"], "StringToSign": sts_text,
            "SignatureProvided": info["signature"], "CanonicalRequest": creq})
    if (payload_hash not in (sigv4.UNSIGNED_PAYLOAD,) + sigv4.STREAMING_PAYLOADS
            and req.body is not None and payload_hash != req.body.sha256):
        raise auth_error(req, "sha-mismatch", {
            "ClientComputedContentSHA256": payload_hash,
            "S3ComputedContentSHA256": req.body.sha256})
    req.cred = cred
    req.sig_info = dict(info, amz_date=amz_date, scope=scope, secret=cred.secret,
                        payload_hash=payload_hash)
    return info


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "AmazonS3"
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    sys_version = ""

    def log_message(self, fmt, *args):
        if self.server.verbose:
            sys.stderr.write("awssim: %s - %s\n" % (self.address_string(), fmt % args))

    def do_GET(self):
        self.dispatch()

    do_PUT = do_POST = do_DELETE = do_HEAD = do_GET

    # -- body handling -------------------------------------------------------------------

    def read_body(self):
        sim = self.server.sim
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        length = self.headers.get("Content-Length")
        sha = hashlib.sha256()
        md5 = hashlib.md5()
        if "chunked" in te:
            chunks = self._http_chunks()
        elif length is not None:
            try:
                n = int(length)
            except ValueError:
                raise AwsError(400, "InvalidArgument", "bad Content-Length")
            chunks = self._fixed(n)
        else:
            return Body(data=b"", size=0, sha256=sigv4.EMPTY_SHA256,
                        md5=hashlib.md5(b"").hexdigest())
        data = bytearray()
        f = None
        path = None
        size = 0
        try:
            for chunk in chunks:
                sha.update(chunk)
                md5.update(chunk)
                size += len(chunk)
                if f is None and len(data) + len(chunk) > MEM_BODY_LIMIT:
                    path = sim.tmp_path()
                    f = open(path, "wb")
                    f.write(data)
                    data = None
                if f is not None:
                    f.write(chunk)
                else:
                    data += chunk
        finally:
            if f is not None:
                f.close()
        return Body(data=bytes(data) if f is None else None, path=path, size=size,
                    sha256=sha.hexdigest(), md5=md5.hexdigest())

    def _fixed(self, n):
        while n > 0:
            chunk = self.rfile.read(min(n, 1 << 20))
            if not chunk:
                raise ConnectionError("client closed during body")
            n -= len(chunk)
            yield chunk

    def _http_chunks(self):
        while True:
            line = self.rfile.readline(65537)
            if not line:
                raise ConnectionError("client closed during chunked body")
            size = int(line.split(b";")[0].strip(), 16)
            if size == 0:
                while True:  # trailers
                    t = self.rfile.readline(65537)
                    if t in (b"\r\n", b"\n", b""):
                        break
                return
            yield from self._fixed(size)
            self.rfile.readline(3)

    # -- dispatch ------------------------------------------------------------------------

    def dispatch(self):
        sim = self.server.sim
        split = urllib.parse.urlsplit(self.path)
        raw_path, raw_query = split.path or "/", split.query
        if self.path.startswith("http://") or self.path.startswith("https://"):
            raw_path = split.path
        if raw_path.startswith("/_kiln/"):
            return self.control(raw_path)
        req = None
        try:
            body = self.read_body()
        except (ConnectionError, OSError):
            self.close_connection = True
            return
        except AwsError as e:
            req = Request(self, self.command, raw_path, raw_query, self.headers, None)
            req.service = "s3"
            return self.send_error_response(req, e)
        req = Request(self, self.command, raw_path, raw_query, self.headers, body)
        counted = False
        try:
            try:
                authenticate(sim, req)
            except AwsError as e:
                with sim.lock:
                    sim.auth_failures[e.code] = sim.auth_failures.get(e.code, 0) + 1
                raise
            module = SERVICES[req.service]
            fault = sim.pick_fault()
            if fault == "slow":
                time.sleep(sim.fault_rng.uniform(0.5, 2.0))
            elif fault == "throttle":
                req.op = module.operation_name(req)
                sim.count(req.service, req.op)
                counted = True
                raise module.throttle_error()
            elif fault == "500":
                req.op = module.operation_name(req)
                sim.count(req.service, req.op)
                counted = True
                raise AwsError(500, "InternalError" if req.service in ("ec2", "s3", "sts")
                               else "InternalServerException",
                               "We encountered an internal error. Please try again.")
            try:
                resp = module.handle(sim, req)
            finally:
                sim.count(req.service, req.op or "Unknown")
                counted = True
            if fault == "reset":
                return self.send_response_obj(req, resp, drop=True)
            return self.send_response_obj(req, resp)
        except AwsError as e:
            if not counted and req.service in SERVICES:
                try:
                    req.op = SERVICES[req.service].operation_name(req)
                except Exception:
                    req.op = "Unknown"
                sim.count(req.service, req.op)
            return self.send_error_response(req, e)
        except (ConnectionError, BrokenPipeError):
            self.close_connection = True
        except Exception:
            traceback.print_exc()
            return self.send_error_response(req, AwsError(
                500, "InternalError", "We encountered an internal error. Please try again."))
        finally:
            if req is not None and req.body is not None:
                req.body.discard()

    def send_error_response(self, req, err):
        module = SERVICES.get(req.service or "s3", s3)
        resp = module.error_response(req, err)
        self.send_response_obj(req, resp)

    def send_response_obj(self, req, resp, drop=False):
        if drop and (resp.length == 0 or self.command == "HEAD"):
            # Nothing to cut in half: drop the connection before the status line.
            self.drop()
            return
        self.send_response(resp.status)
        names = {n.lower() for n, _ in resp.headers}
        for n, v in resp.headers:
            self.send_header(n, v)
        if "x-amz-request-id" not in names:
            self.send_header("x-amz-request-id", req.request_id.replace("-", "")[:16].upper())
            self.send_header("x-amzn-RequestId", req.request_id)
        if "content-length" not in names:
            self.send_header("Content-Length", str(resp.length))
        self.end_headers()
        if self.command == "HEAD":
            if drop:
                self.drop()
            return
        if drop:
            # Send about half of the body, then reset the connection.
            half = resp.length // 2
            if resp.file is None:
                self.wfile.write(resp.body[:half])
            else:
                self._send_file(resp.file, half)
            self.wfile.flush()
            self.drop()
            return
        if resp.file is None:
            self.wfile.write(resp.body)
        else:
            self._send_file(resp.file, resp.length)

    def _send_file(self, file, length):
        src, offset = file
        # Handlers open the file while holding the state lock (an overwrite may unlink the
        # path right after), so src is usually an open file object.
        with (open(src, "rb") if isinstance(src, str) else src) as f:
            f.seek(offset)
            while length > 0:
                chunk = f.read(min(length, 1 << 20))
                if not chunk:
                    break
                self.wfile.write(chunk)
                length -= len(chunk)

    def drop(self):
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER,
                                       b"\x01\x00\x00\x00\x00\x00\x00\x00")
            self.connection.close()
        except OSError:
            pass

    # -- control API ---------------------------------------------------------------------

    def control(self, path):
        sim = self.server.sim
        if self.client_address[0] not in ("127.0.0.1", "::1", "::ffff:127.0.0.1"):
            return self.send_json(403, {"error": "control API is loopback only"})
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if path == "/_kiln/state" and self.command == "GET":
            return self.send_json(200, sim.dump())
        if path == "/_kiln/faults" and self.command == "POST":
            try:
                cfg = json.loads(raw or b"{}")
                rate = float(cfg.get("rate", 0))
                kinds = cfg.get("kinds", list(FAULT_KINDS))
                if isinstance(kinds, str):
                    kinds = [k for k in kinds.replace(",", "+").split("+") if k]
                bad = [k for k in kinds if k not in FAULT_KINDS]
                if bad or not 0 <= rate <= 1:
                    raise ValueError("bad fault kinds %s or rate %s" % (bad, rate))
            except (ValueError, AttributeError) as e:
                return self.send_json(400, {"error": str(e)})
            with sim.lock:
                sim.fault_rate, sim.fault_kinds = rate, tuple(kinds)
            return self.send_json(200, {"rate": rate, "kinds": kinds})
        if path == "/_kiln/reset" and self.command == "POST":
            sim.reset_state()
            return self.send_json(200, {"reset": True})
        return self.send_json(404, {"error": "no such control endpoint"})

    def send_json(self, status, obj):
        data = json.dumps(obj, indent=1, sort_keys=True).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 64


def parse_faults(spec):
    rate, kinds = 0.0, list(FAULT_KINDS)
    if spec:
        for part in spec.split(","):
            if not part:
                continue
            k, _, v = part.partition("=")
            if k == "rate":
                rate = float(v)
            elif k == "kinds":
                kinds = [x for x in v.split("+") if x]
            else:
                raise ValueError("unknown fault option %r" % k)
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad:
            raise ValueError("unknown fault kinds %s (known: %s)" % (bad, FAULT_KINDS))
    return rate, tuple(kinds)


def parse_credential(spec):
    parts = spec.split(":", 2)
    if len(parts) < 2 or not parts[0] or not parts[1]:
        raise ValueError("credential must be AKID:SECRET[:TOKEN]")
    return Credential(parts[0], parts[1], parts[2] if len(parts) == 3 else None)


def exit_with_parent():
    """Ask the kernel for SIGTERM when the parent dies, so a test runner killed on timeout
    does not leave simulators behind."""
    import ctypes
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGTERM, 0, 0, 0)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before prctl took effect
        sys.exit(1)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--ready-file")
    ap.add_argument("--state-dir")
    ap.add_argument("--credentials", action="extend", nargs="+", default=[],
                    metavar="AKID:SECRET[:TOKEN]",
                    help="extra accepted keys (repeatable; the default key is always accepted)")
    ap.add_argument("--faults", default="", help="rate=0.1,kinds=throttle+500+reset+slow")
    ap.add_argument("--delay-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=None)
    ap.add_argument("--verbose", action="store_true")
    ap.add_argument("--exit-with-parent", action="store_true",
                    help="stop when the process that started the simulator dies (Linux)")
    args = ap.parse_args(argv)

    try:
        faults = parse_faults(args.faults)
        creds = [Credential(DEFAULT_AKID, DEFAULT_SECRET)]
        creds += [parse_credential(c) for c in args.credentials]
    except ValueError as e:
        ap.error(str(e))
    if args.exit_with_parent:
        exit_with_parent()
    own_dir = None
    state_dir = args.state_dir
    if not state_dir:
        own_dir = state_dir = tempfile.mkdtemp(prefix="awssim-")
    os.makedirs(state_dir, exist_ok=True)
    sim = Sim(state_dir, creds, faults, args.delay_scale, args.seed)
    server = Server((args.host, args.port), Handler)
    server.sim = sim
    server.verbose = args.verbose
    port = server.server_address[1]
    if args.ready_file:
        tmp = args.ready_file + ".tmp"
        with open(tmp, "w") as f:
            f.write("%d\n" % port)
        os.rename(tmp, args.ready_file)
    sys.stderr.write("awssim: listening on http://%s:%d (state in %s)\n"
                     % (args.host, port, state_dir))

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        if own_dir:
            shutil.rmtree(own_dir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
