//! scripts/plots/render turns a benchmark run into the SVG plots that open
//! BENCHMARKS.md. Rendered here from a fixture run (its own figures, not the
//! committed ones) and from a `scripts/bench --out` report; each bar carries
//! its figure, so the test reads the plots back and compares them with the
//! input. Needs only python3 (the script uses the standard library).

use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn render(run: &Path, out: &Path, extra: &[&str]) -> String {
    let output = Command::new("python3")
        .arg(repo().join("scripts/plots/render"))
        .arg("--run")
        .arg(run)
        .arg("--out")
        .arg(out)
        .args(extra)
        .output()
        .expect("run python3 scripts/plots/render");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "render failed: {stderr}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// The `data-label` of every bar, in document order.
fn bars(svg: &str) -> Vec<String> {
    svg.split("<rect class=\"bar\"")
        .skip(1)
        .map(|bar| {
            let start = bar.find("data-label=\"").expect("data-label") + "data-label=\"".len();
            let len = bar[start..].find('"').expect("closing quote");
            bar[start..start + len].to_owned()
        })
        .collect()
}

/// A run with figures unlike the committed ones.
const FIXTURE: &str = r#"{
  "operator": {"run": "fixture", "metrics": [
    {"name": "webhook CPU per pod", "unit": "ms", "ours": 0.5, "operator": 2.0},
    {"name": "RSS", "unit": "MiB", "ours": 10.0, "operator": 40.0}
  ]},
  "tls_floor": {"run": "fixture", "scenarios": [
    {"name": "keep-alive, c=1", "ours": [0.2, 0.4, 0.8], "baseline": [0.1, 0.2, 0.3]}
  ]},
  "pod_start": {"run": "fixture", "pods": [
    {"name": "plain", "phases": [["created → Ready", 1.5]]},
    {"name": "init container", "phases": [["created → init done", 3.0], ["init done → Ready", 2.0]]},
    {"name": "image volume", "phases": [], "note": "not measured yet"}
  ]}
}"#;

#[test]
fn renders_every_plot_from_a_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run.json");
    std::fs::write(&run, FIXTURE).expect("write fixture");
    let out = dir.path().join("svg");
    let printed = render(&run, &out, &[]);
    for name in ["operator.svg", "latency-vs-tls-floor.svg", "pod-start.svg"] {
        assert!(printed.contains(name), "{printed}");
        let svg = std::fs::read_to_string(out.join(name)).expect(name);
        assert!(
            svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""),
            "{name}"
        );
        assert!(svg.trim_end().ends_with("</svg>"), "{name}");
    }

    let operator = std::fs::read_to_string(out.join("operator.svg")).expect("svg");
    assert_eq!(
        bars(&operator),
        [
            "webhook CPU per pod ours: 0.5 ms",
            "webhook CPU per pod operator: 2.0 ms",
            "RSS ours: 10.0 MiB",
            "RSS operator: 40.0 MiB",
        ]
    );
    assert!(
        operator.contains("ours / operator = 0.25 (1/4.0)"),
        "{operator}"
    );

    let latency = std::fs::read_to_string(out.join("latency-vs-tls-floor.svg")).expect("svg");
    let latency_bars = bars(&latency);
    assert_eq!(latency_bars.len(), 6, "{latency_bars:?}");
    assert!(latency_bars.contains(&"keep-alive, c=1 p99.9 ours: 0.8 ms".to_owned()));
    assert!(latency_bars.contains(&"keep-alive, c=1 p50 baseline: 0.1 ms".to_owned()));

    let pod_start = std::fs::read_to_string(out.join("pod-start.svg")).expect("svg");
    assert_eq!(
        bars(&pod_start),
        [
            "plain: created → Ready 1.5 s",
            "init container: created → init done 3.0 s",
            "init container: init done → Ready 2.0 s",
        ]
    );
    assert!(pod_start.contains("5.00 s"), "the init-container total");
    assert!(pod_start.contains("not measured yet"));
}

/// `--bench-report` takes the latency figures from the table `scripts/bench
/// --out FILE` writes, instead of the run file's.
#[test]
fn the_latency_plot_reads_a_bench_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = dir.path().join("run.json");
    std::fs::write(&run, FIXTURE).expect("write fixture");
    let report = dir.path().join("report.md");
    std::fs::write(
        &report,
        "mode default: 8 s per run\n\n\
         | scenario | ours req/s | baseline req/s | ratio | ours p50 / p99 / p99.9 ms | baseline p50 / p99 / p99.9 ms | p99 ratio | server CPU µs/req ours / baseline | target |\n\
         |---|---:|---:|---:|---|---|---:|---|---|\n\
         | keep-alive, c=16 | 16767 | 42849 | 0.39 | 0.881 / 2.306 / 3.125 | 0.336 / 0.879 / 1.360 | 2.62 | 75 / 21 | MISSED |\n\
         | new TLS conn/request, c=16 | 3194 | 3372 | 0.95 | 4.834 / 8.781 / 12.218 | 4.556 / 8.818 / 35.326 | 1.00 | 313 / 270 |  |\n",
    )
    .expect("write report");
    let out = dir.path().join("svg");
    render(
        &run,
        &out,
        &["--bench-report", report.to_str().expect("utf-8")],
    );
    let latency = std::fs::read_to_string(out.join("latency-vs-tls-floor.svg")).expect("svg");
    let latency_bars = bars(&latency);
    assert_eq!(latency_bars.len(), 12, "{latency_bars:?}");
    assert!(latency_bars.contains(&"keep-alive, c=16 p99 ours: 2.306 ms".to_owned()));
    assert!(
        latency_bars.contains(&"new TLS conn/request, c=16 p99.9 baseline: 35.326 ms".to_owned())
    );
    assert!(
        !latency.contains("keep-alive, c=1 "),
        "the run file's scenario was replaced"
    );
}

/// The committed plots are those the committed run renders: rerendering
/// changes nothing.
#[test]
fn committed_plots_match_the_committed_run() {
    let dir = tempfile::tempdir().expect("tempdir");
    render(&repo().join("benchmarks/run.json"), dir.path(), &[]);
    for name in ["operator.svg", "latency-vs-tls-floor.svg", "pod-start.svg"] {
        let fresh = std::fs::read_to_string(dir.path().join(name)).expect(name);
        let committed = std::fs::read_to_string(repo().join("benchmarks").join(name)).expect(name);
        assert!(
            fresh == committed,
            "benchmarks/{name} is stale: run scripts/plots/render"
        );
    }
}
