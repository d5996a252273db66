//! Criterion micro-benchmarks of the admission path (issue 6), no I/O:
//!
//! - `inject/seed-pod`: `inject()` alone on the seed pod with the default
//!   settings (target: < 20 µs);
//! - `review/<size>`: the full `Reviewer::review(&bytes)` (parse, decide,
//!   patch, serialize) on generated pod CREATE reviews of ~1 KB, 10 KB,
//!   100 KB and 1 MB, reported as bytes/s so that linear scaling shows as a
//!   flat throughput;
//! - `review/seed`: the seed pod's AdmissionReview fixture, as the server
//!   sees it.
//!
//! `cargo bench --bench admission`; `scripts/bench` runs it too (see
//! BENCHMARKS.md).

use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use k8s_openapi::api::core::v1::Pod;
use otel_injector::config::Config;
use otel_injector::inject::{self, Settings};
use otel_injector::policy::StaticView;
use otel_injector::review::Reviewer;
use serde_json::{Value, json};

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// A pod CREATE review in the injected namespace, as the API server sends it.
fn review_of(pod: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "0df28fbd-5f5f-4c9e-8d6a-4b8a3a0e7f11",
            "kind": {"group": "", "version": "v1", "kind": "Pod"},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "name": pod["metadata"]["name"],
            "namespace": "cxtm",
            "operation": "CREATE",
            "userInfo": {"username": "bench"},
            "object": pod,
            "dryRun": false
        }
    })
}

fn container(i: usize, env_vars: usize) -> Value {
    let env: Vec<Value> = (0..env_vars)
        .map(|j| json!({"name": format!("APP_SETTING_{i}_{j:04}"), "value": format!("value-{j:04}-abcdefghijklmnopqrstuvwxyz0123456789")}))
        .collect();
    json!({
        "name": format!("app-{i}"),
        "image": "10.122.28.110/testing/tm_logstream:25.2.0",
        "command": ["python", "run.py", "--worker", i.to_string()],
        "ports": [{"containerPort": 8080 + i, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}, "limits": {"memory": "256Mi"}},
        "livenessProbe": {"tcpSocket": {"port": 8080 + i}, "periodSeconds": 10}
    })
}

/// A pod whose review is about `target` bytes: many containers (all named in
/// the container-names annotation, so each one gets instrumented and the
/// patch grows with the pod), many env vars, and one big annotation making
/// up the rest.
fn sized_review(target: usize) -> Vec<u8> {
    let build = |containers: usize, env_vars: usize, filler: usize| {
        let names: Vec<String> = (0..containers).map(|i| format!("app-{i}")).collect();
        let pod = json!({
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "bench-pod",
                "namespace": "cxtm",
                "labels": {"app": "bench-pod"},
                "annotations": {
                    "instrumentation.opentelemetry.io/container-names": names.join(","),
                    "bench.example.com/filler": "x".repeat(filler)
                }
            },
            "spec": {"containers": (0..containers).map(|i| container(i, env_vars)).collect::<Vec<_>>()}
        });
        serde_json::to_vec(&review_of(pod)).expect("serializes")
    };
    // Roughly a quarter of the bytes in env, a quarter in containers, the
    // rest in the annotation; the 1 KB pod is one container with no env.
    let (containers, env_vars) = match target {
        t if t <= 2_000 => (1, 0),
        t => ((t / 8_000).max(1), (t / 4 / 90 / (t / 8_000).max(1)).max(1)),
    };
    let bare = build(containers, env_vars, 0).len();
    build(containers, env_vars, target.saturating_sub(bare))
}

fn bench_inject(c: &mut Criterion) {
    let settings = Settings::from_config(&Config::default());
    let pod: Pod = serde_json::from_slice(&fixture("seed-pod.json")).expect("seed pod");
    let request = inject::Request {
        namespace: "cxtm",
        name: "cxtm-logstream",
        ..Default::default()
    };
    let injection = inject::inject(&pod, &settings, &request);
    assert!(!injection.patch.is_empty(), "the seed pod gets a patch");
    let mut group = c.benchmark_group("inject");
    group.bench_function("seed-pod", |b| {
        b.iter(|| inject::inject(black_box(&pod), black_box(&settings), black_box(&request)))
    });
    group.finish();
}

fn bench_review(c: &mut Criterion) {
    let reviewer = Reviewer::new(Config::default(), Arc::new(StaticView));
    let mut group = c.benchmark_group("review");
    let seed = fixture("review-seed-pod.json");
    let mut cases = vec![("seed".to_owned(), seed)];
    for (label, size) in [
        ("1KB", 1_000),
        ("10KB", 10_000),
        ("100KB", 100_000),
        ("1MB", 1_000_000),
    ] {
        cases.push((label.to_owned(), sized_review(size)));
    }
    for (label, body) in &cases {
        let reviewed = reviewer.review(body).expect("a review");
        assert_eq!(
            reviewed.decision.outcome.label(),
            "injected",
            "{label}: {:?}",
            reviewed.decision.reason
        );
        eprintln!(
            "review/{label}: request {} bytes, {} containers instrumented, {} patch ops, response {} bytes",
            body.len(),
            reviewed.decision.containers.len(),
            reviewed.decision.patch_ops,
            reviewed.body.len()
        );
        group.throughput(Throughput::Bytes(body.len() as u64));
        if body.len() >= 500_000 {
            group
                .sample_size(20)
                .measurement_time(Duration::from_secs(8));
        } else {
            group
                .sample_size(100)
                .measurement_time(Duration::from_secs(5));
        }
        group.bench_with_input(BenchmarkId::from_parameter(label), body, |b, body| {
            b.iter(|| reviewer.review(black_box(body)).expect("a review"))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_inject, bench_review);
criterion_main!(benches);

// The allocator of the otel-injector binary (src/main.rs), so that the
// figures here are the server's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
