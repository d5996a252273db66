//! The real server on a loopback port over TLS: reviews in, patches out, bad
//! input answered clearly, and the server still serving afterwards.

mod common;

use common::*;
use otel_injector::config::Config;
use serde_json::{Value, json};

#[tokio::test]
async fn seed_pod_review_over_tls_is_patched_to_the_seed_configuration() {
    let server = TestServer::start(Config::default()).await;
    let pod = fixture("seed-pod.json");
    for path in ["/mutate", "/mutate-v1-pod"] {
        let (status, body) = server
            .post_json(path, &review(&pod, "cxtm", "uid-seed"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(body["kind"], "AdmissionReview");
        assert_eq!(body["response"]["uid"], "uid-seed");
        assert_eq!(body["response"]["allowed"], true);
        assert!(
            body["response"]["patch"].is_string(),
            "patch must be base64 text as Kubernetes documents it: {body}"
        );
        let mutated = apply_response(&pod, &body);
        assert_eq!(mutated["spec"], seed_expected_by_default()["spec"]);
    }
}

#[tokio::test]
async fn out_of_scope_and_non_create_requests_are_allowed_without_patch() {
    let server = TestServer::start(Config::default()).await;
    let pod = fixture("seed-pod.json");
    let (status, body) = server
        .post_json("/mutate", &review(&pod, "default", "u-other"))
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none(), "{body}");

    let mut update = review(&pod, "cxtm", "u-update");
    update["request"]["operation"] = json!("UPDATE");
    update["request"]["oldObject"] = pod.clone();
    let (status, body) = server.post_json("/mutate", &update).await;
    assert_eq!(status, 200);
    assert_eq!(body["response"]["uid"], "u-update");
    assert!(body["response"].get("patch").is_none(), "{body}");
}

/// Posts `review` to /mutate and expects a 400 whose error says `says`.
async fn assert_bad_request(server: &TestServer, review: &Value, says: &str) {
    let (status, body) = server.post_json("/mutate", review).await;
    assert_eq!(status, 400, "{body}");
    assert!(
        body["error"].as_str().is_some_and(|e| e.contains(says)),
        "{body}"
    );
}

#[tokio::test]
async fn bad_input_gets_a_clear_answer_and_the_server_keeps_serving() {
    let server = TestServer::start(Config::default()).await;
    let (status, body) = server
        .post_raw("/mutate", b"{\"apiVersion\": ".to_vec(), "application/json")
        .await;
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .is_some_and(|e| e.contains("not a JSON AdmissionReview")),
        "{body}"
    );

    let v1beta1 = json!({"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview", "request": {"uid": "x"}});
    assert_bad_request(&server, &v1beta1, "v1beta1").await;
    assert_bad_request(&server, &json!({"apiVersion": "v1", "kind": "Pod"}), "Pod").await;
    let no_request = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"});
    assert_bad_request(&server, &no_request, "no request").await;

    let (status, _) = server
        .post_raw("/mutate", b"<xml/>".to_vec(), "application/xml")
        .await;
    assert_eq!(status, 415);

    let (status, body) = server
        .post_raw("/mutate", vec![b' '; 9 * 1024 * 1024], "application/json")
        .await;
    assert_eq!(status, 413, "{body}");

    // A well-formed review whose pod does not decode: allowed, with a warning naming the problem.
    let mut odd = review(&fixture("seed-pod.json"), "cxtm", "u-odd");
    odd["request"]["object"]["spec"]["containers"] = json!("not-a-list");
    let (status, body) = server.post_json("/mutate", &odd).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["response"]["uid"], "u-odd");
    assert_eq!(body["response"]["allowed"], true);
    assert!(body["response"].get("patch").is_none());
    let warning = body["response"]["warnings"][0].as_str().unwrap_or_default();
    assert!(warning.contains("could not decode"), "{body}");

    let response = server
        .client
        .get(format!("{}/healthz", server.base))
        .send()
        .await
        .expect("healthz");
    assert_eq!(response.status(), 200);
    let (status, body) = server
        .post_json(
            "/mutate",
            &review(&fixture("seed-pod.json"), "cxtm", "after"),
        )
        .await;
    assert_eq!(status, 200);
    assert!(body["response"]["patch"].is_string());

    let metrics = server.metrics.encode();
    assert!(
        metrics.contains("otel_injector_bad_requests_total{reason=\"too-large\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("otel_injector_admission_requests_total{outcome=\"injected\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("otel_injector_admission_requests_total{outcome=\"error\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn keep_alive_connection_serves_many_reviews() {
    let server = TestServer::start(Config::default()).await;
    let pod = fixture("seed-pod.json");
    for i in 0..50 {
        let uid = format!("u-{i}");
        let (status, body): (u16, Value) = server
            .post_json("/mutate", &review(&pod, "cxtm", &uid))
            .await;
        assert_eq!(status, 200);
        assert_eq!(body["response"]["uid"], uid.as_str());
    }
}

async fn raw_tls(server: &TestServer) -> tokio_rustls::client::TlsStream<tokio::net::TcpStream> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in otel_injector::tls::parse_certs(
        &std::fs::read(&server.certs.ca).expect("ca"),
        &server.certs.ca,
    )
    .expect("pem")
    {
        roots.add(cert).expect("root");
    }
    let mut config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let port: u16 = server
        .base
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("port");
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(
            rustls::pki_types::ServerName::try_from("localhost").expect("name"),
            tcp,
        )
        .await
        .expect("handshake")
}

/// Trickled headers are cut after REQUEST_HEADER_TIMEOUT, while an idle
/// keep-alive connection (as the API server keeps) survives far longer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_are_cut_but_idle_keep_alive_connections_live() {
    use std::time::{Duration, Instant};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(Config::default()).await;
    let body =
        serde_json::to_vec(&review(&fixture("seed-pod.json"), "cxtm", "idle")).expect("json");
    let request = |body: &[u8]| {
        let mut r = format!("POST /mutate HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    };
    // An idle keep-alive connection: one request now, another after the slow one is cut.
    let mut idle = raw_tls(&server).await;
    idle.write_all(&request(&body))
        .await
        .expect("first request");
    let mut buf = vec![0u8; 64 * 1024];
    let n = idle.read(&mut buf).await.expect("first response");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "first response"
    );

    let mut slow = raw_tls(&server).await;
    slow.write_all(b"POST /mutate HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("start");
    let started = Instant::now();
    let limit = otel_injector::conn_watch::REQUEST_HEADER_TIMEOUT + Duration::from_secs(3);
    let mut cut = false;
    while started.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(250)).await;
        if slow.write_all(b"X-Slow: 1\r\n").await.is_err() {
            cut = true;
            break;
        }
        let mut probe = [0u8; 1];
        if let Ok(Ok(0)) =
            tokio::time::timeout(Duration::from_millis(1), slow.read(&mut probe)).await
        {
            cut = true;
            break;
        }
    }
    let elapsed = started.elapsed();
    assert!(cut, "slow headers still open after {elapsed:?}");
    // The idle connection must really outlive the header limit before it is
    // used again, whenever the slow one was cut.
    tokio::time::sleep(
        (otel_injector::conn_watch::REQUEST_HEADER_TIMEOUT + Duration::from_millis(500))
            .saturating_sub(elapsed),
    )
    .await;

    // The idle connection, unused for longer than the header limit, still serves.
    idle.write_all(&request(&body))
        .await
        .expect("second request on the idle connection");
    let n = idle.read(&mut buf).await.expect("second response");
    assert!(
        String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
        "idle keep-alive connection was closed"
    );
}
