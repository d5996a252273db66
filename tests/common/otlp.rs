//! A real OTLP/HTTP receiver on loopback, for tests that assert on what an
//! instrumented application really exports. It decodes with the OpenTelemetry
//! project's generated messages (`opentelemetry-proto`), accepts
//! `application/x-protobuf` and `application/json` bodies, plain or
//! `Content-Encoding: gzip`, and keeps a flattened copy of every span, metric
//! and log record. The tests are synchronous: the server runs on its own
//! thread and stops when the [`OtlpReceiver`] is dropped.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::Read;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::logs::v1::{
    ExportLogsServiceRequest, ExportLogsServiceResponse,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use prost::Message;
use serde::de::DeserializeOwned;

/// Largest request body, compressed or not, the receiver takes.
const BODY_LIMIT: usize = 64 << 20;

/// One span, with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// Resource attributes (`service.name`, ...), values rendered as text.
    pub resource: BTreeMap<String, String>,
    /// Instrumentation scope name.
    pub scope: String,
    pub name: String,
    /// The proto enum name: `SPAN_KIND_SERVER`, `SPAN_KIND_CLIENT`, ...
    pub kind: String,
    /// Lower-case hex, empty when absent.
    pub trace_id: String,
    pub span_id: String,
    pub parent_span_id: String,
    pub attributes: BTreeMap<String, String>,
}

/// One metric (its data points are not kept), with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct Metric {
    pub resource: BTreeMap<String, String>,
    pub scope: String,
    pub name: String,
}

/// One log record, with its resource and scope.
#[derive(Debug, Clone, PartialEq)]
pub struct LogRecord {
    pub resource: BTreeMap<String, String>,
    pub scope: String,
    /// The body rendered as text (see [`render`]).
    pub body: String,
    pub severity_text: String,
    pub attributes: BTreeMap<String, String>,
    /// Lower-case hex, empty when the record has no trace context.
    pub trace_id: String,
    pub span_id: String,
}

#[derive(Default)]
struct Received {
    requests: usize,
    spans: Vec<Span>,
    metrics: Vec<Metric>,
    logs: Vec<LogRecord>,
    errors: Vec<String>,
}

type Shared = Arc<Mutex<Received>>;

fn lock(shared: &Shared) -> MutexGuard<'_, Received> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// An OTLP/HTTP receiver serving `POST /v1/traces`, `/v1/metrics` and
/// `/v1/logs` on `127.0.0.1` at a free port, until dropped.
/// PEM files for [`OtlpReceiver::start_tls`].
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
    /// Require client certificates signed by this CA.
    pub client_ca: Option<std::path::PathBuf>,
}

