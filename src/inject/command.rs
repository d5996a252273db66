//! The `opentelemetry-instrument` command wrapper: used only where it is safe.

use crate::settings::CommandWrapper;

/// Why a container's command was or was not wrapped.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Wrap {
    /// The new command to set.
    Wrapped(Vec<String>),
    /// No wrapper; the reason, in words. PYTHONPATH's sitecustomize still instruments.
    NotWrapped(&'static str),
}

/// `python`, `python3`, `python3.12`, `/usr/local/bin/python`, ... but not `pythonista` or `python-config`.
pub fn is_python_interpreter(arg: &str) -> bool {
    let base = arg.rsplit('/').next().unwrap_or(arg);
    let Some(version) = base.strip_prefix("python") else {
        return false;
    };
    version.is_empty()
        || (version.bytes().all(|b| b.is_ascii_digit() || b == b'.')
            && version.starts_with(|c: char| c.is_ascii_digit())
            && !version.ends_with('.'))
}

/// The `(major, minor)` a versioned interpreter name states: `python3.9` gives
/// `(3, Some(9))`, `python2` `(2, None)`, `python` nothing.
fn stated_version(arg: &str) -> Option<(u32, Option<u32>)> {
    let base = arg.rsplit('/').next().unwrap_or(arg);
    let version = base.strip_prefix("python")?;
    let mut parts = version.split('.');
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().and_then(|m| m.parse().ok());
    Some((major, minor))
}

/// The oldest Python the auto-instrumentation supports (0.54b1: 3.8).
pub const MIN_PYTHON: (u32, u32) = (3, 8);

/// `[interpreter, <mount>/bin/opentelemetry-instrument, <command...>]` when the
/// command starts with a Python interpreter. Without a `command` the image's
/// ENTRYPOINT is unknown to a webhook (the seed's image starts through
/// `docker-entrypoint.sh`), so replacing it could skip the entrypoint.
///
/// `interpreter` empty means the container's own (`command[0]`): it exists,
/// since the command ran without us. The wrapper is a Python program in front
/// of the app, so an interpreter that names a version which cannot run it
/// (Python 2, 3.7 and older) is not wrapped: the app starts as it would have,
/// and `sitecustomize` fails harmlessly there.
pub fn wrap(command: Option<&[String]>, mount_path: &str, wrapper: &CommandWrapper) -> Wrap {
    let interpreter = wrapper.interpreter.as_str();
    let Some(command) = command.filter(|c| !c.is_empty()) else {
        return Wrap::NotWrapped(
            "no command set: the image's entrypoint is kept; PYTHONPATH's sitecustomize instruments it",
        );
    };
    if command
        .iter()
        .any(|arg| arg.ends_with("opentelemetry-instrument"))
    {
        return Wrap::NotWrapped("command already runs opentelemetry-instrument");
    }
    if !is_python_interpreter(&command[0]) {
        return Wrap::NotWrapped(
            "command does not start with a Python interpreter: PYTHONPATH's sitecustomize instruments it",
        );
    }
    let interpreter = if interpreter.is_empty() {
        match stated_version(&command[0]) {
            Some((major, minor))
                if major < MIN_PYTHON.0
                    || (major == MIN_PYTHON.0 && minor.is_some_and(|m| m < MIN_PYTHON.1)) =>
            {
                return Wrap::NotWrapped(
                    "the command's interpreter is older than Python 3.8 and cannot run opentelemetry-instrument: not wrapped, so the app starts as before (uninstrumented)",
                );
            }
            _ => command[0].as_str(),
        }
    } else {
        interpreter
    };
    let mut wrapped = Vec::with_capacity(command.len() + 5);
    wrapped.push(interpreter.to_owned());
    if wrapper.guard {
        wrapped.extend(["-S".to_owned(), "-c".to_owned(), GUARD.to_owned()]);
    }
    wrapped.push(format!("{mount_path}/bin/opentelemetry-instrument"));
    wrapped.extend(command.iter().cloned());
    Wrap::Wrapped(wrapped)
}

/// The guard: `<interpreter> -S -c GUARD <mount>/bin/opentelemetry-instrument
/// <command...>`. It runs the image's `opentelemetry-instrument` in its own
/// process (which execs the command, instrumented); if that fails in this
/// Python (measured: the operator's 0.54b1 image on CPython 3.9 raises
/// `ImportError: cannot import name 'TypeAlias'`, and the bare wrapper then
/// exits 1 and the pod crash-loops), it takes the mount's entries off
/// `PYTHONPATH`, says so in one `otel-injector:` line on stderr, and execs the
/// command as it would have run without us.
///
/// `-S` (no `site`) keeps the wrapper's own process from starting the SDK
/// through `sitecustomize`, work the unguarded wrapper does and throws away
/// at its `exec`. The wrapper needs nothing but the mount, which is on
/// `PYTHONPATH`. Kept to syntax every Python 3.8+ reads.
///
/// Written compactly (one statement per line where Python allows, single
/// quotes, short names) because it travels in every wrapped container's
/// command: each byte is JSON-escaped, base64-encoded and encrypted on every
/// review (BENCHMARKS.md, "Instructions per review"). Line by line: drop the
/// `-c` script's empty `sys.path` entry (the working directory) so the app's
/// files cannot shadow the wrapper's imports; make `sys.argv` what the wrapper
/// expects (`[wrapper, command...]`); run the wrapper, which execs the
/// command and so returns only on failure; take the mount's entries (and
/// empty ones) off `PYTHONPATH`, keeping the user's; say so once on stderr;
/// exec the command as it was.
pub const GUARD: &str = r#"import os,sys
if sys.path[:1]==['']:del sys.path[0]
del sys.argv[0];w,*a=sys.argv
try:import runpy;runpy.run_path(w,run_name='__main__');e='it returned without starting the command'
except BaseException as x:e='%s: %s'%(type(x).__name__,x)
m=os.path.dirname(os.path.dirname(w))+'/';E=os.environ;P='PYTHONPATH'
p=':'.join(d for d in E.pop(P,'').split(':')if d and not(d+'/').startswith(m))
if p:E[P]=p
print('otel-injector: auto-instrumentation not started: %s does not run in Python %s (%s): %s; the application runs uninstrumented'%(w,sys.version.split()[0],sys.executable,e),file=sys.stderr,flush=True)
os.execvp(a[0],a)
"#;

