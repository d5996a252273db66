"""The runtime matrix's app: one standard-library HTTP service that runs on
every Python of the matrix (3.9 to 3.13, a virtualenv, old requests) and says
what it sees.

  GET /healthz        200
  GET /work?id=X      logs one INFO line, then one outbound call to
                      /ping?id=X on itself with urllib (the span the tests look for)
  GET /requests?id=X  the same call through `requests` (when it imports)
  GET /ping           200, no outbound call
  GET /info           JSON: Python version and executable, working directory,
                      sys.path, the modules named in APP_IMPORT with their
                      files, requests/urllib3 versions and files, and whether
                      OpenTelemetry is active in this process

Environment: PORT (8080), BIND (127.0.0.1), APP_IMPORT (comma list of modules
that must import at start, as an app's own code would: a failure stops the
app, which is the point).
"""

import importlib
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
log = logging.getLogger("cxtm.runtime")

# The app's own modules: imported at start, exactly like `import mymodule`.
OWN = {}
for _name in filter(None, (n.strip() for n in os.environ.get("APP_IMPORT", "").split(","))):
    OWN[_name] = importlib.import_module(_name)


def module_info(name):
    try:
        module = importlib.import_module(name)
    except Exception as exc:  # reported, not fatal: /info says what it found
        return {"error": "%s: %s" % (type(exc).__name__, exc)}
    return {"version": getattr(module, "__version__", None), "file": getattr(module, "__file__", None)}


def otel_state():
    try:
        from opentelemetry import trace
    except Exception:
        return {"active": False, "tracer_provider": None}
    provider = type(trace.get_tracer_provider()).__name__
    return {"active": provider != "ProxyTracerProvider", "tracer_provider": provider}


def info():
    return {
        "python": "%d.%d.%d" % tuple(sys.version_info[:3]),
        "executable": sys.executable,
        "prefix": sys.prefix,
        "cwd": os.getcwd(),
        "path": sys.path,
        "pythonpath": os.environ.get("PYTHONPATH"),
        "own": {name: getattr(m, "__file__", None) for name, m in OWN.items()},
        "requests": module_info("requests"),
        "urllib3": module_info("urllib3"),
        "otel": otel_state(),
    }


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

    def _send(self, status, body, content_type="application/json"):
        data = body if isinstance(body, bytes) else body.encode()
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        url = urllib.parse.urlsplit(self.path)
        item = urllib.parse.parse_qs(url.query).get("id", [""])[0]
        target = "http://127.0.0.1:%d/ping?%s" % (PORT, urllib.parse.urlencode({"id": item}))
        if url.path == "/healthz":
            self._send(200, b"ok\n", "text/plain")
        elif url.path == "/ping":
            self._send(200, json.dumps({"pong": item}) + "\n")
        elif url.path == "/info":
            self._send(200, json.dumps(info(), indent=1) + "\n")
        elif url.path in ("/work", "/requests"):
            log.info("work id=%s via %s", item, url.path[1:])
            try:
                if url.path == "/work":
                    with urllib.request.urlopen(target, timeout=5) as resp:
                        resp.read()
                        status = resp.status
                else:
                    import requests

                    status = requests.get(target, timeout=5).status_code
            except Exception as exc:  # the reply says what failed
                self._send(502, json.dumps({"id": item, "error": repr(exc)}) + "\n")
                return
            self._send(200, json.dumps({"id": item, "ping": status}) + "\n")
        else:
            self._send(404, b'{"error": "not found"}\n')

    def log_message(self, format, *args):
        pass


def _stop(signo, _frame):
    raise SystemExit(0)


def main():
    setup_logging()
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    server = ThreadingHTTPServer((BIND, PORT), Handler)
    server.daemon_threads = True
    print(
        "runtime app: Python %s (%s) on %s:%d, otel %s"
        % (sys.version.split()[0], sys.executable, BIND, PORT, otel_state()),
        file=sys.stderr,
        flush=True,
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