pub struct OtlpReceiver {
    endpoint: String,
    port: u16,
    received: Shared,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl OtlpReceiver {
    /// Binds a free loopback port and starts serving on a thread of its own.
    pub fn start() -> Self {
        Self::start_on("127.0.0.1:0", None)
    }

    /// Serves OTLP/HTTP over TLS on `addr` (port 0: a free one) with the
    /// product's own server config (`otel_injector::tls::server_config`): the
    /// certificate and key in `tls`, and, with a client CA, only to clients
    /// that present a certificate it signed. A failed handshake is recorded
    /// in [`OtlpReceiver::errors`].
    pub fn start_tls(addr: &str, tls: &TlsFiles) -> Self {
        otel_injector::tls::install_crypto_provider();
        let store = otel_injector::tls::CertStore::load(tls.cert.clone(), tls.key.clone())
            .expect("the receiver's certificate");
        let config = otel_injector::tls::server_config(Arc::new(store), tls.client_ca.as_deref())
            .expect("the receiver's TLS config");
        Self::start_on(addr, Some(Arc::new(config)))
    }

    fn start_on(addr: &str, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let std_listener = std::net::TcpListener::bind(addr).expect("bind the OTLP receiver");
        std_listener
            .set_nonblocking(true)
            .expect("non-blocking listener");
        let local = std_listener.local_addr().expect("local address");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("OTLP receiver runtime");
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(std_listener).expect("tokio listener")
        };
        let received = Shared::default();
        let app = Router::new()
            .route("/v1/traces", post(traces))
            .route("/v1/metrics", post(metrics))
            .route("/v1/logs", post(logs))
            .fallback(not_found)
            .layer(DefaultBodyLimit::max(BODY_LIMIT))
            .with_state(received.clone());
        let (shutdown, stop) = tokio::sync::oneshot::channel::<()>();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let errors = received.clone();
        let thread = std::thread::Builder::new()
            .name(format!("otlp-receiver-{}", local.port()))
            .spawn(move || {
                // Dropping the runtime at the end aborts the open connections.
                runtime.block_on(async move {
                    match tls {
                        None => tokio::select! {
                            _ = axum::serve(listener, app) => {}
                            _ = stop => {}
                        },
                        Some(config) => tokio::select! {
                            () = serve_tls(listener, app, config, errors) => {}
                            _ = stop => {}
                        },
                    }
                });
            })
            .expect("spawn the OTLP receiver thread");
        OtlpReceiver {
            endpoint: format!("{scheme}://{local}"),
            port: local.port(),
            received,
            shutdown: Some(shutdown),
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT` (`https://ADDR:PORT` with TLS), the value for
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` (exporters append `/v1/traces`, ...).
    pub fn endpoint(&self) -> String {
        self.endpoint.clone()
    }

    /// Every span received so far, in arrival order.
    pub fn spans(&self) -> Vec<Span> {
        lock(&self.received).spans.clone()
    }

    /// Every metric received so far (one entry per metric per export).
    pub fn metrics(&self) -> Vec<Metric> {
        lock(&self.received).metrics.clone()
    }

    /// Every log record received so far.
    pub fn logs(&self) -> Vec<LogRecord> {
        lock(&self.received).logs.clone()
    }

    /// Why requests were refused: undecodable bodies, unsupported content
    /// types or encodings, unknown paths; each prefixed with the path.
    pub fn errors(&self) -> Vec<String> {
        lock(&self.received).errors.clone()
    }

    /// HTTP requests answered, on any path, decoded or not.
    pub fn requests(&self) -> usize {
        lock(&self.received).requests
    }

    /// The distinct `service.name` resource attributes across all signals.
    pub fn services(&self) -> BTreeSet<String> {
        let received = lock(&self.received);
        let resources = received
            .spans
            .iter()
            .map(|s| &s.resource)
            .chain(received.metrics.iter().map(|m| &m.resource))
            .chain(received.logs.iter().map(|l| &l.resource));
        resources
            .filter_map(|r| r.get("service.name").cloned())
            .collect()
    }

    /// A one-line account of what was received, for failure messages.
    pub fn summary(&self) -> String {
        let services = self.services();
        let received = lock(&self.received);
        format!(
            "{} requests, {} spans, {} metrics, {} log records, services {:?}, errors {:?}",
            received.requests,
            received.spans.len(),
            received.metrics.len(),
            received.logs.len(),
            services,
            received.errors,
        )
    }

    /// Polls `f` every 50 ms until it returns `Some`; panics naming `what`,
    /// the timeout and a [`summary`](Self::summary) when `timeout` passes.
    pub fn wait_for<T>(
        &self,
        what: &str,
        timeout: Duration,
        mut f: impl FnMut(&Self) -> Option<T>,
    ) -> T {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(value) = f(self) {
                return value;
            }
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {what}; received: {}",
                    self.summary()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One task per connection: the TLS handshake, then HTTP/1.1 (what the
/// Python exporters speak) into the same router as the plain receiver.
async fn serve_tls(
    listener: tokio::net::TcpListener,
    app: Router,
    config: Arc<rustls::ServerConfig>,
    received: Shared,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(config);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            continue;
        };
        let (acceptor, app, received) = (acceptor.clone(), app.clone(), received.clone());
        tokio::spawn(async move {
            match acceptor.accept(tcp).await {
                Ok(stream) => {
                    let service = hyper_util::service::TowerToHyperService::new(app);
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                }
                Err(e) => lock(&received)
                    .errors
                    .push(format!("TLS handshake from {peer}: {e}")),
            }
        });
    }
}

async fn traces(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    export(
        &shared,
        "/v1/traces",
        &headers,
        &body,
        |received, request| {
            add_traces(received, request);
            ExportTraceServiceResponse::default()
        },
    )
}

async fn metrics(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    export(
        &shared,
        "/v1/metrics",
        &headers,
        &body,
        |received, request| {
            add_metrics(received, request);
            ExportMetricsServiceResponse::default()
        },
    )
}

async fn logs(State(shared): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    export(&shared, "/v1/logs", &headers, &body, |received, request| {
        add_logs(received, request);
        ExportLogsServiceResponse::default()
    })
}

async fn not_found(State(shared): State<Shared>, method: Method, uri: Uri) -> Response {
    let mut received = lock(&shared);
    received.requests += 1;
    received
        .errors
        .push(format!("{method} {uri}: no such path"));
    StatusCode::NOT_FOUND.into_response()
}

#[derive(Clone, Copy)]
enum Format {
    Protobuf,
    Json,
}

/// Decodes one export request, stores it with `store` and answers with the
/// response message in the request's format; refusals are recorded.
fn export<Req, Resp>(
    shared: &Shared,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    store: impl FnOnce(&mut Received, Req) -> Resp,
) -> Response
where
    Req: Message + Default + DeserializeOwned,
    Resp: Message,
{
    let decoded = format_of(headers).and_then(|format| {
        let body = decompress(headers, body).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
        let request = match format {
            Format::Protobuf => Req::decode(body.as_slice()).map_err(|e| e.to_string()),
            Format::Json => serde_json::from_slice(&body).map_err(|e| e.to_string()),
        };
        request
            .map(|request| (format, request))
            .map_err(|e| (StatusCode::BAD_REQUEST, format!("undecodable body: {e}")))
    });
    let mut received = lock(shared);
    received.requests += 1;
    match decoded {
        Ok((Format::Protobuf, request)) => {
            let response = store(&mut received, request);
            (
                [(header::CONTENT_TYPE, "application/x-protobuf")],
                response.encode_to_vec(),
            )
                .into_response()
        }
        Ok((Format::Json, request)) => {
            store(&mut received, request);
            ([(header::CONTENT_TYPE, "application/json")], "{}").into_response()
        }
        Err((status, error)) => {
            received.errors.push(format!("POST {path}: {error}"));
            (status, error).into_response()
        }
    }
}

fn header_value(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers
        .get(name)
        .map(|v| v.to_str().unwrap_or("<not text>"))
}

fn format_of(headers: &HeaderMap) -> Result<Format, (StatusCode, String)> {
    let content_type = header_value(headers, header::CONTENT_TYPE).unwrap_or("");
    let media_type = content_type.split(';').next().unwrap_or("").trim();
    match media_type.to_ascii_lowercase().as_str() {
        "application/x-protobuf" => Ok(Format::Protobuf),
        "application/json" => Ok(Format::Json),
        _ => Err((
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("unsupported Content-Type {content_type:?}"),
        )),
    }
}

fn decompress(headers: &HeaderMap, body: &[u8]) -> Result<Vec<u8>, String> {
    match header_value(headers, header::CONTENT_ENCODING).map(str::trim) {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some(encoding) if encoding.eq_ignore_ascii_case("gzip") => {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(body)
                .take(BODY_LIMIT as u64)
                .read_to_end(&mut out)
                .map_err(|e| format!("bad gzip body: {e}"))?;
            Ok(out)
        }
        Some(other) => Err(format!("unsupported Content-Encoding {other:?}")),
    }
}

fn add_traces(received: &mut Received, request: ExportTraceServiceRequest) {
    for resource_spans in request.resource_spans {
        let resource = resource_attributes(resource_spans.resource.as_ref());
        for scope_spans in resource_spans.scope_spans {
            let scope = scope_name(scope_spans.scope.as_ref());
            for span in scope_spans.spans {
                let kind = SpanKind::try_from(span.kind)
                    .map(|k| k.as_str_name().to_owned())
                    .unwrap_or_else(|_| format!("SPAN_KIND_{}", span.kind));
                received.spans.push(Span {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    name: span.name,
                    kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                });
            }
        }
    }
}

fn add_metrics(received: &mut Received, request: ExportMetricsServiceRequest) {
    for resource_metrics in request.resource_metrics {
        let resource = resource_attributes(resource_metrics.resource.as_ref());
        for scope_metrics in resource_metrics.scope_metrics {
            let scope = scope_name(scope_metrics.scope.as_ref());
            for metric in scope_metrics.metrics {
                received.metrics.push(Metric {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    name: metric.name,
                });
            }
        }
    }
}

fn add_logs(received: &mut Received, request: ExportLogsServiceRequest) {
    for resource_logs in request.resource_logs {
        let resource = resource_attributes(resource_logs.resource.as_ref());
        for scope_logs in resource_logs.scope_logs {
            let scope = scope_name(scope_logs.scope.as_ref());
            for record in scope_logs.log_records {
                received.logs.push(LogRecord {
                    resource: resource.clone(),
                    scope: scope.clone(),
                    body: render(record.body.as_ref()),
                    severity_text: record.severity_text,
                    attributes: attributes(&record.attributes),
                    trace_id: hex(&record.trace_id),
                    span_id: hex(&record.span_id),
                });
            }
        }
    }
}

fn resource_attributes(resource: Option<&Resource>) -> BTreeMap<String, String> {
    resource.map_or_else(BTreeMap::new, |r| attributes(&r.attributes))
}

fn scope_name(scope: Option<&InstrumentationScope>) -> String {
    scope.map_or_else(String::new, |s| s.name.clone())
}

fn attributes(pairs: &[KeyValue]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|kv| (kv.key.clone(), render(kv.value.as_ref())))
        .collect()
}

/// An attribute value or log body as text: strings as they are, numbers and
/// booleans as Rust prints them, arrays `[a, b]`, maps `{k: v}`, bytes in hex;
/// empty when absent.
pub fn render(value: Option<&AnyValue>) -> String {
    use any_value::Value;
    let join = |items: Vec<String>| items.join(", ");
    match value.and_then(|v| v.value.as_ref()) {
        None => String::new(),
        Some(Value::StringValue(s)) => s.clone(),
        Some(Value::BoolValue(b)) => b.to_string(),
        Some(Value::IntValue(i)) => i.to_string(),
        Some(Value::DoubleValue(d)) => d.to_string(),
        Some(Value::BytesValue(b)) => hex(b),
        Some(Value::StringValueStrindex(i)) => format!("<string table #{i}>"),
        Some(Value::ArrayValue(array)) => {
            format!(
                "[{}]",
                join(array.values.iter().map(|v| render(Some(v))).collect())
            )
        }
        Some(Value::KvlistValue(list)) => format!(
            "{{{}}}",
            join(
                list.values
                    .iter()
                    .map(|kv| format!("{}: {}", kv.key, render(kv.value.as_ref())))
                    .collect()
            )
        ),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A receiver certificate for `names` and a client certificate, with one CA
/// that signed both, written as PEM files into `dir`: what a collector with
/// mutual TLS and its clients hold (`exporter.tls` of an Instrumentation).
pub struct MutualTls {
    /// For [`OtlpReceiver::start_tls`]: requires the client certificate.
    pub server: TlsFiles,
    /// The CA (`OTEL_EXPORTER_OTLP_CERTIFICATE`).
    pub ca: std::path::PathBuf,
    /// `OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE` and `..._CLIENT_KEY`.
    pub client_cert: std::path::PathBuf,
    pub client_key: std::path::PathBuf,
}

impl MutualTls {
    pub fn generate(dir: &std::path::Path, names: &[&str]) -> MutualTls {
        use rcgen::{
            BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
            IsCa, KeyPair, KeyUsagePurpose,
        };
        // OpenSSL (the Python exporter's) needs a subject on the CA to chain to it.
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "otlp-test CA");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca =
            CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("key")).expect("CA");
        let leaf = |names: Vec<String>, usage: ExtendedKeyUsagePurpose| {
            let cn = names.first().cloned().unwrap_or_default();
            let mut params = CertificateParams::new(names).expect("leaf params");
            params.distinguished_name.push(DnType::CommonName, cn);
            params.extended_key_usages = vec![usage];
            let key = KeyPair::generate().expect("key");
            let cert = params.signed_by(&key, &ca).expect("signed leaf");
            (cert.pem(), key.serialize_pem())
        };
        let names = names.iter().map(|n| (*n).to_owned()).collect();
        let (server_cert, server_key) = leaf(names, ExtendedKeyUsagePurpose::ServerAuth);
        let (client_cert, client_key) = leaf(
            vec!["otel-exporter".to_owned()],
            ExtendedKeyUsagePurpose::ClientAuth,
        );
        let write = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            path
        };
        let ca = write("ca.crt", &ca.pem());
        MutualTls {
            server: TlsFiles {
                cert: write("server.crt", &server_cert),
                key: write("server.key", &server_key),
                client_ca: Some(ca.clone()),
            },
            ca,
            client_cert: write("client.crt", &client_cert),
            client_key: write("client.key", &client_key),
        }
    }
}
