//! The `opentelemetry-instrument` command wrapper: used only where it is safe.

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

/// `[interpreter, <mount>/bin/opentelemetry-instrument, <command...>]` when the
/// command starts with a Python interpreter. Without a `command` the image's
/// ENTRYPOINT is unknown to a webhook (the seed's image starts through
/// `docker-entrypoint.sh`), so replacing it could skip the entrypoint.
pub fn wrap(command: Option<&[String]>, mount_path: &str, interpreter: &str) -> Wrap {
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
        command[0].as_str()
    } else {
        interpreter
    };
    let mut wrapped = Vec::with_capacity(command.len() + 2);
    wrapped.push(interpreter.to_owned());
    wrapped.push(format!("{mount_path}/bin/opentelemetry-instrument"));
    wrapped.extend(command.iter().cloned());
    Wrap::Wrapped(wrapped)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            "python3",
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
            "",
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
    fn never_wraps_unsafe_or_twice() {
        assert!(matches!(wrap(None, "/m", "python3"), Wrap::NotWrapped(_)));
        assert!(matches!(
            wrap(Some(&[]), "/m", "python3"),
            Wrap::NotWrapped(_)
        ));
        assert!(matches!(
            wrap(Some(&cmd(&["gunicorn", "app:app"])), "/m", "python3"),
            Wrap::NotWrapped(_)
        ));
        assert!(matches!(
            wrap(
                Some(&cmd(&["/bin/sh", "-c", "python run.py"])),
                "/m",
                "python3"
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
            wrap(Some(&once), "/m", "python3"),
            Wrap::NotWrapped(_)
        ));
    }
}
