"""AWS Signature Version 4: canonical request, string to sign, signature.

The simulator uses this module to *verify* requests: it rebuilds the canonical request from what
arrived on the wire, exactly as AWS does, and compares signatures.  Differences between S3 and
the other services (no path normalisation and single URI encoding for S3; normalised,
double-encoded paths elsewhere) are handled here.
"""

import hashlib
import hmac
import re
import urllib.parse

ALGORITHM = "AWS4-HMAC-SHA256"
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PAYLOADS = (
    "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
    "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER",
)


def uri_encode(s, safe="-_.~"):
    """RFC 3986 encoding as SigV4 specifies: unreserved characters kept, UTF-8 otherwise."""
    if isinstance(s, str):
        s = s.encode("utf-8")
    return urllib.parse.quote(s, safe=safe)


def normalize_path(path):
    """Remove dot segments and empty segments, keeping a trailing slash (RFC 3986 5.2.4)."""
    if not path:
        return "/"
    trailing = path.endswith("/") and path != "/"
    out = []
    for seg in path.split("/"):
        if seg in ("", "."):
            continue
        if seg == "..":
            if out:
                out.pop()
            continue
        out.append(seg)
    res = "/" + "/".join(out)
    if trailing and res != "/":
        res += "/"
    return res


def canonical_uri(path, service, normalize=True):
    """Canonical URI.  For S3 the path is encoded once, without normalisation.
    For every other service the path is normalised and URI-encoded again, so a wire path that
    the client encoded once ends up encoded twice, as AWS expects."""
    if service == "s3":
        # S3 encodes the (decoded) path once and never normalises it.  Re-encoding what
        # arrived gives the same bytes for a correctly encoded request, and the canonical
        # form AWS uses when a client left characters such as '(' or '!' unencoded.
        return uri_encode(urllib.parse.unquote(path or "/"), safe="/~-_.") or "/"
    if normalize:
        path = normalize_path(path)
    return uri_encode(path, safe="/~-_.") or "/"


def parse_query(raw_query):
    """Split a raw query string into decoded (key, value) pairs, keeping order and repeats."""
    pairs = []
    if not raw_query:
        return pairs
    for part in raw_query.split("&"):
        if part == "":
            continue
        if "=" in part:
            k, v = part.split("=", 1)
        else:
            k, v = part, ""
        pairs.append((urllib.parse.unquote(k), urllib.parse.unquote(v)))
    return pairs


def canonical_query(pairs, exclude=("X-Amz-Signature",)):
    enc = [(uri_encode(k), uri_encode(v)) for k, v in pairs if k not in exclude]
    enc.sort()
    return "&".join("%s=%s" % kv for kv in enc)


_SPACES = re.compile(r"\s+")


def canonical_header_value(values):
    """Trim each value, fold continuation lines, collapse runs of spaces, join repeats by ','."""
    out = []
    for v in values:
        v = v.replace("\r\n", " ").replace("\n", " ")
        out.append(_SPACES.sub(" ", v.strip()))
    return ",".join(out)


def canonical_request(method, path, query_pairs, headers, signed_headers, payload_hash,
                      service, normalize=True):
    """headers: list of (name, value) as received (any case, repeats allowed).
    signed_headers: list of lower-case names (the order given in the request)."""
    by_name = {}
    for name, value in headers:
        by_name.setdefault(name.lower(), []).append(value)
    lines = []
    for name in signed_headers:
        lines.append("%s:%s\n" % (name, canonical_header_value(by_name.get(name, []))))
    return "\n".join([
        method.upper(),
        canonical_uri(path, service, normalize),
        canonical_query(query_pairs),
        "".join(lines),
        ";".join(signed_headers),
        payload_hash,
    ])


def scope_string(date, region, service):
    return "%s/%s/%s/aws4_request" % (date, region, service)


def string_to_sign(amz_date, scope, creq):
    return "\n".join([ALGORITHM, amz_date, scope,
                      hashlib.sha256(creq.encode("utf-8")).hexdigest()])


def _hmac(key, msg):
    return hmac.new(key, msg.encode("utf-8"), hashlib.sha256).digest()


def signing_key(secret, date, region, service):
    k = _hmac(("AWS4" + secret).encode("utf-8"), date)
    k = _hmac(k, region)
    k = _hmac(k, service)
    return _hmac(k, "aws4_request")


def signature(secret, date, region, service, sts):
    return hmac.new(signing_key(secret, date, region, service), sts.encode("utf-8"),
                    hashlib.sha256).hexdigest()


_AUTH_RE = re.compile(r"^AWS4-HMAC-SHA256\s+(.*)$")


def parse_authorization(value):
    """Parse 'AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...'.
    Returns dict with akid, date, region, service, terminator, signed_headers, signature,
    or None if malformed."""
    m = _AUTH_RE.match(value.strip())
    if not m:
        return None
    fields = {}
    for part in m.group(1).split(","):
        part = part.strip()
        if "=" not in part:
            return None
        k, v = part.split("=", 1)
        fields[k.strip()] = v.strip()
    try:
        cred = fields["Credential"]
        sh = fields["SignedHeaders"]
        sig = fields["Signature"]
    except KeyError:
        return None
    return _credential(cred, sh, sig)


def _credential(cred, signed_headers, sig):
    parts = cred.split("/")
    if len(parts) != 5:
        return None
    return {
        "akid": parts[0], "date": parts[1], "region": parts[2], "service": parts[3],
        "terminator": parts[4], "signed_headers": signed_headers.split(";"),
        "signature": sig,
    }


def parse_presigned(pairs):
    """Extract SigV4 fields from presigned-URL query pairs, or None."""
    q = dict(pairs)
    if q.get("X-Amz-Algorithm") != ALGORITHM:
        return None
    try:
        info = _credential(q["X-Amz-Credential"], q["X-Amz-SignedHeaders"],
                           q["X-Amz-Signature"])
        if info is None:
            return None
        info["amz_date"] = q["X-Amz-Date"]
        info["expires"] = int(q.get("X-Amz-Expires", "604800"))
        info["token"] = q.get("X-Amz-Security-Token")
    except (KeyError, ValueError):
        return None
    return info


def sign_headers(method, url_path, query_pairs, headers, payload, akid, secret, region,
                 service, amz_date, token=None):
    """Client-side signing helper (used by the simulator's own tests): returns the headers to
    add (Authorization, X-Amz-Date, x-amz-content-sha256 [S3], X-Amz-Security-Token)."""
    payload_hash = hashlib.sha256(payload).hexdigest()
    add = [("X-Amz-Date", amz_date)]
    if service == "s3":
        add.append(("x-amz-content-sha256", payload_hash))
    if token:
        add.append(("X-Amz-Security-Token", token))
    allh = list(headers) + add
    signed = sorted({n.lower() for n, _ in allh})
    creq = canonical_request(method, url_path, query_pairs, allh, signed, payload_hash, service)
    scope = scope_string(amz_date[:8], region, service)
    sts = string_to_sign(amz_date, scope, creq)
    sig = signature(secret, amz_date[:8], region, service, sts)
    add.append(("Authorization", "%s Credential=%s/%s, SignedHeaders=%s, Signature=%s" % (
        ALGORITHM, akid, scope, ";".join(signed), sig)))
    return add
