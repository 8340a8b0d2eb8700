"""Shared pieces of the AWS simulator: errors, XML building, timestamps, ids, pagination."""

import base64
import datetime
import email.utils
import fnmatch
import json
import time
from xml.sax.saxutils import escape


class AwsError(Exception):
    """An error answered in the format of the service that raised it."""

    def __init__(self, status, code, message, **extra):
        super().__init__("%s: %s" % (code, message))
        self.status = status
        self.code = code
        self.message = message
        self.extra = extra  # service-specific fields (S3 Resource, EBS Reason, ...)


def iso8601(ts):
    """EC2/S3 body timestamp: 2018-05-08T16:46:19.000Z"""
    d = datetime.datetime.fromtimestamp(ts, datetime.timezone.utc)
    return d.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (d.microsecond // 1000)


def http_date(ts):
    return email.utils.formatdate(ts, usegmt=True)


def xml_elem(name, value):
    """Serialise a Python value as EC2-style XML: dict -> children, list -> <item>s,
    bool -> true/false, None -> omitted."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "<%s>%s</%s>" % (name, "true" if value else "false", name)
    if isinstance(value, dict):
        inner = "".join(xml_elem(k, v) for k, v in value.items())
        return "<%s>%s</%s>" % (name, inner, name)
    if isinstance(value, list):
        inner = "".join(xml_elem("item", v) for v in value)
        return "<%s>%s</%s>" % (name, inner, name)
    return "<%s>%s</%s>" % (name, escape(str(value)), name)


def xml_children(value, item_name="item"):
    """Like xml_elem for the body of an element: dict entries in order, lists repeated with
    the given element name (S3 style, item_name=None repeats the key itself)."""
    out = []
    for k, v in value.items():
        if isinstance(v, list) and item_name is None:
            for x in v:
                out.append(xml_elem_flat(k, x))
        else:
            out.append(xml_elem(k, v) if item_name else xml_elem_flat(k, v))
    return "".join(out)


def xml_elem_flat(name, value):
    """S3-style XML: lists are flattened (repeated element), dicts nest."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "<%s>%s</%s>" % (name, "true" if value else "false", name)
    if isinstance(value, dict):
        return "<%s>%s</%s>" % (name, xml_children(value, None), name)
    if isinstance(value, list):
        return "".join(xml_elem_flat(name, x) for x in value)
    return "<%s>%s</%s>" % (name, escape(str(value)), name)


def wildcard_match(pattern, value):
    """EC2 filter values accept * and ? wildcards (and \\ escapes, not supported here)."""
    return fnmatch.fnmatchcase(value, pattern)


def encode_token(obj):
    return base64.urlsafe_b64encode(json.dumps(obj).encode()).decode().rstrip("=")


def decode_token(tok):
    try:
        pad = "=" * (-len(tok) % 4)
        return json.loads(base64.urlsafe_b64decode(tok + pad))
    except Exception:
        return None


def now():
    return time.time()
