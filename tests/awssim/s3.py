"""S3 (REST-XML): buckets, objects (stored on disk), ranges, listing, copy, multipart uploads,
presigned URLs (verified in awssim.authenticate).  Path-style and virtual-host-style."""

import base64
import hashlib
import hmac
import os
import re
import threading
import time
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

import sigv4
from util import AwsError, iso8601, http_date, xml_elem_flat

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MIN_PART = 5 << 20
MAX_PARTS = 10000


class S3State:
    def __init__(self, sim):
        self.sim = sim
        self.buckets = {}

    def lookup(self, bucket, key):
        with self.sim.lock:
            b = self.buckets.get(bucket)
            return b["objects"].get(key) if b else None

    def dump(self):
        with self.sim.lock:
            out = {}
            for name, b in self.buckets.items():
                out[name] = {
                    "region": b["region"], "owner": b["owner"], "created": b["created"],
                    "objects": {k: {"size": o["size"], "md5": o["md5"], "etag": o["etag"],
                                    "content_type": o["content_type"],
                                    "last_modified": o["mtime"], "parts": o.get("parts"),
                                    "metadata": o["meta"]}
                                for k, o in b["objects"].items()},
                    "multipart_uploads": {u: {"key": up["key"], "initiated": up["initiated"],
                                              "parts": {str(n): {"size": pt["size"],
                                                                 "etag": pt["etag"]}
                                                        for n, pt in up["parts"].items()}}
                                          for u, up in b["uploads"].items()},
                }
            return out


def throttle_error():
    return AwsError(503, "SlowDown", "Please reduce your request rate.")


def error_response(req, err):
    from awssim import Response
    extra = "".join("<%s>%s</%s>" % (k, escape(str(v)), k) for k, v in err.extra.items()
                    if k not in ("CanonicalRequest",))
    if err.code == "SignatureDoesNotMatch" and "CanonicalRequest" in err.extra:
        extra += "<CanonicalRequest>%s</CanonicalRequest>" % escape(err.extra["CanonicalRequest"])
    body = ('<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>%s</Code><Message>%s</Message>'
            '%s<RequestId>%s</RequestId><HostId>%s</HostId></Error>'
            % (escape(err.code), escape(err.message), extra,
               req.request_id.replace("-", "")[:16].upper(),
               base64.b64encode(req.request_id.encode()).decode()))
    headers = []
    if "Region" in err.extra:
        headers.append(("x-amz-bucket-region", err.extra["Region"]))
    if req.method == "HEAD":
        return Response(err.status, b"", headers, length=0)
    return Response(err.status, body.encode(), headers, content_type="application/xml")


def xml_ok(body_xml, status=200, headers=None):
    from awssim import Response
    return Response(status, ('<?xml version="1.0" encoding="UTF-8"?>\n' + body_xml).encode(),
                    headers, content_type="application/xml")


def split_target(req):
    """(bucket, key) from a virtual-host-style Host or a path-style path."""
    host = req.host.split(":")[0].lower()
    m = re.match(r"^(.+?)\.(s3[.-].*|localhost)$", host)
    path = req.path
    if m and not re.match(r"^\d+\.\d+\.\d+\.\d+$", host):
        return m.group(1), path[1:] if path.startswith("/") else path
    parts = path[1:].split("/", 1) if path.startswith("/") else [path]
    bucket = parts[0] or None
    key = parts[1] if len(parts) > 1 else None
    if key == "":
        key = None
    return bucket, key


def operation_name(req):
    bucket, key = split_target(req)
    q, m = req.query, req.method
    if bucket is None:
        return "ListBuckets"
    if key is None:
        if m == "PUT":
            return "CreateBucket"
        if m == "HEAD":
            return "HeadBucket"
        if m == "DELETE":
            return "DeleteBucket"
        if m == "POST" and "delete" in q:
            return "DeleteObjects"
        if "location" in q:
            return "GetBucketLocation"
        if "uploads" in q:
            return "ListMultipartUploads"
        return "ListObjectsV2" if q.get("list-type") == "2" else "ListObjects"
    if m == "PUT":
        if "uploadId" in q:
            return "UploadPartCopy" if req.header("x-amz-copy-source") else "UploadPart"
        return "CopyObject" if req.header("x-amz-copy-source") else "PutObject"
    if m == "POST":
        if "uploads" in q:
            return "CreateMultipartUpload"
        if "uploadId" in q:
            return "CompleteMultipartUpload"
    if m == "DELETE":
        return "AbortMultipartUpload" if "uploadId" in q else "DeleteObject"
    if m == "GET" and "uploadId" in q:
        return "ListParts"
    return "HeadObject" if m == "HEAD" else "GetObject"


BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def get_bucket(sim, req, name, check_region=True):
    b = sim.s3.buckets.get(name)
    if b is None:
        raise AwsError(404, "NoSuchBucket", "The specified bucket does not exist",
                       BucketName=name)
    if b["owner"] != req.cred.account:
        raise AwsError(403, "AccessDenied", "Access Denied")
    if check_region and b["region"] != req.region:
        if req.method == "HEAD":
            raise AwsError(301, "PermanentRedirect", "", Region=b["region"])
        raise AwsError(400, "AuthorizationHeaderMalformed", "The authorization header is "
                       "malformed; the region '%s' is wrong; expecting '%s'"
                       % (req.region, b["region"]), Region=b["region"])
    return b


def decode_aws_chunked(sim, req):
    """Decode an aws-chunked body (Content-Encoding: aws-chunked / STREAMING-* payload
    hashes), verifying chunk signatures for STREAMING-AWS4-HMAC-SHA256-PAYLOAD and the
    trailing checksum when it is one the standard library can compute."""
    from awssim import Body
    info = req.sig_info
    signed = info["payload_hash"].startswith("STREAMING-AWS4-HMAC-SHA256-PAYLOAD")
    src = open(req.body.path, "rb") if req.body.path else None
    data = req.body.data
    pos = 0

    def readline():
        nonlocal pos
        if src:
            return src.readline(4096)
        i = data.find(b"\n", pos)
        i = len(data) if i < 0 else i + 1
        line = data[pos:i]
        pos = i
        return line

    def read(n):
        nonlocal pos
        if src:
            return src.read(n)
        chunk = data[pos:pos + n]
        pos += len(chunk)
        return chunk

    out_path = sim.tmp_path()
    sha, md5 = hashlib.sha256(), hashlib.md5()
    size = 0
    prev = info["signature"]
    key = sigv4.signing_key(info["secret"], info["date"], info["region"], info["service"])
    trailers = {}
    try:
        with open(out_path, "wb") as out:
            while True:
                line = readline().rstrip(b"\r\n").decode("latin-1")
                if line == "" and not signed and size == 0 and not trailers:
                    raise AwsError(400, "IncompleteBody", "The request body terminated "
                                   "unexpectedly")
                head, _, ext = line.partition(";")
                try:
                    n = int(head, 16)
                except ValueError:
                    raise AwsError(400, "IncompleteBody", "The request body terminated "
                                   "unexpectedly (bad aws-chunked chunk header)")
                chunk = read(n)
                if len(chunk) != n:
                    raise AwsError(400, "IncompleteBody", "The request body terminated "
                                   "unexpectedly")
                if signed:
                    sig = ext.partition("chunk-signature=")[2]
                    sts = "\n".join(["AWS4-HMAC-SHA256-PAYLOAD", info["amz_date"],
                                     info["scope"], prev, sigv4.EMPTY_SHA256,
                                     hashlib.sha256(chunk).hexdigest()])
                    want = hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()
                    if not hmac.compare_digest(want, sig):
                        raise AwsError(403, "SignatureDoesNotMatch", "The request signature "
                                       "we calculated does not match the signature you "
                                       "provided (chunk signature).")
                    prev = sig
                out.write(chunk)
                sha.update(chunk)
                md5.update(chunk)
                size += n
                if n == 0:
                    while True:
                        t = readline()
                        if t in (b"", b"\r\n", b"\n"):
                            break
                        k, _, v = t.decode("latin-1").strip().partition(":")
                        trailers[k.strip().lower()] = v.strip()
                    break
                readline()  # CRLF after the chunk data
    finally:
        if src:
            src.close()
    declared = req.header("x-amz-decoded-content-length")
    if declared is not None and int(declared) != size:
        os.unlink(out_path)
        raise AwsError(400, "IncompleteBody", "You did not provide the number of bytes "
                       "specified by the Content-Length HTTP header")
    check_trailers(trailers, out_path)
    req.body.discard()
    req.body = Body(path=out_path, size=size, sha256=sha.hexdigest(), md5=md5.hexdigest())


