//! The pod creator for `scripts/bench-apiserver` (issue 6, item 5): creates
//! `--count` pods in a namespace of a real kube-apiserver, `--concurrency`
//! requests in flight, as fast as the API server answers, and prints one JSON
//! line with what it measured (pods/s, client-side latency, how many of the
//! created pods carry the injected init container, its own CPU time).
//!
//! Each worker first opens its keep-alive connection (a GET of the namespace,
//! not timed), then all of them POST pods named `<prefix>-<n>`, labelled
//! `otel-injector.io/bench=<prefix>`, built from a pod file (the seed pod).
//! No retries: a pod the API server refuses is counted as an error (with a
//! sample of the answer). After the creates, one LIST by that label counts
//! the stored pods and those with the init container exactly once.
//! With `--seconds S`, workers stop taking new pods after S seconds (for a
//! profile of a fixed length); `--count` still bounds the total.
//!
//! HTTP/1.1 (reqwest without its http2 feature), one connection per
//! worker, bearer token from `$APISERVER_TOKEN`, the cluster CA from `--ca`.
//! Only the URL given is contacted; proxies from the environment are ignored.
//!
//! A `[[bench]]` with `harness = false` so that `cargo test` does not build
//! it; `cargo bench` runs it with `--bench` and no `--url`, and then it
//! returns at once.
//!
//! ```text
//! APISERVER_TOKEN=... apiserver_load --url https://127.0.0.1:P --ca ca.crt
//!     --namespace cxtm --pod tests/fixtures/seed-pod.json --prefix b-r1
//!     [--count 1000] [--concurrency 32] [--seconds S]
//!     [--init-container opentelemetry-auto-instrumentation-python]
//! ```

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const LABEL: &str = "otel-injector.io/bench";

struct Args {
    url: String,
    ca: String,
    namespace: String,
    pod: String,
    prefix: String,
    count: usize,
    concurrency: usize,
    seconds: Option<f64>,
    init_container: String,
}

fn args() -> Option<Args> {
    let mut url = None;
    let mut ca = None;
    let mut namespace = "cxtm".to_owned();
    let mut pod = format!(
        "{}/tests/fixtures/seed-pod.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut prefix = "bench".to_owned();
    let mut count = 1000;
    let mut concurrency = 32;
    let mut seconds = None;
    let mut init_container = "opentelemetry-auto-instrumentation-python".to_owned();
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--url" => url = it.next(),
            "--ca" => ca = it.next(),
            "--namespace" => namespace = it.next().expect("--namespace NAME"),
            "--pod" => pod = it.next().expect("--pod FILE"),
            "--prefix" => prefix = it.next().expect("--prefix NAME"),
            "--count" => count = it.next().and_then(|n| n.parse().ok()).expect("--count N"),
            "--concurrency" => {
                concurrency = it
                    .next()
                    .and_then(|n| n.parse().ok())
                    .filter(|&n| n > 0)
                    .expect("--concurrency N (> 0)")
            }
            "--seconds" => {
                seconds = Some(
                    it.next()
                        .and_then(|n| n.parse::<f64>().ok())
                        .filter(|&n| n > 0.0)
                        .expect("--seconds S (> 0)"),
                )
            }
            "--init-container" => init_container = it.next().expect("--init-container NAME"),
            // `cargo bench` passes --bench (and maybe a filter): ignored.
            _ => {}
        }
    }
    Some(Args {
        url: url?.trim_end_matches('/').to_owned(),
        ca: ca.expect("--ca PEM"),
        namespace,
        pod,
        prefix,
        count,
        concurrency,
        seconds,
        init_container,
    })
}

/// user + system CPU time of this process, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the ")" that ends the command name: state is field 3, so
    // utime (14) and stime (15) are the 12th and 13th after it.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse::<u64>().ok())
        .sum()
}

fn has_init_container_once(pod: &Value, name: &str) -> bool {
    pod["spec"]["initContainers"]
        .as_array()
        .is_some_and(|c| c.iter().filter(|c| c["name"] == name).count() == 1)
}

/// Nearest-rank percentile of sorted values.
fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

#[derive(Default)]
struct WorkerResult {
    latencies_ms: Vec<f64>,
    created: usize,
    instrumented_in_response: usize,
    errors: Vec<String>,
}

fn main() {
    let Some(args) = args() else {
        return;
    };
    let token = std::env::var("APISERVER_TOKEN").expect("APISERVER_TOKEN (bearer token)");
    let ca = std::fs::read(&args.ca).expect("read --ca");
    let template: Value =
        serde_json::from_slice(&std::fs::read(&args.pod).expect("read --pod")).expect("--pod JSON");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let summary = runtime.block_on(run(args, token, ca, template));
    println!("{summary}");
}

