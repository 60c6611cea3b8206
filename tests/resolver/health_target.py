#!/usr/bin/env python3
"""A toy cluster gateway for tests/resolver/run.sh.

Usage: health_target.py ADDRESS PORT CONTROL_FILE

GET /hc answers 200 "ok", or 503 "no healthy upstreams" while CONTROL_FILE exists
(the way an ingress gateway answers once all its clusters are gone).
Any other path answers 404.
"""

import os
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _answer(self, with_body):
        if self.path.split("?", 1)[0] != "/hc":
            code, body = 404, b"not found\n"
        elif os.path.exists(self.server.control_file):
            code, body = 503, b"no healthy upstreams"
        else:
            code, body = 200, b"ok\n"
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if with_body:
            self.wfile.write(body)

    def do_GET(self):
        self._answer(True)

    def do_HEAD(self):
        self._answer(False)

    def log_message(self, fmt, *args):
        pass  # probes every 500 ms: keep the log quiet


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    addr, port, control = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    server = ThreadingHTTPServer((addr, port), Handler)
    server.daemon_threads = True
    server.control_file = control
    print(f"health target listening on {addr}:{port}", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
