//! Operating the webhook: certificate rotation while serving, graceful
//! shutdown under load, readiness and metrics on the admin port.

mod common;

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use common::cluster::{http_get, spawn_server};
use common::*;
use otel_injector::config::Config;
use serde_json::Value;

/// The leaf certificate a fresh TLS connection to `port` is served.
async fn served_certificate(port: u16, roots: &[&Path]) -> Vec<u8> {
    let mut store = rustls::RootCertStore::empty();
    for root in roots {
        for cert in otel_injector::tls::parse_certs(&std::fs::read(root).expect("ca"), root)
            .expect("ca pem")
        {
            store.add(cert).expect("root");
        }
    }
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(store)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
    let tls = connector.connect(name, tcp).await.expect("handshake");
    tls.get_ref().1.peer_certificates().expect("peer certs")[0].to_vec()
}

fn first_cert_der(path: &Path) -> Vec<u8> {
    otel_injector::tls::parse_certs(&std::fs::read(path).expect("cert"), path).expect("pem")[0]
        .to_vec()
}

/// Lays out certificates the way a Kubernetes Secret volume does:
/// `tls.crt -> ..data/tls.crt`, `..data -> ..<version>`; a rotation swaps `..data`.
fn secret_volume_swap(dir: &Path, version: &str, bundle: &otel_injector::certs::Bundle) {
    let versioned = dir.join(format!("..{version}"));
    std::fs::create_dir_all(&versioned).expect("versioned dir");
    std::fs::write(versioned.join("tls.crt"), &bundle.cert_pem).expect("cert");
    std::fs::write(versioned.join("tls.key"), &bundle.key_pem).expect("key");
    let tmp = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(format!("..{version}"), &tmp).expect("symlink");
    std::fs::rename(&tmp, dir.join("..data")).expect("atomic swap");
    for file in ["tls.crt", "tls.key"] {
        let link = dir.join(file);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(format!("..data/{file}"), &link).expect("file symlink");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn certificate_rotates_under_load_without_a_failed_request() {
    otel_injector::tls::install_crypto_provider();
    let names = otel_injector::certs::service_names("otel-injector", "otel-injector");
    let dir = tempfile::tempdir().expect("tempdir");
    let volume = dir.path().join("secret");
    std::fs::create_dir_all(&volume).expect("volume");
    let first = otel_injector::certs::generate(&names).expect("first");
    let second = otel_injector::certs::generate(&names).expect("second");
    let ca1 = dir.path().join("ca1.crt");
    let ca2 = dir.path().join("ca2.crt");
    std::fs::write(&ca1, &first.ca_cert_pem).expect("ca1");
    std::fs::write(&ca2, &second.ca_cert_pem).expect("ca2");
    secret_volume_swap(&volume, "v1", &first);

    let store = Arc::new(
        otel_injector::tls::CertStore::load(volume.join("tls.crt"), volume.join("tls.key"))
            .expect("load"),
    );
    let tls = otel_injector::tls::server_config(store.clone(), None).expect("tls");
    let metrics = Arc::new(otel_injector::metrics::Metrics::new());
    let reviewer = otel_injector::review::Reviewer::new(
        Config::default(),
        Arc::new(otel_injector::policy::StaticView),
    );
    let app = otel_injector::server::router(otel_injector::server::AppState {
        reviewer,
        metrics: metrics.clone(),
        body_limit: otel_injector::server::DEFAULT_BODY_LIMIT,
        events: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(otel_injector::server::serve_tls(
        listener,
        tokio_rustls::TlsAcceptor::from(Arc::new(tls)),
        app,
        async move {
            let _ = stop_rx.await;
        },
        Duration::from_secs(5),
    ));
    let watcher = tokio::spawn(otel_injector::run::watch_certs(
        store.clone(),
        metrics.clone(),
        Duration::from_millis(100),
    ));
    assert_eq!(
        served_certificate(port, &[&ca1]).await,
        first_cert_der(&volume.join("tls.crt"))
    );

    // Clients trusting both CAs keep sending, some on new connections, throughout.
    let body =
        serde_json::to_vec(&review(&fixture("seed-pod.json"), "cxtm", "rotate")).expect("json");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut clients = Vec::new();
    for worker in 0..4 {
        let (stop, ok, failed, body) = (stop.clone(), ok.clone(), failed.clone(), body.clone());
        let (ca1, ca2) = (
            std::fs::read(&ca1).expect("ca1"),
            std::fs::read(&ca2).expect("ca2"),
        );
        clients.push(tokio::spawn(async move {
            let build = || {
                reqwest::Client::builder()
                    .add_root_certificate(reqwest::Certificate::from_pem(&ca1).expect("ca1"))
                    .add_root_certificate(reqwest::Certificate::from_pem(&ca2).expect("ca2"))
                    .use_rustls_tls()
                    .http1_only()
                    .build()
                    .expect("client")
            };
            let mut client = build();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                if worker % 2 == 0 && n.is_multiple_of(10) {
                    client = build(); // a new TLS handshake
                }
                let result = client
                    .post(format!("https://localhost:{port}/mutate"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                match result {
                    Ok(r) if r.status() == 200 => ok.fetch_add(1, Ordering::Relaxed),
                    _ => failed.fetch_add(1, Ordering::Relaxed),
                };
            }
        }));
    }
    // Enough traffic on either side of the swap to mean something: counted,
    // not timed (a slow machine only makes this wait longer).
    let answered_at_least = |n: u64| {
        let ok = ok.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(60);
            while ok.load(Ordering::Relaxed) < n {
                assert!(Instant::now() < deadline, "fewer than {n} answers in 60 s");
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    answered_at_least(20).await;
    secret_volume_swap(&volume, "v2", &second);
    let new_der = first_cert_der(&volume.join("tls.crt"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while served_certificate(port, &[&ca1, &ca2]).await != new_der {
        assert!(Instant::now() < deadline, "new certificate never served");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    answered_at_least(ok.load(Ordering::Relaxed) + 20).await;

    // A bad pair (key of another certificate) is refused; the good one stays.
    let mut broken = otel_injector::certs::generate(&names).expect("third");
    broken.key_pem = first.key_pem.clone();
    secret_volume_swap(&volume, "v3", &broken);
    let deadline = Instant::now() + Duration::from_secs(60);
    while !metrics
        .encode()
        .contains("otel_injector_certificate_reloads_total{result=\"failure\"} 1")
    {
        assert!(
            Instant::now() < deadline,
            "bad pair not detected: {}",
            metrics.encode()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        served_certificate(port, &[&ca1, &ca2]).await,
        new_der,
        "last good certificate kept"
    );

    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.await.expect("client task");
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    assert_eq!(failed, 0, "{failed} failed requests of {}", ok + failed);
    assert!(
        metrics
            .encode()
            .contains("otel_injector_certificate_reloads_total{result=\"success\"} 1"),
        "{}",
        metrics.encode()
    );
    watcher.abort();
    let _ = stop_tx.send(());
    let _ = server.await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_drains_without_a_failed_request() {
    let mut server = spawn_server(&["--shutdown-delay-seconds", "1", "--drain-seconds", "5"]);
    let (port, admin) = (server.port, server.admin_port);
    let client = client_for(&server.certs.ca);
    let body =
        serde_json::to_vec(&review(&fixture("seed-pod.json"), "cxtm", "drain")).expect("json");
    // Clients behave like the API server behind a Service: they stop sending
    // new requests once the endpoint is not ready.
    let ready = Arc::new(AtomicBool::new(true));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, body, ready, ok, failed) = (
            client.clone(),
            body.clone(),
            ready.clone(),
            ok.clone(),
            failed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            while ready.load(Ordering::Relaxed) {
                let r = client
                    .post(format!("https://127.0.0.1:{port}/mutate"))
                    .header("content-type", "application/json")
                    .body(body.clone())
                    .send()
                    .await;
                let good = match r {
                    Ok(r) if r.status() == 200 => r.json::<Value>().await.is_ok(),
                    _ => false,
                };
                if good {
                    ok.fetch_add(1, Ordering::Relaxed);
                } else {
                    failed.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_before = ok.load(Ordering::Relaxed);
    server.sigterm();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match http_get(admin, "/readyz") {
            Some((503, body)) => {
                assert!(body.contains("draining"), "{body}");
                break;
            }
            _ => {
                assert!(
                    Instant::now() < deadline,
                    "readiness did not go false after SIGTERM"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    ready.store(false, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client");
    }
    assert_eq!(server.wait(), Some(0), "clean exit after drain");
    assert!(
        ok.load(Ordering::Relaxed) > sent_before,
        "requests kept flowing"
    );
    assert_eq!(
        failed.load(Ordering::Relaxed),
        0,
        "failed requests during shutdown"
    );
}

#[tokio::test]
async fn admin_port_reports_readiness_and_exact_metrics() {
    let mut server = spawn_server(&["--shutdown-delay-seconds", "0"]);
    let (port, admin) = (server.port, server.admin_port);
    assert_eq!(http_get(admin, "/livez").map(|(c, _)| c), Some(200));
    let client = client_for(&server.certs.ca);
    let seed = fixture("seed-pod.json");
    let post = |body: Value| {
        let client = client.clone();
        async move {
            client
                .post(format!("https://127.0.0.1:{port}/mutate"))
                .json(&body)
                .send()
                .await
                .expect("send")
                .status()
                .as_u16()
        }
    };
    for i in 0..3 {
        assert_eq!(post(review(&seed, "cxtm", &format!("a{i}"))).await, 200);
    }
    assert_eq!(post(review(&seed, "default", "b")).await, 200);
    assert_eq!(post(serde_json::json!({"kind": "nope"})).await, 400);
    let (_, metrics) = http_get(admin, "/metrics").expect("metrics");
    for line in [
        "otel_injector_admission_requests_total{outcome=\"injected\"} 3",
        "otel_injector_admission_requests_total{outcome=\"out-of-scope\"} 1",
        "otel_injector_bad_requests_total{reason=\"not-a-review\"} 1",
        "otel_injector_admission_duration_seconds_count 4",
        "otel_injector_patch_bytes_count 3",
    ] {
        assert!(metrics.contains(line), "missing {line:?} in\n{metrics}");
    }
    let expiry = metrics
        .lines()
        .find_map(|l| l.strip_prefix("otel_injector_certificate_expiry_timestamp_seconds "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .expect("expiry metric");
    assert!(
        expiry > 1.8e9,
        "certificate notAfter (2030) expected, got {expiry}"
    );
    assert_eq!(server.terminate(), Some(0));
}

/// kubernetes#127335: the API server keeps reusing a kept-alive connection to
/// a terminating webhook pod. Once the server is draining (after SIGTERM,
/// during the shutdown delay), every answer says `Connection: close` and the
/// connection ends after it, so the API server's next review goes out on a new
/// connection, to a pod still in the Service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn answers_while_draining_close_their_connection() {
    // The delay is the window in which the three answers below must fall:
    // wide, so that a loaded machine does not close it first.
    let mut server = spawn_server(&["--shutdown-delay-seconds", "8", "--drain-seconds", "5"]);
    let (port, admin) = (server.port, server.admin_port);
    let client = client_for(&server.certs.ca);
    let body =
        serde_json::to_vec(&review(&fixture("seed-pod.json"), "cxtm", "close")).expect("json");
    let post = || {
        client
            .post(format!("https://127.0.0.1:{port}/mutate"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
    };
    let connection = |r: &reqwest::Response| {
        r.headers()
            .get("connection")
            .map(|v| v.to_str().unwrap_or_default().to_ascii_lowercase())
    };
    let before = post().await.expect("a review before SIGTERM");
    assert_eq!(before.status(), 200);
    assert_ne!(
        connection(&before).as_deref(),
        Some("close"),
        "kept alive while serving"
    );
    server.sigterm();
    let deadline = Instant::now() + Duration::from_secs(8);
    while !matches!(http_get(admin, "/readyz"), Some((503, _))) {
        assert!(
            Instant::now() < deadline,
            "readiness did not go false after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..3 {
        let during = post().await.expect("a review while draining");
        assert_eq!(during.status(), 200, "still answered while draining");
        assert_eq!(
            connection(&during).as_deref(),
            Some("close"),
            "answer {i} while draining closes its connection"
        );
        let answer: Value = during.json().await.expect("an AdmissionReview");
        assert_eq!(answer["response"]["allowed"], true);
    }
    assert_eq!(server.wait(), Some(0), "clean exit after drain");
}

/// `--max-requests-per-connection`: the Nth answer on a connection says
/// `Connection: close`, and the client's next request opens a new connection
/// (where the API server picks a Service endpoint again).
#[tokio::test]
async fn connections_close_after_max_requests() {
    let server = spawn_server(&["--max-requests-per-connection", "3"]);
    let port = server.port;
    let client = client_for(&server.certs.ca);
    let body = serde_json::to_vec(&review(&fixture("seed-pod.json"), "cxtm", "cap")).expect("json");
    let mut closes = Vec::new();
    for _ in 0..7 {
        let r = client
            .post(format!("https://127.0.0.1:{port}/mutate"))
            .header("content-type", "application/json")
            .body(body.clone())
            .send()
            .await
            .expect("a review");
        assert_eq!(r.status(), 200);
        closes.push(
            r.headers()
                .get("connection")
                .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close")),
        );
        r.bytes().await.expect("body");
    }
    assert_eq!(
        closes,
        [false, false, true, false, false, true, false],
        "every third answer on a connection closes it"
    );
}