def check_trailers(trailers, path):
    import zlib
    for name, value in trailers.items():
        if not name.startswith("x-amz-checksum-"):
            continue
        algo = name[len("x-amz-checksum-"):]
        if algo == "crc32":
            crc = 0
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    crc = zlib.crc32(chunk, crc)
            got = base64.b64encode(crc.to_bytes(4, "big")).decode()
        elif algo in ("sha1", "sha256"):
            h = hashlib.new(algo)
            with open(path, "rb") as f:
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            got = base64.b64encode(h.digest()).decode()
        else:
            continue  # crc32c / crc64nvme: not verified by the simulator
        if got != value:
            raise AwsError(400, "BadDigest", "The %s you specified did not match the "
                           "calculated checksum." % algo.upper())


def store_body(sim, req):
    """Move the request body to a permanent file; returns (path, size, md5hex)."""
    b = req.body
    if b.md5 is not None and req.header("Content-MD5"):
        try:
            want = base64.b64decode(req.header("Content-MD5"), validate=True).hex()
        except Exception:
            raise AwsError(400, "InvalidDigest", "The Content-MD5 you specified was invalid.")
        if want != b.md5:
            raise AwsError(400, "BadDigest", "The Content-MD5 you specified did not match what "
                           "we received.")
    path = os.path.join(sim.state_dir, "s3", uuid.uuid4().hex)
    if b.path:
        os.rename(b.path, path)
        b.path = None
    else:
        with open(path, "wb") as f:
            f.write(b.data or b"")
    return path, b.size, b.md5


def user_meta(req):
    return {k.lower()[len("x-amz-meta-"):]: v for k, v in req.headers.items()
            if k.lower().startswith("x-amz-meta-")}


def object_headers(obj):
    h = [("ETag", obj["etag"]), ("Last-Modified", http_date(obj["mtime"])),
         ("Accept-Ranges", "bytes"), ("Content-Type", obj["content_type"])]
    h += [("x-amz-meta-" + k, v) for k, v in obj["meta"].items()]
    return h


def put_object_record(sim, b, key, path, size, md5hex, etag, ctype, meta, parts=None):
    old = b["objects"].get(key)
    b["objects"][key] = {"key": key, "path": path, "size": size, "md5": md5hex, "etag": etag,
                         "content_type": ctype or "binary/octet-stream", "mtime": time.time(),
                         "meta": meta, "parts": parts}
    if old is not None:
        try:
            os.unlink(old["path"])
        except OSError:
            pass


def parse_range(value, size):
    m = re.match(r"^bytes=(\d*)-(\d*)$", value.strip())
    if not m or "," in value or (m.group(1) == "" and m.group(2) == ""):
        return None  # S3 ignores ranges it does not understand
    a, b = m.group(1), m.group(2)
    if a == "":
        n = int(b)
        if n == 0:
            raise AwsError(416, "InvalidRange", "The requested range is not satisfiable",
                           RangeRequested=value, ActualObjectSize=size)
        return max(0, size - n), size - 1
    start = int(a)
    end = int(b) if b else size - 1
    if start >= size or (b and end < start):
        raise AwsError(416, "InvalidRange", "The requested range is not satisfiable",
                       RangeRequested=value, ActualObjectSize=size)
    return start, min(end, size - 1)


def url_enc(s, on):
    return urllib.parse.quote_plus(s, safe="/~") if on else s


