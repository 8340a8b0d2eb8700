"""EBS direct APIs (REST-JSON, service 'ebs'): write snapshots block by block with SHA256
checksums (per block and the LINEAR aggregate), read them back with block tokens.  Blocks
live on disk; the snapshots are the EC2 snapshots of the region (DescribeSnapshots sees
them, RegisterImage can use them)."""

import base64
import hashlib
import hmac
import json
import os
import re
import time
import uuid

from util import AwsError, encode_token, decode_token

BLOCK = 512 * 1024
BLOCKS_PER_GIB = 2048
TOKEN_KEY = b"kiln-awssim-block-token"


def operation_name(req):
    m, p = req.method, req.path
    if m == "POST" and p == "/snapshots":
        return "StartSnapshot"
    if m == "POST" and p.startswith("/snapshots/completion/"):
        return "CompleteSnapshot"
    if re.match(r"^/snapshots/[^/]+/blocks/\d+$", p):
        return "PutSnapshotBlock" if m == "PUT" else "GetSnapshotBlock"
    if re.match(r"^/snapshots/[^/]+/blocks$", p):
        return "ListSnapshotBlocks"
    if re.match(r"^/snapshots/[^/]+/changedblocks$", p):
        return "ListChangedBlocks"
    return "Unknown"


def throttle_error():
    return AwsError(400, "ThrottlingException", "Rate exceeded")


def error_response(req, err):
    from awssim import Response
    body = {"Message": err.message}
    if "Reason" in err.extra:
        body["Reason"] = err.extra["Reason"]
    return Response(err.status, json.dumps(body).encode(), [("x-amzn-ErrorType", err.code)],
                    content_type="application/json")


def jok(obj, status=200):
    from awssim import Response
    return Response(status, json.dumps(obj).encode(), content_type="application/json")


def invalid(msg, reason="INVALID_PARAMETER_VALUE"):
    return AwsError(400, "ValidationException", msg, Reason=reason)


def not_found(sid):
    return AwsError(404, "ResourceNotFoundException", "The snapshot '%s' does not exist." % sid,
                    Reason="SNAPSHOT_NOT_FOUND")


def get_snap(r, req, sid):
    snap = r.snapshots.get(sid)
    if snap is None or snap["owner"] != req.cred.account:
        raise not_found(sid)
    return snap


def block_token(snap_id, idx, sha):
    raw = "%s:%d:%s" % (snap_id, idx, sha)
    mac = hmac.new(TOKEN_KEY, raw.encode(), hashlib.sha256).hexdigest()[:16]
    return encode_token({"s": snap_id, "i": idx, "m": mac, "h": sha})


def check_token(tok, snap_id, idx):
    d = decode_token(tok or "")
    if not isinstance(d, dict) or d.get("s") != snap_id or d.get("i") != idx:
        raise invalid("The block token is not valid.", "INVALID_BLOCK_TOKEN")
    raw = "%s:%d:%s" % (snap_id, idx, d.get("h"))
    mac = hmac.new(TOKEN_KEY, raw.encode(), hashlib.sha256).hexdigest()[:16]
    if not hmac.compare_digest(mac, str(d.get("m"))):
        raise invalid("The block token is not valid.", "INVALID_BLOCK_TOKEN")


def snapshot_blocks(sim, snap):
    """index -> {path, offset, sha256 (base64)} for every block with data."""
    if snap.get("source") and "source_blocks" not in snap:
        # An imported RAW snapshot: blocks are the non-zero 512 KiB pieces of the image.
        blocks = {}
        zero = bytes(BLOCK)
        with open(snap["source"], "rb") as f:
            idx = 0
            while True:
                data = f.read(BLOCK)
                if not data:
                    break
                if data != zero[:len(data)]:
                    data = data + bytes(BLOCK - len(data))
                    blocks[idx] = {"path": snap["source"], "offset": idx * BLOCK,
                                   "len": min(BLOCK, snap["source_size"] - idx * BLOCK),
                                   "sha256": base64.b64encode(
                                       hashlib.sha256(data).digest()).decode()}
                idx += 1
        snap["source_blocks"] = blocks
    out = dict(snap.get("source_blocks") or {})
    out.update(snap["blocks"])
    return out


def read_block(b):
    with open(b["path"], "rb") as f:
        f.seek(b.get("offset", 0))
        data = f.read(b.get("len", BLOCK))
    return data + bytes(BLOCK - len(data))


def paging(req):
    q = req.query
    try:
        max_results = int(q.get("maxResults", "10000"))
        start = int(q.get("startingBlockIndex", "0"))
    except ValueError:
        raise invalid("maxResults and startingBlockIndex must be integers")
    if not 100 <= max_results <= 10000:
        raise invalid("1 validation error detected: Value '%d' at 'maxResults' failed to "
                      "satisfy constraint: Member must have value between 100 and 10000"
                      % max_results)
    tok = q.get("pageToken")
    if tok:
        d = decode_token(tok)
        if not isinstance(d, dict) or not isinstance(d.get("n"), int):
            raise invalid("The pagination token is not valid.", "INVALID_PAGE_TOKEN")
        start = max(start, d["n"])
    return max_results, start


