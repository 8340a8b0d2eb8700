"""STS (Query protocol, XML): GetCallerIdentity, AssumeRole."""

import secrets
import time
from xml.sax.saxutils import escape

from util import AwsError, iso8601, xml_elem

NS = "https://sts.amazonaws.com/doc/2011-06-15/"


def operation_name(req):
    return req.form().get("Action", "Unknown")


def throttle_error():
    return AwsError(400, "Throttling", "Rate exceeded")


def error_response(req, err):
    from awssim import Response
    body = ('<ErrorResponse xmlns="%s"><Error><Type>%s</Type><Code>%s</Code>'
            '<Message>%s</Message></Error><RequestId>%s</RequestId></ErrorResponse>'
            % (NS, "Receiver" if err.status >= 500 else "Sender", escape(err.code),
               escape(err.message), req.request_id))
    return Response(err.status, body.encode(), content_type="text/xml")


def result(req, action, fields):
    from awssim import Response
    body = ('<%sResponse xmlns="%s"><%sResult>%s</%sResult><ResponseMetadata><RequestId>%s'
            '</RequestId></ResponseMetadata></%sResponse>'
            % (action, NS, action, "".join(xml_elem(k, v) for k, v in fields.items()), action,
               req.request_id, action))
    return Response(200, body.encode(), content_type="text/xml")


def handle(sim, req):
    from awssim import Credential
    p = req.form()
    action = p.get("Action")
    req.op = action or "Unknown"
    if action == "GetCallerIdentity":
        return result(req, action, {"UserId": req.cred.user_id, "Account": req.cred.account,
                                    "Arn": req.cred.arn})
    if action == "AssumeRole":
        arn = p.get("RoleArn")
        name = p.get("RoleSessionName")
        if not arn or not name:
            raise AwsError(400, "ValidationError", "1 validation error detected: Value null at "
                           "'%s' failed to satisfy constraint: Member must not be null"
                           % ("roleArn" if not arn else "roleSessionName"))
        parts = arn.split(":")
        if len(parts) != 6 or not parts[5].startswith("role/"):
            raise AwsError(400, "ValidationError", "%s is invalid" % arn)
        duration = int(p.get("DurationSeconds", "3600"))
        if not 900 <= duration <= 43200:
            raise AwsError(400, "ValidationError", "1 validation error detected: Value '%d' at "
                           "'durationSeconds' failed to satisfy constraint: Member must have "
                           "value greater than or equal to 900" % duration)
        account = parts[4]
        role = parts[5].split("/", 1)[1]
        with sim.lock:
            sim.sts_issued += 1
        akid = "ASIA" + secrets.token_hex(8).upper()
        secret = secrets.token_urlsafe(30)
        token = "FwoGZXIvYXdzE" + secrets.token_urlsafe(96)
        expires = time.time() + duration
        role_id = "AROA" + secrets.token_hex(8).upper()
        assumed = "arn:aws:sts::%s:assumed-role/%s/%s" % (account, role, name)
        cred = Credential(akid, secret, token, account=account, arn=assumed,
                          user_id="%s:%s" % (role_id, name), expires=expires)
        with sim.lock:
            sim.creds[akid] = cred
        return result(req, action, {
            "Credentials": {"AccessKeyId": akid, "SecretAccessKey": secret,
                            "SessionToken": token, "Expiration": iso8601(expires)},
            "AssumedRoleUser": {"AssumedRoleId": "%s:%s" % (role_id, name), "Arn": assumed},
        })
    raise AwsError(400, "InvalidAction", "Could not find operation %s for version 2011-06-15"
                   % action)