def list_keys(b, prefix, delimiter, after, max_keys):
    contents, prefixes = [], []
    truncated, last = False, None
    count = 0
    for k in sorted(b["objects"]):
        if after and k <= after:
            continue
        if after and delimiter and after.endswith(delimiter) and k.startswith(after):
            continue
        if not k.startswith(prefix):
            continue
        if delimiter:
            idx = k.find(delimiter, len(prefix))
            if idx >= 0:
                cp = k[:idx + len(delimiter)]
                if prefixes and prefixes[-1] == cp:
                    continue
                if count >= max_keys:
                    truncated = True
                    break
                prefixes.append(cp)
                last = cp
                count += 1
                continue
        if count >= max_keys:
            truncated = True
            break
        contents.append(b["objects"][k])
        last = k
        count += 1
    return contents, prefixes, truncated, last


def op_list_objects(sim, req, b, v2):
    q = req.query
    prefix = q.get("prefix", "")
    delimiter = q.get("delimiter", "")
    enc = q.get("encoding-type")
    if enc not in (None, "url"):
        raise AwsError(400, "InvalidArgument", "Invalid Encoding Method specified in Request")
    enc = enc == "url"
    try:
        max_keys = int(q.get("max-keys", "1000"))
    except ValueError:
        raise AwsError(400, "InvalidArgument", "Provided max-keys not an integer or within "
                       "integer range")
    max_keys = min(max(max_keys, 0), 1000)
    if v2:
        token = q.get("continuation-token")
        if token is not None:
            try:
                after = base64.urlsafe_b64decode(token.encode()).decode()
            except Exception:
                raise AwsError(400, "InvalidArgument", "The continuation token provided is "
                               "incorrect")
        else:
            after = q.get("start-after", "")
    else:
        after = q.get("marker", "")
    contents, prefixes, truncated, last = list_keys(b, prefix, delimiter, after, max_keys)
    fields = [("Name", b["name"]), ("Prefix", url_enc(prefix, enc))]
    if v2:
        if "continuation-token" in q:
            fields.append(("ContinuationToken", q["continuation-token"]))
        if "start-after" in q:
            fields.append(("StartAfter", url_enc(q["start-after"], enc)))
        fields.append(("KeyCount", len(contents) + len(prefixes)))
    else:
        fields.append(("Marker", url_enc(after, enc)))
    fields.append(("MaxKeys", max_keys))
    if delimiter:
        fields.append(("Delimiter", url_enc(delimiter, enc)))
    if enc:
        fields.append(("EncodingType", "url"))
    fields.append(("IsTruncated", truncated))
    if truncated:
        if v2:
            fields.append(("NextContinuationToken",
                           base64.urlsafe_b64encode(last.encode()).decode()))
        elif delimiter:
            fields.append(("NextMarker", url_enc(last, enc)))
    owner = {"ID": req.cred.account, "DisplayName": "kiln"}
    for o in contents:
        c = {"Key": url_enc(o["key"], enc), "LastModified": iso8601(o["mtime"]),
             "ETag": o["etag"], "Size": o["size"], "StorageClass": "STANDARD"}
        if not v2 or q.get("fetch-owner") == "true":
            c["Owner"] = owner
        fields.append(("Contents", c))
    for p in prefixes:
        fields.append(("CommonPrefixes", {"Prefix": url_enc(p, enc)}))
    inner = "".join(xml_elem_flat(k, v) for k, v in fields)
    return xml_ok('<ListBucketResult xmlns="%s">%s</ListBucketResult>' % (NS, inner))


def parse_xml(req):
    data = req.body.read_all(16 << 20) if req.body else b""
    if not data.strip():
        return None
    try:
        root = ET.fromstring(data)
    except ET.ParseError:
        raise AwsError(400, "MalformedXML", "The XML you provided was not well-formed or did "
                       "not validate against our published schema")
    for el in root.iter():
        if "}" in el.tag:
            el.tag = el.tag.split("}", 1)[1]
    return root


