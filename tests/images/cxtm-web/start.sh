#!/bin/sh
# The image's command (run through docker-entrypoint.sh): expands PORT (and
# BIND) and hands PID 1 to gunicorn.
exec gunicorn --workers 2 --bind "${BIND:-127.0.0.1}:${PORT:-8000}" app:app
