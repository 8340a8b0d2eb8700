#!/usr/bin/env python3
"""A small HTTP(S) server for the WebDownload tests (started and stopped by the test itself).

Serves files from --root on 127.0.0.1 at a free port, which it prints on its first stdout line.
Special paths:
  /flaky/<n>/<name>   answers 503 to the first <n> requests for that path, then serves <name>
  /redirect/<name>    302 to /<name>
  /status/<code>      answers with that status
  /slow/<s>/<name>    waits <s> seconds, then serves <name>
Every request path is appended to --log, one per line.
"""
import argparse
import http.server
import os
import ssl
import sys
import threading
import time

counts = {}
lock = threading.Lock()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", required=True)
    ap.add_argument("--log", required=True)
    ap.add_argument("--cert")
    ap.add_argument("--key")
    args = ap.parse_args()

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *a):
            pass

        def send_file(self, name):
            path = os.path.join(args.root, name)
            if ".." in name.split("/") or not os.path.isfile(path):
                self.send_error(404)
                return
            with open(path, "rb") as f:
                data = f.read()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_GET(self):
            with lock:
                with open(args.log, "a") as f:
                    f.write(self.path + "\n")
                counts[self.path] = counts.get(self.path, 0) + 1
                seen = counts[self.path]
            parts = self.path.split("?")[0].strip("/").split("/")
            if parts[0] == "flaky" and len(parts) == 3:
                if seen <= int(parts[1]):
                    self.send_error(503)
                    return
                self.send_file(parts[2])
            elif parts[0] == "redirect" and len(parts) == 2:
                self.send_response(302)
                self.send_header("Location", "/" + parts[1])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif parts[0] == "slow" and len(parts) == 3:
                time.sleep(float(parts[1]))
                self.send_file(parts[2])
            elif parts[0] == "status" and len(parts) == 2:
                self.send_error(int(parts[1]))
            else:
                self.send_file("/".join(parts))

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    if args.cert:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(args.cert, args.key)
        server.socket = ctx.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    sys.exit(main())