def op_create_bucket(sim, req, name):
    if not BUCKET_RE.match(name) or ".." in name or re.match(r"^\d+\.\d+\.\d+\.\d+$", name):
        raise AwsError(400, "InvalidBucketName", "The specified bucket is not valid.",
                       BucketName=name)
    root = parse_xml(req)
    constraint = None
    if root is not None:
        el = root.find("LocationConstraint")
        constraint = el.text if el is not None else None
    if constraint is None and req.region != "us-east-1":
        raise AwsError(400, "IllegalLocationConstraintException", "The unspecified location "
                       "constraint is incompatible for the region specific endpoint this "
                       "request was sent to.")
    if constraint is not None and constraint != req.region:
        raise AwsError(400, "IllegalLocationConstraintException", "The %s location constraint "
                       "is incompatible for the region specific endpoint this request was "
                       "sent to." % constraint)
    if constraint == "us-east-1":
        raise AwsError(400, "InvalidLocationConstraint", "The specified location-constraint "
                       "is not valid", LocationConstraint=constraint)
    b = sim.s3.buckets.get(name)
    if b is not None:
        if b["owner"] != req.cred.account:
            raise AwsError(409, "BucketAlreadyExists", "The requested bucket name is not "
                           "available. The bucket namespace is shared by all users of the "
                           "system. Please select a different name and try again.",
                           BucketName=name)
        if req.region != "us-east-1":
            raise AwsError(409, "BucketAlreadyOwnedByYou", "Your previous request to create "
                           "the named bucket succeeded and you already own it.",
                           BucketName=name)
    else:
        sim.s3.buckets[name] = {"name": name, "region": req.region, "owner": req.cred.account,
                                "created": time.time(), "objects": {}, "uploads": {}}
    from awssim import Response
    return Response(200, b"", [("Location", "/" + name)])


def op_list_buckets(sim, req):
    buckets = [b for b in sim.s3.buckets.values() if b["owner"] == req.cred.account]
    buckets.sort(key=lambda b: b["name"])
    inner = xml_elem_flat("Owner", {"ID": req.cred.account, "DisplayName": "kiln"})
    inner += "<Buckets>%s</Buckets>" % "".join(
        xml_elem_flat("Bucket", {"Name": b["name"], "CreationDate": iso8601(b["created"])})
        for b in buckets)
    return xml_ok('<ListAllMyBucketsResult xmlns="%s">%s</ListAllMyBucketsResult>'
                  % (NS, inner))


def op_delete_objects(sim, req, b):
    root = parse_xml(req)
    if root is None:
        raise AwsError(400, "MalformedXML", "The XML you provided was not well-formed")
    quiet = (root.findtext("Quiet") or "").lower() == "true"
    out = []
    for obj in root.findall("Object"):
        key = obj.findtext("Key")
        old = b["objects"].pop(key, None)
        if old:
            try:
                os.unlink(old["path"])
            except OSError:
                pass
        if not quiet:
            out.append(xml_elem_flat("Deleted", {"Key": key}))
    return xml_ok('<DeleteResult xmlns="%s">%s</DeleteResult>' % (NS, "".join(out)))


def get_object(b, key):
    obj = b["objects"].get(key)
    if obj is None:
        raise AwsError(404, "NoSuchKey", "The specified key does not exist.", Key=key)
    return obj


def op_get_object(sim, req, b, key, head):
    from awssim import Response
    obj = get_object(b, key)
    for cond, fn in (("If-Match", lambda v: v not in ("*", obj["etag"])),
                     ("If-None-Match", lambda v: v in ("*", obj["etag"]))):
        v = req.header(cond)
        if v is not None and fn(v.strip()):
            if cond == "If-Match":
                raise AwsError(412, "PreconditionFailed", "At least one of the pre-conditions "
                               "you specified did not hold", Condition=cond)
            return Response(304, b"", [("ETag", obj["etag"])], length=0)
    headers = object_headers(obj)
    rng = req.header("Range")
    start, end = 0, obj["size"] - 1
    status = 200
    if rng and obj["size"] > 0:
        r = parse_range(rng, obj["size"])
        if r is not None:
            start, end = r
            status = 206
            headers.append(("Content-Range", "bytes %d-%d/%d" % (start, end, obj["size"])))
    length = max(0, end - start + 1)
    for q, h in (("response-content-type", "Content-Type"),
                 ("response-content-disposition", "Content-Disposition"),
                 ("response-cache-control", "Cache-Control")):
        if q in req.query:
            headers = [(n, v) for n, v in headers if n != h] + [(h, req.query[q])]
    headers.append(("Content-Length", str(length)))
    if head:
        return Response(status, b"", headers, length=length)
    return Response(status, b"", headers, file=(open(obj["path"], "rb"), start), length=length)


