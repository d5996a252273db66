# otel-injector: the front of the multi-version Python auto-instrumentation.
#
# The webhook's PYTHONPATH puts this file's directory first, so every Python
# process in an instrumented container imports it at start. It:
#   1. takes the image's own PYTHONPATH entries off sys.path, and appends the
#      site directory built for this interpreter (<root>/py3.X) at the END of
#      sys.path, after the application's own packages: where both carry a
#      package (requests, urllib3, ...), the application's copy wins;
#   2. puts the working directory on sys.path while OpenTelemetry starts (the
#      Django instrumentation imports the app's settings then; the interpreter
#      adds the working directory only after this module ran), and takes it
#      off again;
#   3. starts OpenTelemetry as the operator's sitecustomize does.
# It never stops the application. A Python with no directory here, or any
# failure while starting, leaves the application uninstrumented, and this
# says so in one line on stderr (once per container: child processes and
# the program the wrapper starts stay quiet). The syntax is kept valid for
# old interpreters (no f-strings), so they reach that line too.
import os
import sys

_NOTED = "OTEL_INJECTOR_PYTHON_NOTED"


def _otel_injector_start():
    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.dirname(os.path.dirname(os.path.dirname(here)))
    version = "%d.%d" % tuple(sys.version_info[:2])
    site_dir = os.path.join(root, "py" + version)

    def say(message):
        if os.environ.get(_NOTED):
            return
        os.environ[_NOTED] = "1"
        try:
            sys.stderr.write("otel-injector: %s\n" % message)
            sys.stderr.flush()
        except Exception:  # no usable stderr: nothing to say it on
            pass

    def ours(entry):
        try:
            return os.path.abspath(entry or ".") in (here, root)
        except Exception:
            return False

    sys.path[:] = [p for p in sys.path if not ours(p)]
    # Like the operator's sitecustomize: child processes the app execs are not
    # instrumented again (the wrapper puts this directory back for its program).
    entries = os.environ.get("PYTHONPATH", "").split(os.pathsep)
    os.environ["PYTHONPATH"] = os.pathsep.join(e for e in entries if e and os.path.abspath(e) != here)

    if not os.path.isdir(site_dir):
        try:
            have = sorted(d[2:] for d in os.listdir(root) if d.startswith("py3."))
        except OSError:
            have = []
        say(
            "auto-instrumentation not started: no build for Python %s (%s) in %s (it has %s); "
            "the application runs uninstrumented"
            % (version, sys.executable, root, ", ".join(have) or "none")
        )
        return
    sys.path.append(site_dir)

    # The wrapper process (our bin/opentelemetry-instrument) only execs the
    # application, which starts OpenTelemetry itself.
    argv0 = (getattr(sys, "argv", None) or [""])[0]
    if os.path.abspath(argv0 or ".") == os.path.join(root, "bin", "opentelemetry-instrument"):
        return

    cwd = None
    try:
        cwd = os.getcwd()
    except OSError:
        pass
    added = cwd is not None and cwd not in sys.path
    if added:
        sys.path.insert(len(sys.path) - 1, cwd)  # before our site dir: the app's module wins
    try:
        from opentelemetry import trace
        from opentelemetry.instrumentation.auto_instrumentation import initialize

        initialize()  # logs its own failure ("Failed to auto initialize OpenTelemetry")
        wanted = (
            os.environ.get("OTEL_TRACES_EXPORTER", "otlp").strip().lower() != "none"
            and os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() != "true"
        )
        if wanted and type(trace.get_tracer_provider()).__name__ == "ProxyTracerProvider":
            say(
                "auto-instrumentation did not start in Python %s (%s): see the error above; "
                "the application runs uninstrumented" % (version, sys.executable)
            )
    except Exception as exc:  # never stop the application
        say(
            "auto-instrumentation not started in Python %s (%s): %s: %s; "
            "the application runs uninstrumented" % (version, sys.executable, type(exc).__name__, exc)
        )
    finally:
        if added:
            try:
                sys.path.remove(cwd)
            except ValueError:
                pass


try:
    _otel_injector_start()
except Exception as _exc:  # a bug here must not stop the application either
    sys.stderr.write("otel-injector: auto-instrumentation not started: %r\n" % (_exc,))
del _otel_injector_start