def op_start(sim, req, r):
    try:
        body = json.loads(req.body.read_all(1 << 20) or b"{}")
    except ValueError:
        raise AwsError(400, "SerializationException", "Malformed JSON")
    size = body.get("VolumeSize")
    if not isinstance(size, int) or size < 1 or size > 65536:
        raise invalid("The volume size is not valid.", "INVALID_VOLUME_SIZE")
    token = body.get("ClientToken")
    if token:
        for s in r.snapshots.values():
            if s.get("client_token") == token and s["owner"] == req.cred.account:
                return jok(start_result(s), 201)
    parent = None
    if body.get("ParentSnapshotId"):
        parent = get_snap(r, req, body["ParentSnapshotId"])
        if parent["status"] != "completed":
            raise invalid("The parent snapshot is not completed.", "INVALID_SNAPSHOT_ID")
    tags = {}
    for t in body.get("Tags") or []:
        if not t.get("Key"):
            raise invalid("Tag keys must not be empty.", "INVALID_TAG")
        tags[t["Key"]] = t.get("Value", "")
    snap = r.add_snapshot(req.cred.account, size, body.get("Description", ""), "pending",
                          tags=tags)
    snap["ebs"] = True
    snap["client_token"] = token
    snap["parent"] = parent["id"] if parent else None
    snap["changed"] = set()
    snap["timeout"] = time.time() + 60 * int(body.get("Timeout", 60))
    if parent:
        snap["blocks"] = snapshot_blocks(sim, parent)
    os.makedirs(os.path.join(sim.state_dir, "ebs", snap["id"]), exist_ok=True)
    return jok(start_result(snap), 201)


def start_result(s):
    out = {"SnapshotId": s["id"], "OwnerId": s["owner"], "Status": s["status"],
           "StartTime": s["started"], "VolumeSize": s["size"], "BlockSize": BLOCK,
           "Description": s["description"]}
    if s["tags"]:
        out["Tags"] = [{"Key": k, "Value": v} for k, v in s["tags"].items()]
    if s.get("parent"):
        out["ParentSnapshotId"] = s["parent"]
    return out


def op_put_block(sim, req, r, sid, idx):
    from awssim import Response
    snap = get_snap(r, req, sid)
    if snap["status"] != "pending" or not snap.get("ebs"):
        raise invalid("The snapshot '%s' is not in the pending state." % sid,
                      "INVALID_SNAPSHOT_ID")
    if idx >= snap["size"] * BLOCKS_PER_GIB:
        raise invalid("The block index %d is beyond the volume size." % idx, "INVALID_BLOCK")
    length = req.header("x-amz-Data-Length")
    checksum = req.header("x-amz-Checksum")
    algo = req.header("x-amz-Checksum-Algorithm")
    if length is None or checksum is None or algo is None:
        raise invalid("x-amz-Data-Length, x-amz-Checksum and x-amz-Checksum-Algorithm are "
                      "required.")
    if algo != "SHA256":
        raise invalid("The checksum algorithm must be SHA256.")
    if length != str(BLOCK) or req.body.size != BLOCK:
        raise invalid("The data length must be %d bytes (got header %s, body %d)."
                      % (BLOCK, length, req.body.size), "INVALID_BLOCK")
    data = req.body.read_all()
    digest = hashlib.sha256(data).digest()
    got = base64.b64encode(digest).decode()
    if got != checksum:
        raise invalid("The checksum does not match the block data.", "INVALID_BLOCK")
    progress = req.header("x-amz-Progress")
    if progress is not None:
        try:
            if not 0 <= int(progress) <= 100:
                raise ValueError
        except ValueError:
            raise invalid("x-amz-Progress must be between 0 and 100.")
        snap["progress"] = int(progress)
    path = os.path.join(sim.state_dir, "ebs", sid, "%d.%s" % (idx, uuid.uuid4().hex[:8]))
    with open(path, "wb") as f:
        f.write(data)
    snap["blocks"][idx] = {"path": path, "offset": 0, "len": BLOCK, "sha256": got}
    snap["changed"].add(idx)
    snap["bytes_received"] += len(data)
    return Response(201, b"", [("x-amz-Checksum", got), ("x-amz-Checksum-Algorithm", "SHA256")])


