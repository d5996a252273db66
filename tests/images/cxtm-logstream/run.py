"""Stand-in for the seed workload's `python run.py` (cxtm-logstream).

A plain standard-library HTTP service:
  GET /work?id=X  logs one INFO line through `logging`, then makes exactly one
                  outbound HTTP call (urllib.request) to /ping?id=X on itself
  GET /ping       200, no outbound call
  GET /healthz    200
Listens on $BIND:$PORT (defaults 127.0.0.1:8080). SIGTERM/SIGINT stop it with
exit status 0, so atexit hooks (the OpenTelemetry SDK's flush) run.

The stdlib server makes no span of its own; the urllib call is what the
auto-instrumentation traces.
"""

import json
import logging
import os
import signal
import sys
import urllib.parse
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PORT = int(os.environ.get("PORT", "8080"))
BIND = os.environ.get("BIND", "127.0.0.1")
# The outbound call goes to this very server; a wildcard bind is reached on loopback.
PING_HOST = "127.0.0.1" if BIND in ("", "0.0.0.0", "::", "127.0.0.1") else BIND

log = logging.getLogger("cxtm.logstream")


def setup_logging():
    # Not logging.basicConfig(): the OpenTelemetry logging handler may already be
    # attached to the root logger, and basicConfig would then do nothing.
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(getattr(h, "_cxtm_stdout", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        handler._cxtm_stdout = True
        root.addHandler(handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "cxtm-logstream/25.2.0"

    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        item = query.get("id", [""])[0]
        if url.path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        elif url.path == "/ping":
            self._send(200, json.dumps({"pong": item}) + "\n")
        elif url.path == "/work":
            log.info("work id=%s", item)
            target = "http://%s:%d/ping?%s" % (
                PING_HOST,
                PORT,
                urllib.parse.urlencode({"id": item}),
            )
            try:
                with urllib.request.urlopen(target, timeout=5) as resp:
                    resp.read()
                    status = resp.status
            except Exception as exc:  # the reply says what failed
                self._send(502, json.dumps({"id": item, "error": str(exc)}) + "\n")
                return
            self._send(200, json.dumps({"id": item, "ping": status}) + "\n")
        else:
            self._send(404, b'{"error": "not found"}\n')

    def log_message(self, format, *args):
        # No access log: /work logs exactly one line per request, through `logging`.
        pass


def _stop(signo, _frame):
    raise SystemExit(0)


def main():
    setup_logging()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = ThreadingHTTPServer((BIND, PORT), Handler)
    server.daemon_threads = True
    print("cxtm-logstream listening on %s:%d" % (BIND, PORT), file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
