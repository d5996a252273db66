"""cxtm-web: a small Flask app served by gunicorn (2 sync workers).

  GET /items/<int:item_id>  {"item": id, "pid": <worker pid>}; logs one INFO
                            line, sleeps 0.2 s (so concurrent requests spread
                            over both workers) and, when OpenTelemetry is
                            importable, sets app.worker.pid on the current span
  GET /healthz              200
Works the same with and without the auto-instrumentation.
"""

import logging
import os
import sys
import time

from flask import Flask, jsonify

try:
    from opentelemetry import trace as otel_trace
except ImportError:  # not instrumented
    otel_trace = None

log = logging.getLogger("cxtm.web")


def setup_logging():
    # Not logging.basicConfig(): the OpenTelemetry logging handler may already be
    # attached to the root logger, and basicConfig would then do nothing.
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if not any(getattr(h, "_cxtm_stdout", False) for h in root.handlers):
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s")
        )
        handler._cxtm_stdout = True
        root.addHandler(handler)


setup_logging()
app = Flask(__name__)


@app.route("/items/<int:item_id>")
def item(item_id):
    pid = os.getpid()
    log.info("item id=%d", item_id)
    time.sleep(0.2)
    if otel_trace is not None:
        otel_trace.get_current_span().set_attribute("app.worker.pid", pid)
    return jsonify(item=item_id, pid=pid)


@app.route("/healthz")
def healthz():
    return "ok\n", 200, {"Content-Type": "text/plain"}
