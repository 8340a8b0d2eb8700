#!/usr/bin/env python3
"""Small HTTP peers for the S3 module tests (tests/cmake/s3-modules.cmake).

  peers.py proxy UPSTREAM LOG PORTFILE
      Forwards every request unchanged (Host header included, so SigV4 still verifies) to
      the AWS simulator at UPSTREAM and appends one JSON line per request to LOG: method,
      path and the x-amz-expected-bucket-owner header (or null). The simulator does not
      check bucket ownership, so this shows what the agent sends.
  peers.py imds REGION AKID SECRET TOKEN PORTFILE
      An IMDSv2-only instance metadata service: PUT /latest/api/token, then (with the token)
      placement/region and iam/security-credentials/<role>; requests without a token get 401.
  peers.py stall PORTFILE
      Reads each request and never answers (a hung endpoint), for time limits and cancel.
All write their port to PORTFILE once listening and stop when stdin closes.
"""
import http.client
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


class Proxy(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n) if n else None
        up = urlsplit(self.server.upstream)
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=60)
        headers = {k: v for k, v in self.headers.items()}
        conn.request(self.command, self.path, body=body, headers=headers)
        r = conn.getresponse()
        data = r.read()
        with open(self.server.log, "a") as f:
            f.write(json.dumps({"method": self.command, "path": self.path,
                                "owner": self.headers.get("x-amz-expected-bucket-owner"),
                                "status": r.status}) + "\n")
        self.send_response(r.status)
        for k, v in r.getheaders():
            if k.lower() not in ("transfer-encoding", "connection", "content-length",
                                 "server", "date"):
                self.send_header(k, v)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)
        conn.close()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_any


class Imds(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    TOKEN = "imds-token-1"

    def log_message(self, *a):
        pass

    def reply(self, status, text):
        b = text.encode()
        self.send_response(status)
        self.send_header("Content-Length", str(len(b)))
        self.end_headers()
        self.wfile.write(b)

    def do_PUT(self):
        if self.path == "/latest/api/token" and \
                self.headers.get("X-aws-ec2-metadata-token-ttl-seconds"):
            return self.reply(200, self.TOKEN)
        return self.reply(400, "")

    def do_GET(self):
        if self.headers.get("X-aws-ec2-metadata-token") != self.TOKEN:
            return self.reply(401, "")
        s = self.server
        if self.path == "/latest/meta-data/placement/region":
            return self.reply(200, s.region)
        if self.path == "/latest/meta-data/iam/security-credentials/":
            return self.reply(200, "kiln-role")
        if self.path == "/latest/meta-data/iam/security-credentials/kiln-role":
            return self.reply(200, json.dumps({
                "Code": "Success", "Type": "AWS-HMAC", "AccessKeyId": s.akid,
                "SecretAccessKey": s.secret, "Token": s.token,
                "Expiration": "2099-01-01T00:00:00Z"}))
        return self.reply(404, "")


class Stall(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *a):
        pass

    def do_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n:
            self.rfile.read(n)
        self.server.stop.wait()

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = do_any


def main():
    mode = sys.argv[1]
    if mode == "proxy":
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
        srv.upstream, srv.log, portfile = sys.argv[2], sys.argv[3], sys.argv[4]
    elif mode == "stall":
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Stall)
        srv.stop = threading.Event()
        portfile = sys.argv[2]
    else:
        srv = ThreadingHTTPServer(("127.0.0.1", 0), Imds)
        srv.region, srv.akid, srv.secret, srv.token, portfile = sys.argv[2:7]
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    with open(portfile + ".tmp", "w") as f:
        f.write(str(srv.server_address[1]))
    import os
    os.rename(portfile + ".tmp", portfile)
    sys.stdin.read()  # until the test closes our stdin (or dies)
    if mode == "stall":
        srv.stop.set()
    srv.shutdown()


if __name__ == "__main__":
    main()