def op_put_object(sim, req, b, key):
    from awssim import Response
    src = req.header("x-amz-copy-source")
    if src:
        return op_copy_object(sim, req, b, key, src)
    path, size, md5hex = store_body(sim, req)
    etag = '"%s"' % md5hex
    put_object_record(sim, b, key, path, size, md5hex, etag, req.header("Content-Type"),
                      user_meta(req))
    return Response(200, b"", [("ETag", etag)])


def op_copy_object(sim, req, b, key, src):
    src = urllib.parse.unquote(src.split("?", 1)[0]).lstrip("/")
    sb_name, _, skey = src.partition("/")
    sb = get_bucket(sim, req, sb_name, check_region=False)
    sobj = get_object(sb, skey)
    directive = req.header("x-amz-metadata-directive", "COPY")
    if sb is b and skey == key and directive != "REPLACE":
        raise AwsError(400, "InvalidRequest", "This copy request is illegal because it is "
                       "trying to copy an object to itself without changing the object's "
                       "metadata, storage class, website redirect location or encryption "
                       "attributes.")
    path = os.path.join(sim.state_dir, "s3", uuid.uuid4().hex)
    os.link(sobj["path"], path)
    if directive == "REPLACE":
        ctype, meta = req.header("Content-Type"), user_meta(req)
    else:
        ctype, meta = sobj["content_type"], dict(sobj["meta"])
    put_object_record(sim, b, key, path, sobj["size"], sobj["md5"], sobj["etag"], ctype, meta,
                      sobj.get("parts"))
    obj = b["objects"][key]
    return xml_ok('<CopyObjectResult xmlns="%s"><LastModified>%s</LastModified><ETag>%s</ETag>'
                  '</CopyObjectResult>' % (NS, iso8601(obj["mtime"]), escape(obj["etag"])))


def get_upload(b, req):
    up = b["uploads"].get(req.query.get("uploadId"))
    if up is None:
        raise AwsError(404, "NoSuchUpload", "The specified upload does not exist. The upload ID"
                       " may be invalid, or the upload may have been aborted or completed.",
                       UploadId=req.query.get("uploadId"))
    return up


def new_upload_id():
    """A fresh multipart upload ID. S3's IDs start with a letter or digit; one that started
    with '-' would read as an option to command-line clients (`--upload-id -x...`)."""
    while True:
        uid = base64.urlsafe_b64encode(os.urandom(48)).decode().rstrip("=")
        if uid[0].isalnum():
            return uid


def op_create_multipart(sim, req, b, key):
    uid = new_upload_id()
    b["uploads"][uid] = {"id": uid, "key": key, "initiated": time.time(), "parts": {},
                         "content_type": req.header("Content-Type"), "meta": user_meta(req)}
    return xml_ok('<InitiateMultipartUploadResult xmlns="%s"><Bucket>%s</Bucket><Key>%s</Key>'
                  '<UploadId>%s</UploadId></InitiateMultipartUploadResult>'
                  % (NS, escape(b["name"]), escape(key), uid))


def op_upload_part(sim, req, b, key):
    from awssim import Response
    up = get_upload(b, req)
    try:
        n = int(req.query.get("partNumber", ""))
    except ValueError:
        n = 0
    if not 1 <= n <= MAX_PARTS:
        raise AwsError(400, "InvalidArgument", "Part number must be an integer between 1 and "
                       "10000, inclusive", ArgumentName="partNumber",
                       ArgumentValue=req.query.get("partNumber"))
    if up["key"] != key:
        raise AwsError(404, "NoSuchUpload", "The specified upload does not exist.")
    path, size, md5hex = store_body(sim, req)
    old = up["parts"].get(n)
    up["parts"][n] = {"path": path, "size": size, "md5": md5hex, "etag": '"%s"' % md5hex,
                      "mtime": time.time()}
    if old:
        os.unlink(old["path"])
    return Response(200, b"", [("ETag", '"%s"' % md5hex)])


