"""A module of the app's own, found only through the pod's PYTHONPATH (/app/lib)."""

ORIGIN = "cxtm_helpers from /app/lib"