#[cfg(test)]
mod tests {
    use super::*;

    /// The seed's unguarded wrapper with `interpreter`.
    fn plain(interpreter: &str) -> CommandWrapper {
        CommandWrapper {
            interpreter: interpreter.to_owned(),
            guard: false,
            ..CommandWrapper::default()
        }
    }

    fn cmd(args: &[&str]) -> Vec<String> {
        args.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn interpreters() {
        for yes in [
            "python",
            "python3",
            "python3.12",
            "/usr/local/bin/python",
            "/usr/bin/python3.11",
            "python2",
        ] {
            assert!(is_python_interpreter(yes), "{yes}");
        }
        for no in [
            "pythonista",
            "python-config",
            "python3.",
            "gunicorn",
            "/bin/sh",
            "ipython",
            "python3x",
            "",
        ] {
            assert!(!is_python_interpreter(no), "{no}");
        }
    }

    #[test]
    fn wraps_the_seed_command_like_the_seed() {
        let got = wrap(
            Some(&cmd(&["python", "run.py"])),
            "/otel-auto-instrumentation",
            &plain("python3"),
        );
        assert_eq!(
            got,
            Wrap::Wrapped(cmd(&[
                "python3",
                "/otel-auto-instrumentation/bin/opentelemetry-instrument",
                "python",
                "run.py"
            ]))
        );
    }

    #[test]
    fn uses_the_containers_interpreter_when_none_configured() {
        let got = wrap(
            Some(&cmd(&["/usr/local/bin/python3.12", "-m", "app"])),
            "/m",
            &plain(""),
        );
        assert_eq!(
            got,
            Wrap::Wrapped(cmd(&[
                "/usr/local/bin/python3.12",
                "/m/bin/opentelemetry-instrument",
                "/usr/local/bin/python3.12",
                "-m",
                "app"
            ]))
        );
    }

    #[test]
    fn the_containers_own_interpreter_is_the_default() {
        // A virtualenv image with only `python` on PATH: the wrapper must not
        // name an interpreter the image may not have.
        let got = wrap(
            Some(&cmd(&["/app/venv/bin/python", "app.py"])),
            "/m",
            &plain(&CommandWrapper::default().interpreter),
        );
        assert_eq!(
            got,
            Wrap::Wrapped(cmd(&[
                "/app/venv/bin/python",
                "/m/bin/opentelemetry-instrument",
                "/app/venv/bin/python",
                "app.py"
            ]))
        );
    }

    #[test]
    fn interpreters_too_old_for_the_wrapper_are_not_wrapped() {
        for old in ["python2", "python2.7", "/usr/bin/python3.7", "python3.6"] {
            assert!(
                matches!(wrap(Some(&cmd(&[old, "app.py"])), "/m", &plain("")), Wrap::NotWrapped(why) if why.contains("3.8")),
                "{old}"
            );
        }
        for ok in ["python", "python3", "python3.8", "python3.13", "python4"] {
            assert!(
                matches!(
                    wrap(Some(&cmd(&[ok, "app.py"])), "/m", &plain("")),
                    Wrap::Wrapped(_)
                ),
                "{ok}"
            );
        }
        // An explicitly configured interpreter is used as configured.
        assert!(matches!(
            wrap(Some(&cmd(&["python2", "app.py"])), "/m", &plain("python3")),
            Wrap::Wrapped(_)
        ));
    }

    #[test]
    fn never_wraps_unsafe_or_twice() {
        assert!(matches!(
            wrap(None, "/m", &plain("python3")),
            Wrap::NotWrapped(_)
        ));
        assert!(matches!(
            wrap(Some(&[]), "/m", &plain("python3")),
            Wrap::NotWrapped(_)
        ));
        assert!(matches!(
            wrap(
                Some(&cmd(&["gunicorn", "app:app"])),
                "/m",
                &plain("python3")
            ),
            Wrap::NotWrapped(_)
        ));
        assert!(matches!(
            wrap(
                Some(&cmd(&["/bin/sh", "-c", "python run.py"])),
                "/m",
                &plain("python3")
            ),
            Wrap::NotWrapped(_)
        ));
        let once = cmd(&[
            "python3",
            "/m/bin/opentelemetry-instrument",
            "python",
            "run.py",
        ]);
        assert!(matches!(
            wrap(Some(&once), "/m", &plain("python3")),
            Wrap::NotWrapped(_)
        ));
    }
}
