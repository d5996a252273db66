"""`python -m mysite`: serve the project on $BIND:$PORT with the standard
library's WSGI server (no reloader, so one process)."""

import os
from wsgiref.simple_server import WSGIRequestHandler, make_server


class QuietHandler(WSGIRequestHandler):
    def log_message(self, format, *args):
        pass


def main():
    from mysite.wsgi import application

    port = int(os.environ.get("PORT", "8000"))
    server = make_server(os.environ.get("BIND", "127.0.0.1"), port, application, handler_class=QuietHandler)
    print("mysite on port %d" % port, flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
