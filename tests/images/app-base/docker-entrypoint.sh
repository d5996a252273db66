#!/bin/sh
# Like the seed image's entrypoint: the container starts through a shell
# script that hands over to the command (so PID 1 is the app itself).
exec "$@"