def op_complete_multipart(sim, req, bucket, key):
    with sim.lock:
        b = get_bucket(sim, req, bucket)
        up = get_upload(b, req)
        if up.get("completing"):
            raise AwsError(409, "OperationAborted", "A conflicting conditional operation is "
                           "currently in progress against this resource. Please try again.")
        parts = complete_parts(req, up)
        up["completing"] = True
    try:
        path, size, md5hex, etag = assemble(sim, parts)
    except BaseException:
        with sim.lock:
            up["completing"] = False
        raise
    with sim.lock:
        put_object_record(sim, b, key, path, size, md5hex, etag, up["content_type"],
                          up["meta"], parts=len(parts))
        for pt in up["parts"].values():
            try:
                os.unlink(pt["path"])
            except OSError:
                pass
        b["uploads"].pop(up["id"], None)
    loc = "http://%s/%s/%s" % (req.host, b["name"], urllib.parse.quote(key))
    return xml_ok('<CompleteMultipartUploadResult xmlns="%s"><Location>%s</Location><Bucket>%s'
                  '</Bucket><Key>%s</Key><ETag>%s</ETag></CompleteMultipartUploadResult>'
                  % (NS, escape(loc), escape(b["name"]), escape(key), escape(etag)))


def complete_parts(req, up):
    root = parse_xml(req)
    if root is None:
        raise AwsError(400, "MalformedXML", "The XML you provided was not well-formed or did "
                       "not validate against our published schema")
    wanted = []
    for p in root.findall("Part"):
        try:
            wanted.append((int(p.findtext("PartNumber")), (p.findtext("ETag") or "").strip()))
        except (TypeError, ValueError):
            raise AwsError(400, "MalformedXML", "The XML you provided was not well-formed")
    if not wanted:
        raise AwsError(400, "MalformedXML", "The XML you provided was not well-formed or did "
                       "not validate against our published schema")
    nums = [n for n, _ in wanted]
    if nums != sorted(nums) or len(set(nums)) != len(nums):
        raise AwsError(400, "InvalidPartOrder", "The list of parts was not in ascending order. "
                       "The parts list must be specified in order by part number.")
    parts = []
    for i, (n, etag) in enumerate(wanted):
        pt = up["parts"].get(n)
        if pt is None or etag.strip('"') != pt["md5"]:
            raise AwsError(400, "InvalidPart", "One or more of the specified parts could not "
                           "be found.  The part may not have been uploaded, or the specified "
                           "entity tag may not have matched the part's entity tag.",
                           UploadId=up["id"], PartNumber=n, ETag=etag)
        if i < len(wanted) - 1 and pt["size"] < MIN_PART:
            raise AwsError(400, "EntityTooSmall", "Your proposed upload is smaller than the "
                           "minimum allowed size", ProposedSize=pt["size"], MinSizeAllowed=MIN_PART,
                           PartNumber=n, ETag=pt["etag"])
        parts.append(pt)
    return parts


def assemble(sim, parts):
    """Concatenate the part files into the object file (outside the state lock)."""
    path = os.path.join(sim.state_dir, "s3", uuid.uuid4().hex)
    whole = hashlib.md5()
    agg = hashlib.md5()
    size = 0
    with open(path, "wb") as out:
        for pt in parts:
            agg.update(bytes.fromhex(pt["md5"]))
            with open(pt["path"], "rb") as f:
                for chunk in iter(lambda: f.read(4 << 20), b""):
                    whole.update(chunk)
                    out.write(chunk)
            size += pt["size"]
    etag = '"%s-%d"' % (agg.hexdigest(), len(parts))
    return path, size, whole.hexdigest(), etag


def op_abort_multipart(sim, req, b, key):
    from awssim import Response
    up = get_upload(b, req)
    for pt in up["parts"].values():
        try:
            os.unlink(pt["path"])
        except OSError:
            pass
    del b["uploads"][up["id"]]
    return Response(204, b"")


