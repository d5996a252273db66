//! The baseline for `scripts/bench` (issue 6): a bare rustls + hyper HTTP/1.1
//! server with the webhook's TLS settings (TLS 1.2/1.3, ring, ALPN
//! `http/1.1`, the same certificate) that reads each request body and
//! answers every request with one canned AdmissionReview response: the
//! bytes otel-injector answers for the seed pod, computed once at start by
//! `Reviewer::review`. No routing, no JSON, no logging, no metrics: what is
//! left is the cost of TLS, HTTP/1.1 and the tokio runtime, which is what
//! our figures are compared with.
//!
//! A `[[bench]]` with `harness = false` rather than an example so that
//! `cargo test` does not build it; `cargo bench` runs it with `--bench` and
//! no `--listen`, and then it returns at once.
//!
//! ```text
//! baseline_server --listen 127.0.0.1:P --tls-cert cert.pem --tls-key key.pem
//!                 [--review tests/fixtures/review-seed-pod.json] [--config FILE]
//! ```

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use otel_injector::config::Config;
use otel_injector::policy::StaticView;
use otel_injector::review::Reviewer;
use rustls::ServerConfig;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

struct Args {
    listen: SocketAddr,
    cert: String,
    key: String,
    review: String,
    config: Option<String>,
}

fn args() -> Option<Args> {
    let mut listen = None;
    let mut cert = None;
    let mut key = None;
    let mut review = format!(
        "{}/tests/fixtures/review-seed-pod.json",
        env!("CARGO_MANIFEST_DIR")
    );
    let mut config = None;
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--listen" => listen = it.next().map(|a| a.parse().expect("--listen ADDR:PORT")),
            "--tls-cert" => cert = it.next(),
            "--tls-key" => key = it.next(),
            "--review" => review = it.next().expect("--review FILE"),
            "--config" => config = it.next(),
            // `cargo bench` passes --bench (and maybe a filter): ignored.
            _ => {}
        }
    }
    Some(Args {
        listen: listen?,
        cert: cert.expect("--tls-cert PEM"),
        key: key.expect("--tls-key PEM"),
        review,
        config,
    })
}

fn tls_config(cert: &str, key: &str) -> ServerConfig {
    let certs = rustls_pemfile::certs(&mut std::io::BufReader::new(
        std::fs::File::open(cert).expect("--tls-cert"),
    ))
    .collect::<Result<Vec<_>, _>>()
    .expect("certificate PEM");
    let key = rustls_pemfile::private_key(&mut std::io::BufReader::new(
        std::fs::File::open(key).expect("--tls-key"),
    ))
    .expect("key PEM")
    .expect("a private key");
    let mut config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .expect("TLS versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("certificate and key");
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config
}

fn main() {
    let Some(args) = args() else {
        eprintln!("baseline_server: started by scripts/bench (needs --listen); nothing to do");
        return;
    };
    let review = std::fs::read(&args.review).expect("--review");
    // The same config as the webhook it is compared with (scripts/bench
    // --config), so that both answer with the same bytes.
    let config = match &args.config {
        Some(path) => Config::from_file(std::path::Path::new(path)).expect("--config"),
        None => Config::default(),
    };
    let canned = Reviewer::new(config, Arc::new(StaticView))
        .review(&review)
        .expect("an AdmissionReview")
        .body;
    let canned = hyper::body::Bytes::from(canned);
    let acceptor = TlsAcceptor::from(Arc::new(tls_config(&args.cert, &args.key)));
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(async move {
            let listener = TcpListener::bind(args.listen).await.expect("bind");
            eprintln!(
                "baseline_server: listening on {} ({} response bytes)",
                args.listen,
                canned.len()
            );
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new()).keep_alive(true);
            let http = Arc::new(http);
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let acceptor = acceptor.clone();
                let http = http.clone();
                let canned = canned.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                        let canned = canned.clone();
                        async move {
                            // Read the body like the webhook does, then answer.
                            let _ = req.into_body().collect().await;
                            Ok::<_, Infallible>(
                                Response::builder()
                                    .header("content-type", "application/json")
                                    .body(Full::new(canned))
                                    .expect("response"),
                            )
                        }
                    });
                    let _ = http.serve_connection(TokioIo::new(tls), service).await;
                });
            }
        });
}

// The allocator of the otel-injector binary (src/main.rs), so that the
// figures here are the server's.
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
