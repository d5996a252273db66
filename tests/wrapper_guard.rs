//! The command wrapper's guard (`otel_injector::inject::command::GUARD`) run
//! by a real Python: with a wrapper that starts the command, and with one
//! that cannot run in this Python. Needs `python3` on PATH (a README
//! requirement: without it these tests fail, saying so, rather than pass
//! having checked nothing). The same guard on CPython 3.9 with the operator's
//! image runs on the real node in tests/e2e_runtime.rs.

use std::path::Path;
use std::process::{Command, Output};

use otel_injector::inject::command::GUARD;

fn python() -> &'static str {
    let ok = Command::new("python3")
        .arg("-c")
        .arg("pass")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "these tests run the guard in a real Python: no working python3 on PATH"
    );
    "python3"
}

/// A mount with `bin/opentelemetry-instrument` = `wrapper`, and an app that
/// prints its PYTHONPATH and whether the wrapper's marker reached it.
fn run_guarded(dir: &Path, wrapper: &str) -> Output {
    let python = python();
    let mount = dir.join("otel");
    std::fs::create_dir_all(mount.join("bin")).expect("mkdir");
    std::fs::create_dir_all(dir.join("lib")).expect("mkdir");
    std::fs::write(mount.join("bin/opentelemetry-instrument"), wrapper).expect("write");
    std::fs::write(
        dir.join("app.py"),
        "import os\nprint('app PYTHONPATH=%s MARK=%s' % (os.environ.get('PYTHONPATH'), os.environ.get('MARK')))\n",
    )
    .expect("write");
    let mount = mount.to_str().expect("utf-8 path");
    let user_lib = dir.join("lib");
    let pythonpath = format!(
        "{mount}/opentelemetry/instrumentation/auto_instrumentation:{}:{mount}",
        user_lib.display()
    );
    Command::new(python)
        .args([
            "-S",
            "-c",
            GUARD,
            &format!("{mount}/bin/opentelemetry-instrument"),
        ])
        .args([python, "app.py"])
        .current_dir(dir)
        .env("PYTHONPATH", pythonpath)
        .env_remove("MARK")
        .output()
        .expect("run python3")
}

#[test]
fn a_working_wrapper_starts_the_command_through_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wrapper =
        "import os, sys\nos.environ['MARK'] = 'wrapped'\nos.execvp(sys.argv[1], sys.argv[1:])\n";
    let out = run_guarded(dir.path(), wrapper);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("MARK=wrapped"), "the wrapper ran: {stdout}");
    assert!(
        stdout.contains("/otel/opentelemetry/instrumentation/auto_instrumentation"),
        "PYTHONPATH kept for the instrumented app: {stdout}"
    );
    assert!(!stderr.contains("otel-injector:"), "no complaint: {stderr}");
}

#[test]
fn a_wrapper_that_cannot_run_starts_the_command_uninstrumented_and_says_so_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    // What the operator's 0.54b1 wrapper does on CPython 3.9.
    let wrapper = "from typing import TypeAliasThatDoesNotExist\n";
    let out = run_guarded(dir.path(), wrapper);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "the app ran: {stdout}\n{stderr}");
    let lib = dir.path().join("lib");
    assert!(
        stdout.contains(&format!("app PYTHONPATH={} MARK=None", lib.display())),
        "the mount's entries are off PYTHONPATH, the user's entry stays: {stdout}"
    );
    assert_eq!(
        stderr
            .matches("otel-injector: auto-instrumentation not started")
            .count(),
        1,
        "{stderr}"
    );
    assert!(
        stderr.contains("does not run in Python 3.") && stderr.contains("ImportError"),
        "names the Python version and the error: {stderr}"
    );
    let cause = otel_injector::verify::classify(&stderr).expect("verify reads the line");
    assert_eq!(cause.kind, "the Python version", "{cause:?}");
}

#[test]
fn a_command_that_does_not_exist_fails_as_it_would_without_us() {
    let dir = tempfile::tempdir().expect("tempdir");
    let python = python();
    let mount = dir.path().join("otel");
    std::fs::create_dir_all(mount.join("bin")).expect("mkdir");
    let wrapper = mount.join("bin/opentelemetry-instrument");
    std::fs::write(
        &wrapper,
        "import os, sys\nos.execvp(sys.argv[1], sys.argv[1:])\n",
    )
    .expect("write");
    let out = Command::new(python)
        .args(["-S", "-c", GUARD])
        .arg(&wrapper)
        .arg("no-such-program-here")
        .output()
        .expect("run python3");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("No such file"), "{stderr}");
}