def op_complete(sim, req, r, sid):
    snap = get_snap(r, req, sid)
    if not snap.get("ebs") or snap["status"] != "pending":
        raise invalid("The snapshot '%s' is not in the pending state." % sid,
                      "INVALID_SNAPSHOT_ID")
    count = req.header("x-amz-ChangedBlocksCount")
    try:
        count = int(count)
    except (TypeError, ValueError):
        raise invalid("x-amz-ChangedBlocksCount is required.")
    changed = sorted(snap["changed"])
    if count != len(changed):
        raise invalid("ChangedBlocksCount %d does not match the %d blocks written."
                      % (count, len(changed)))
    checksum = req.header("x-amz-Checksum")
    if checksum is not None:
        algo = req.header("x-amz-Checksum-Algorithm")
        method = req.header("x-amz-Checksum-Aggregation-Method")
        if algo != "SHA256" or method != "LINEAR":
            raise invalid("Checksum-Algorithm must be SHA256 and Checksum-Aggregation-Method "
                          "LINEAR.")
        agg = hashlib.sha256()
        for i in changed:
            agg.update(base64.b64decode(snap["blocks"][i]["sha256"]))
        want = base64.b64encode(agg.digest()).decode()
        if want != checksum:
            raise invalid("The aggregate checksum does not match the blocks written.",
                          "INVALID_PARAMETER_VALUE")
        snap["aggregate_checksum"] = want
    snap["status"] = "completed" if sim.delay_scale == 0 else "pending"
    snap["completing"] = True
    snap["timeline"] = [(time.time() + sim.delay(5), "completed")]
    return jok({"Status": "pending"}, 202)


def completed_snap(r, req, sid):
    snap = get_snap(r, req, sid)
    if snap["status"] != "completed":
        raise invalid("The snapshot '%s' is not in the completed state." % sid,
                      "INVALID_SNAPSHOT_ID")
    return snap


def op_list_blocks(sim, req, r, sid):
    snap = completed_snap(r, req, sid)
    max_results, start = paging(req)
    blocks = snapshot_blocks(sim, snap)
    idxs = [i for i in sorted(blocks) if i >= start]
    page = idxs[:max_results]
    out = {"Blocks": [{"BlockIndex": i, "BlockToken": block_token(sid, i,
                                                                   blocks[i]["sha256"])}
                      for i in page],
           "ExpiryTime": time.time() + 7 * 86400, "VolumeSize": snap["size"],
           "BlockSize": BLOCK}
    if len(idxs) > max_results:
        out["NextToken"] = encode_token({"n": idxs[max_results]})
    return jok(out)


def op_changed_blocks(sim, req, r, sid):
    second = completed_snap(r, req, sid)
    first_id = req.query.get("firstSnapshotId")
    first = completed_snap(r, req, first_id) if first_id else None
    if first and first["size"] != second["size"]:
        raise invalid("The snapshots are not related.", "UNRELATED_SNAPSHOTS")
    max_results, start = paging(req)
    b2 = snapshot_blocks(sim, second)
    b1 = snapshot_blocks(sim, first) if first else {}
    idxs = sorted(i for i in set(b1) | set(b2)
                  if i >= start and (b1.get(i) or {}).get("sha256") !=
                  (b2.get(i) or {}).get("sha256"))
    page = idxs[:max_results]
    changed = []
    for i in page:
        item = {"BlockIndex": i}
        if i in b1:
            item["FirstBlockToken"] = block_token(first_id, i, b1[i]["sha256"])
        if i in b2:
            item["SecondBlockToken"] = block_token(sid, i, b2[i]["sha256"])
        changed.append(item)
    out = {"ChangedBlocks": changed, "ExpiryTime": time.time() + 7 * 86400,
           "VolumeSize": second["size"], "BlockSize": BLOCK}
    if len(idxs) > max_results:
        out["NextToken"] = encode_token({"n": idxs[max_results]})
    return jok(out)


def op_get_block(sim, req, r, sid, idx):
    from awssim import Response
    snap = completed_snap(r, req, sid)
    tok = req.query.get("blockToken")
    if not tok:
        raise invalid("blockToken is required.", "INVALID_BLOCK_TOKEN")
    check_token(tok, sid, idx)
    blocks = snapshot_blocks(sim, snap)
    b = blocks.get(idx)
    data = read_block(b) if b else bytes(BLOCK)
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    return Response(200, data, [("x-amz-Data-Length", str(BLOCK)),
                                ("x-amz-Checksum", digest),
                                ("x-amz-Checksum-Algorithm", "SHA256")],
                    content_type="application/octet-stream")


def handle(sim, req):
    req.op = op = operation_name(req)
    parts = req.path.strip("/").split("/")
    with sim.lock:
        r = sim.region(req.region)
        r.advance()
        if op == "StartSnapshot":
            return op_start(sim, req, r)
        if op == "CompleteSnapshot":
            return op_complete(sim, req, r, parts[2])
        if op == "PutSnapshotBlock":
            return op_put_block(sim, req, r, parts[1], int(parts[3]))
        if op == "GetSnapshotBlock":
            return op_get_block(sim, req, r, parts[1], int(parts[3]))
        if op == "ListSnapshotBlocks":
            return op_list_blocks(sim, req, r, parts[1])
        if op == "ListChangedBlocks":
            return op_changed_blocks(sim, req, r, parts[1])
    raise AwsError(404, "UnknownOperationException", "Unknown operation")