async fn run(args: Args, token: String, ca: Vec<u8>, template: Value) -> Value {
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&ca).expect("--ca is a PEM certificate"),
        )
        .no_proxy()
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let auth = format!("Bearer {token}");
    let ns_url = format!("{}/api/v1/namespaces/{}", args.url, args.namespace);
    let pods_url = format!("{ns_url}/pods");

    // Open one connection per worker (all at once, so the pool holds
    // `concurrency` of them), untimed.
    let warmups = (0..args.concurrency).map(|_| {
        let req = client.get(&ns_url).header("Authorization", &auth);
        async move { req.send().await.and_then(|r| r.error_for_status()) }
    });
    for result in futures::future::join_all(warmups).await {
        if let Err(e) = result {
            panic!("GET {ns_url} failed: {e}");
        }
    }

    let next = Arc::new(AtomicUsize::new(0));
    let cpu0 = cpu_ticks();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..args.concurrency {
        let client = client.clone();
        let auth = auth.clone();
        let pods_url = pods_url.clone();
        let next = next.clone();
        let template = template.clone();
        let prefix = args.prefix.clone();
        let init = args.init_container.clone();
        let count = args.count;
        let deadline = args.seconds.map(|s| started + Duration::from_secs_f64(s));
        workers.push(tokio::spawn(async move {
            let mut out = WorkerResult::default();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count || deadline.is_some_and(|d| Instant::now() >= d) {
                    break;
                }
                let mut pod = template.clone();
                pod["metadata"]["name"] = json!(format!("{prefix}-{i:05}"));
                pod["metadata"]["labels"][LABEL] = json!(prefix);
                let body = serde_json::to_vec(&pod).expect("pod JSON");
                let t = Instant::now();
                let answer = client
                    .post(&pods_url)
                    .header("Authorization", &auth)
                    .header("Content-Type", "application/json")
                    .body(body)
                    .send()
                    .await;
                let result = match answer {
                    Ok(r) => {
                        let status = r.status();
                        r.bytes().await.map(|b| (status, b))
                    }
                    Err(e) => Err(e),
                };
                let ms = t.elapsed().as_secs_f64() * 1000.0;
                match result {
                    Ok((status, bytes)) if status.as_u16() == 201 => {
                        out.latencies_ms.push(ms);
                        out.created += 1;
                        let stored: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                        if has_init_container_once(&stored, &init) {
                            out.instrumented_in_response += 1;
                        }
                    }
                    Ok((status, bytes)) => {
                        let text = String::from_utf8_lossy(&bytes);
                        out.errors.push(format!(
                            "HTTP {status}: {}",
                            text.chars().take(300).collect::<String>()
                        ));
                    }
                    Err(e) => out.errors.push(format!("request failed: {e}")),
                }
            }
            out
        }));
    }
    let mut all = WorkerResult::default();
    for worker in workers {
        let r = worker.await.expect("worker task");
        all.latencies_ms.extend(r.latencies_ms);
        all.created += r.created;
        all.instrumented_in_response += r.instrumented_in_response;
        all.errors.extend(r.errors);
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu_ticks_used = cpu_ticks().saturating_sub(cpu0);

    // What the API server stored.
    let list: Value = client
        .get(&pods_url)
        .query(&[("labelSelector", format!("{LABEL}={}", args.prefix))])
        .header("Authorization", &auth)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .expect("LIST pods")
        .json()
        .await
        .expect("LIST pods JSON");
    let items = list["items"].as_array().cloned().unwrap_or_default();
    let stored_instrumented = items
        .iter()
        .filter(|p| has_init_container_once(p, &args.init_container))
        .count();

    let mut lat = all.latencies_ms;
    lat.sort_by(f64::total_cmp);
    let mean = if lat.is_empty() {
        f64::NAN
    } else {
        lat.iter().sum::<f64>() / lat.len() as f64
    };
    json!({
        "prefix": args.prefix,
        "count": args.count,
        "concurrency": args.concurrency,
        "created": all.created,
        "errors": all.errors.len(),
        "error_samples": all.errors.iter().take(5).collect::<Vec<_>>(),
        "wall_s": wall,
        "pods_per_s": all.created as f64 / wall,
        "latency_ms": {
            "p50": percentile(&lat, 0.50),
            "p90": percentile(&lat, 0.90),
            "p99": percentile(&lat, 0.99),
            "max": lat.last().copied().unwrap_or(f64::NAN),
            "mean": mean,
        },
        "instrumented_in_response": all.instrumented_in_response,
        "stored": items.len(),
        "stored_instrumented": stored_instrumented,
        "client_cpu_ticks": cpu_ticks_used,
    })
}