def op_list_parts(sim, req, b, key):
    up = get_upload(b, req)
    try:
        marker = int(req.query.get("part-number-marker", "0"))
        max_parts = min(int(req.query.get("max-parts", "1000")), 1000)
    except ValueError:
        raise AwsError(400, "InvalidArgument", "bad part-number-marker or max-parts")
    nums = [n for n in sorted(up["parts"]) if n > marker]
    page = nums[:max_parts]
    truncated = len(nums) > max_parts
    fields = [("Bucket", b["name"]), ("Key", key), ("UploadId", up["id"]),
              ("PartNumberMarker", marker),
              ("NextPartNumberMarker", page[-1] if page else marker), ("MaxParts", max_parts),
              ("IsTruncated", truncated), ("StorageClass", "STANDARD")]
    for n in page:
        pt = up["parts"][n]
        fields.append(("Part", {"PartNumber": n, "LastModified": iso8601(pt["mtime"]),
                                "ETag": pt["etag"], "Size": pt["size"]}))
    inner = "".join(xml_elem_flat(k, v) for k, v in fields)
    return xml_ok('<ListPartsResult xmlns="%s">%s</ListPartsResult>' % (NS, inner))


def op_list_uploads(sim, req, b):
    fields = [("Bucket", b["name"]), ("KeyMarker", ""), ("UploadIdMarker", ""),
              ("MaxUploads", 1000), ("IsTruncated", False)]
    for up in sorted(b["uploads"].values(), key=lambda u: (u["key"], u["initiated"])):
        if up["key"].startswith(req.query.get("prefix", "")):
            fields.append(("Upload", {"Key": up["key"], "UploadId": up["id"],
                                      "StorageClass": "STANDARD",
                                      "Initiated": iso8601(up["initiated"])}))
    inner = "".join(xml_elem_flat(k, v) for k, v in fields)
    return xml_ok('<ListMultipartUploadsResult xmlns="%s">%s</ListMultipartUploadsResult>'
                  % (NS, inner))


def handle(sim, req):
    from awssim import Response
    req.op = operation_name(req)
    if req.sig_info["payload_hash"] in sigv4.STREAMING_PAYLOADS or \
            "aws-chunked" in (req.header("Content-Encoding") or ""):
        decode_aws_chunked(sim, req)
    bucket, key = split_target(req)
    op = req.op
    if op == "CompleteMultipartUpload":
        return op_complete_multipart(sim, req, bucket, key)
    with sim.lock:
        if op == "ListBuckets":
            return op_list_buckets(sim, req)
        if op == "CreateBucket":
            return op_create_bucket(sim, req, bucket)
        b = get_bucket(sim, req, bucket)
        if op == "HeadBucket":
            return Response(200, b"", [("x-amz-bucket-region", b["region"])])
        if op == "GetBucketLocation":
            loc = b["region"] if b["region"] != "us-east-1" else ""
            return xml_ok('<LocationConstraint xmlns="%s">%s</LocationConstraint>' % (NS, loc))
        if op == "DeleteBucket":
            if b["objects"]:
                raise AwsError(409, "BucketNotEmpty", "The bucket you tried to delete is not "
                               "empty", BucketName=bucket)
            del sim.s3.buckets[bucket]
            return Response(204, b"")
        if op in ("ListObjects", "ListObjectsV2"):
            return op_list_objects(sim, req, b, op == "ListObjectsV2")
        if op == "ListMultipartUploads":
            return op_list_uploads(sim, req, b)
        if op == "DeleteObjects":
            return op_delete_objects(sim, req, b)
        if op in ("GetObject", "HeadObject"):
            return op_get_object(sim, req, b, key, op == "HeadObject")
        if op in ("PutObject", "CopyObject"):
            return op_put_object(sim, req, b, key)
        if op == "DeleteObject":
            old = b["objects"].pop(key, None)
            if old:
                os.unlink(old["path"])
            return Response(204, b"")
        if op == "CreateMultipartUpload":
            return op_create_multipart(sim, req, b, key)
        if op == "UploadPart":
            return op_upload_part(sim, req, b, key)
        if op == "AbortMultipartUpload":
            return op_abort_multipart(sim, req, b, key)
        if op == "ListParts":
            return op_list_parts(sim, req, b, key)
    raise AwsError(501, "NotImplemented", "A header you provided implies functionality that "
                   "is not implemented")
