//! The OTLP/HTTP receiver of the integration tests (tests/common/otlp.rs):
//! requests built with the OpenTelemetry project's own messages, plain,
//! gzipped and as JSON; refusals; and the real Python SDK exporting to it.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::otlp::OtlpReceiver;
use opentelemetry_proto::tonic::collector::logs::v1::ExportLogsServiceRequest;
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, KeyValue, any_value::Value,
};
use opentelemetry_proto::tonic::logs::v1::{LogRecord, ResourceLogs, ScopeLogs, SeverityNumber};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Metric, NumberDataPoint, ResourceMetrics, ScopeMetrics, Sum, metric,
    number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, span::SpanKind};
use prost::Message;

const PROTOBUF: &str = "application/x-protobuf";

type Headers = &'static [(&'static str, &'static str)];
const WAIT: Duration = Duration::from_secs(10);

struct Reply {
    status: u16,
    content_type: String,
    body: Vec<u8>,
}

/// POSTs `body` to the receiver with reqwest on a runtime of its own.
fn post(receiver: &OtlpReceiver, path: &str, headers: Headers, body: Vec<u8>) -> Reply {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = reqwest::Client::builder().build().expect("client");
        let mut request = client
            .post(format!("{}{path}", receiver.endpoint()))
            .body(body);
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        let response = request.send().await.expect("request sent");
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get("content-type")
            .map(|v| v.to_str().expect("text").to_owned())
            .unwrap_or_default();
        let body = response.bytes().await.expect("body").to_vec();
        Reply {
            status,
            content_type,
            body,
        }
    })
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(bytes).expect("gzip");
    encoder.finish().expect("gzip")
}

fn kv(key: &str, value: Value) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn text(s: &str) -> Value {
    Value::StringValue(s.to_owned())
}

fn resource(service: &str) -> Option<Resource> {
    Some(Resource {
        attributes: vec![
            kv("service.name", text(service)),
            kv("k8s.namespace.name", text("shop")),
        ],
        ..Default::default()
    })
}

fn scope(name: &str) -> Option<InstrumentationScope> {
    Some(InstrumentationScope {
        name: name.to_owned(),
        ..Default::default()
    })
}

const TRACE_ID: [u8; 16] = [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16];
const TRACE_HEX: &str = "0102030405060708090a0b0c0d0e0f10";

#[test]
fn decodes_protobuf_traces_metrics_and_logs_plain_and_gzipped() {
    let receiver = OtlpReceiver::start();
    assert_eq!(
        receiver.endpoint(),
        format!("http://127.0.0.1:{}", receiver.port())
    );

    let traces = ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: resource("checkout"),
            scope_spans: vec![ScopeSpans {
                scope: scope("test-scope"),
                spans: vec![Span {
                    trace_id: TRACE_ID.to_vec(),
                    span_id: vec![0xaa; 8],
                    parent_span_id: vec![0xbb; 8],
                    name: "GET /orders".into(),
                    kind: SpanKind::Server as i32,
                    attributes: vec![
                        kv("http.route", text("/orders")),
                        kv("http.response.status_code", Value::IntValue(200)),
                        kv("ratio", Value::DoubleValue(0.5)),
                        kv("retried", Value::BoolValue(true)),
                        kv(
                            "tags",
                            Value::ArrayValue(ArrayValue {
                                values: vec![
                                    AnyValue {
                                        value: Some(text("a")),
                                    },
                                    AnyValue {
                                        value: Some(Value::IntValue(1)),
                                    },
                                ],
                            }),
                        ),
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let reply = post(
        &receiver,
        "/v1/traces",
        &[("content-type", PROTOBUF)],
        traces.encode_to_vec(),
    );
    assert_eq!(reply.status, 200);
    assert_eq!(reply.content_type, PROTOBUF);
    assert_eq!(
        ExportTraceServiceResponse::decode(reply.body.as_slice()).expect("a response message"),
        ExportTraceServiceResponse::default()
    );

    let metrics = ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: resource("checkout"),
            scope_metrics: vec![ScopeMetrics {
                scope: scope("test-meter"),
                metrics: vec![Metric {
                    name: "orders.placed".into(),
                    data: Some(metric::Data::Sum(Sum {
                        data_points: vec![NumberDataPoint {
                            value: Some(number_data_point::Value::AsInt(3)),
                            ..Default::default()
                        }],
                        aggregation_temporality: AggregationTemporality::Cumulative as i32,
                        is_monotonic: true,
                    })),
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let gzipped: Headers = &[("content-type", PROTOBUF), ("content-encoding", "gzip")];
    let reply = post(
        &receiver,
        "/v1/metrics",
        gzipped,
        gzip(&metrics.encode_to_vec()),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    let logs = ExportLogsServiceRequest {
        resource_logs: vec![ResourceLogs {
            resource: resource("billing"),
            scope_logs: vec![ScopeLogs {
                scope: scope("test-logger"),
                log_records: vec![LogRecord {
                    body: Some(AnyValue {
                        value: Some(text("order placed")),
                    }),
                    severity_text: "WARN".into(),
                    severity_number: SeverityNumber::Warn as i32,
                    attributes: vec![kv("order.id", Value::IntValue(42))],
                    trace_id: TRACE_ID.to_vec(),
                    span_id: vec![0xaa; 8],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }],
    };
    let reply = post(&receiver, "/v1/logs", gzipped, gzip(&logs.encode_to_vec()));
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );

    let spans = receiver.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span.resource["service.name"], "checkout");
    assert_eq!(span.resource["k8s.namespace.name"], "shop");
    assert_eq!(span.scope, "test-scope");
    assert_eq!(span.name, "GET /orders");
    assert_eq!(span.kind, "SPAN_KIND_SERVER");
    assert_eq!(span.trace_id, TRACE_HEX);
    assert_eq!(span.span_id, "aaaaaaaaaaaaaaaa");
    assert_eq!(span.parent_span_id, "bbbbbbbbbbbbbbbb");
    let attributes: Vec<(&str, &str)> = span
        .attributes
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        attributes,
        [
            ("http.response.status_code", "200"),
            ("http.route", "/orders"),
            ("ratio", "0.5"),
            ("retried", "true"),
            ("tags", "[a, 1]"),
        ]
    );

    let metrics = receiver.metrics();
    assert_eq!(metrics.len(), 1, "{metrics:?}");
    assert_eq!(metrics[0].name, "orders.placed");
    assert_eq!(metrics[0].scope, "test-meter");
    assert_eq!(metrics[0].resource["service.name"], "checkout");

    let logs = receiver.logs();
    assert_eq!(logs.len(), 1, "{logs:?}");
    let log = &logs[0];
    assert_eq!(log.body, "order placed");
    assert_eq!(log.severity_text, "WARN");
    assert_eq!(log.scope, "test-logger");
    assert_eq!(log.attributes["order.id"], "42");
    assert_eq!(
        (log.trace_id.as_str(), log.span_id.as_str()),
        (TRACE_HEX, "aaaaaaaaaaaaaaaa")
    );

    assert_eq!(
        receiver.services().into_iter().collect::<Vec<_>>(),
        ["billing", "checkout"]
    );
    assert_eq!(receiver.requests(), 3);
    assert!(receiver.errors().is_empty(), "{:?}", receiver.errors());
}

/// OTLP JSON: hex ids, camelCase, 64-bit integers as strings.
#[test]
fn decodes_otlp_json() {
    let receiver = OtlpReceiver::start();
    let body = r#"{"resourceSpans":[{
        "resource":{"attributes":[{"key":"service.name","value":{"stringValue":"json-svc"}}]},
        "scopeSpans":[{"scope":{"name":"json-scope","version":"1.0"},"spans":[{
            "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
            "parentSpanId":"","name":"json-span","kind":3,
            "startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
            "attributes":[{"key":"count","value":{"intValue":"7"}},
                          {"key":"ok","value":{"boolValue":true}}],
            "status":{}}]}]}]}"#;
    let reply = post(
        &receiver,
        "/v1/traces",
        &[("content-type", "application/json")],
        body.into(),
    );
    assert_eq!(
        reply.status,
        200,
        "{}",
        String::from_utf8_lossy(&reply.body)
    );
    assert_eq!(reply.content_type, "application/json");
    let spans = receiver.spans();
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = &spans[0];
    assert_eq!(span.resource["service.name"], "json-svc");
    assert_eq!(span.scope, "json-scope");
    assert_eq!(span.name, "json-span");
    assert_eq!(span.kind, "SPAN_KIND_CLIENT");
    assert_eq!(span.trace_id, "5b8efff798038103d269b633813fc60c");
    assert_eq!(span.span_id, "eee19b7ec3c1b174");
    assert_eq!(span.parent_span_id, "");
    assert_eq!(span.attributes["count"], "7");
    assert_eq!(span.attributes["ok"], "true");
}

#[test]
fn refuses_what_it_cannot_decode_and_says_why() {
    let receiver = OtlpReceiver::start();
    // (path, headers, body, status, start of the recorded error)
    let refusals: [(&str, Headers, &[u8], u16, &str); 5] = [
        (
            "/v1/traces",
            &[("content-type", PROTOBUF)],
            b"this is not protobuf",
            400,
            "POST /v1/traces: undecodable body",
        ),
        (
            "/v1/logs",
            &[("content-type", "application/json")],
            br#"{"resourceLogs": 5}"#,
            400,
            "POST /v1/logs: undecodable body",
        ),
        (
            "/v1/metrics",
            &[("content-type", PROTOBUF), ("content-encoding", "gzip")],
            b"not gzip at all",
            400,
            "POST /v1/metrics: bad gzip body",
        ),
        (
            "/v1/traces",
            &[("content-type", "text/plain")],
            b"hello",
            415,
            "POST /v1/traces: unsupported Content-Type \"text/plain\"",
        ),
        (
            "/v1/trace",
            &[("content-type", PROTOBUF)],
            b"",
            404,
            "POST /v1/trace: no such path",
        ),
    ];
    for (i, (path, headers, body, status, error)) in refusals.into_iter().enumerate() {
        let reply = post(&receiver, path, headers, body.to_vec());
        assert_eq!(reply.status, status, "{path} {headers:?}");
        let errors = receiver.errors();
        assert_eq!(errors.len(), i + 1, "{errors:?}");
        assert!(errors[i].starts_with(error), "{errors:?}");
    }
    assert_eq!(receiver.requests(), 5);
    assert!(receiver.spans().is_empty() && receiver.metrics().is_empty());
    assert!(receiver.logs().is_empty());
}

#[test]
fn wait_for_times_out_with_a_summary_and_drop_stops_the_server() {
    let receiver = OtlpReceiver::start();
    let port = receiver.port();
    let ready = receiver.wait_for("nothing", WAIT, |_| Some(7));
    assert_eq!(ready, 7);
    let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        receiver.wait_for("a span named never", Duration::from_millis(120), |r| {
            r.spans().into_iter().find(|s| s.name == "never")
        })
    }))
    .expect_err("wait_for panics on timeout");
    let message = panic
        .downcast_ref::<String>()
        .expect("a formatted panic message");
    assert!(
        message.contains("timed out after 120ms waiting for a span named never")
            && message.contains("0 requests, 0 spans, 0 metrics, 0 log records, services {}"),
        "{message}"
    );
    drop(receiver);
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts after drop"
    );
}

const OTEL_PYTHON: &str = "1.33.1";

/// The real OpenTelemetry Python SDK and OTLP/HTTP protobuf exporter, as
/// instrumented pods run them, export a span, a metric and a log record
/// (plain and gzip-compressed) to the receiver.
#[test]
fn python_sdk_exports_reach_the_receiver() {
    let site = python_packages();
    let receiver = OtlpReceiver::start();
    for compression in ["none", "gzip"] {
        let service = format!("py-{compression}");
        run_python_exporter(&site, &receiver, &service, compression);
        let span = receiver.wait_for(&format!("the span of {service}"), WAIT, |r| {
            r.spans()
                .into_iter()
                .find(|s| s.resource.get("service.name") == Some(&service))
        });
        assert_eq!(span.name, "place-order");
        assert_eq!(span.kind, "SPAN_KIND_SERVER");
        assert_eq!(span.scope, "otlp-receiver-test");
        assert_eq!(span.attributes["order.items"], "3");
        assert_eq!(span.resource["k8s.namespace.name"], "shop");
        assert_eq!(span.resource["telemetry.sdk.language"], "python");
        assert_eq!(span.resource["telemetry.sdk.version"], OTEL_PYTHON);
        assert_eq!((span.trace_id.len(), span.span_id.len()), (32, 16));

        let log = receiver.wait_for(&format!("the log record of {service}"), WAIT, |r| {
            r.logs()
                .into_iter()
                .find(|l| l.resource.get("service.name") == Some(&service))
        });
        assert_eq!(log.body, "order placed");
        assert!(log.severity_text.starts_with("WARN"), "{log:?}");
        // Logged inside the span: the record carries its trace context.
        assert_eq!(
            (&log.trace_id, &log.span_id),
            (&span.trace_id, &span.span_id)
        );

        let metric = receiver.wait_for(&format!("the metric of {service}"), WAIT, |r| {
            r.metrics()
                .into_iter()
                .find(|m| m.resource.get("service.name") == Some(&service))
        });
        assert_eq!(metric.name, "orders.placed");
        assert_eq!(metric.scope, "otlp-receiver-test");
    }
    assert_eq!(
        receiver.services().into_iter().collect::<Vec<_>>(),
        ["py-gzip", "py-none"]
    );
    assert!(receiver.errors().is_empty(), "{:?}", receiver.errors());
}

/// The SDK's exporter over mutual TLS, configured only by the env vars an
/// Instrumentation's `exporter.tls` becomes in a pod: with the client
/// certificate the spans arrive; without it the handshake is refused and
/// nothing arrives.
#[test]
fn python_sdk_exports_over_mutual_tls() {
    let site = python_packages();
    let dir = tempfile::tempdir().expect("tempdir");
    let tls = common::otlp::MutualTls::generate(dir.path(), &["127.0.0.1"]);
    let receiver = OtlpReceiver::start_tls("127.0.0.1:0", &tls.server);
    assert!(receiver.endpoint().starts_with("https://127.0.0.1:"));

    let (ok, output) = python_exporter(
        &site,
        &receiver,
        "py-mtls",
        "none",
        &[
            ("OTEL_EXPORTER_OTLP_CERTIFICATE", &tls.ca),
            ("OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", &tls.client_cert),
            ("OTEL_EXPORTER_OTLP_CLIENT_KEY", &tls.client_key),
        ],
    );
    assert!(ok && !output.contains("Failed to export"), "{output}");
    let span = receiver.wait_for("the span over mutual TLS", WAIT, |r| {
        r.spans()
            .into_iter()
            .find(|s| s.resource.get("service.name").map(String::as_str) == Some("py-mtls"))
    });
    assert_eq!(span.name, "place-order");
    assert!(receiver.errors().is_empty(), "{:?}", receiver.errors());

    let (_, output) = python_exporter(
        &site,
        &receiver,
        "py-no-client-cert",
        "none",
        &[("OTEL_EXPORTER_OTLP_CERTIFICATE", &tls.ca)],
    );
    assert!(
        output.contains("SSL") || output.contains("certificate"),
        "the exporter says why it could not export:\n{output}"
    );
    assert!(
        receiver
            .errors()
            .iter()
            .any(|e| e.contains("TLS handshake")),
        "the receiver refused the handshake: {:?}",
        receiver.errors()
    );
    assert!(!receiver.services().contains("py-no-client-cert"));
}

const PYTHON_EXPORTER: &str = r#"
import logging
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http._log_exporter import OTLPLogExporter
from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

# Endpoint, protocol, compression, service name and resource come from OTEL_*.
resource = Resource.create()
tracer_provider = TracerProvider(resource=resource)
tracer_provider.add_span_processor(SimpleSpanProcessor(OTLPSpanExporter()))
reader = PeriodicExportingMetricReader(OTLPMetricExporter(), export_interval_millis=3_600_000)
meter_provider = MeterProvider(resource=resource, metric_readers=[reader])
logger_provider = LoggerProvider(resource=resource)
logger_provider.add_log_record_processor(SimpleLogRecordProcessor(OTLPLogExporter()))
log = logging.getLogger("checkout")
log.addHandler(LoggingHandler(logger_provider=logger_provider))
log.propagate = False

tracer = tracer_provider.get_tracer("otlp-receiver-test")
with tracer.start_as_current_span("place-order", kind=trace.SpanKind.SERVER) as span:
    span.set_attribute("order.items", 3)
    log.warning("order placed")
meter_provider.get_meter("otlp-receiver-test").create_counter("orders.placed").add(1)

tracer_provider.shutdown()
logger_provider.shutdown()
meter_provider.shutdown()
"#;

fn run_python_exporter(site: &Path, receiver: &OtlpReceiver, service: &str, compression: &str) {
    let (ok, output) = python_exporter(site, receiver, service, compression, &[]);
    assert!(ok, "the Python exporter failed:\n{output}");
    // The SDK logs export failures instead of failing the process.
    assert!(
        !output.contains("Failed to export"),
        "the Python exporter reported failures:\n{output}\nreceiver: {}",
        receiver.summary()
    );
}

/// Runs [`PYTHON_EXPORTER`] against `receiver` with `env` added: whether it
/// exited 0, and its output.
fn python_exporter(
    site: &Path,
    receiver: &OtlpReceiver,
    service: &str,
    compression: &str,
    env: &[(&str, &Path)],
) -> (bool, String) {
    let mut python = Command::new("python3");
    python.arg("-c").arg(PYTHON_EXPORTER);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("OTEL_") {
            python.env_remove(name);
        }
    }
    python
        .env("PYTHONPATH", site)
        .env("PYTHONNOUSERSITE", "1")
        .env("OTEL_EXPORTER_OTLP_ENDPOINT", receiver.endpoint())
        .env("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf")
        .env("OTEL_EXPORTER_OTLP_COMPRESSION", compression)
        .env("OTEL_SERVICE_NAME", service)
        .env("OTEL_RESOURCE_ATTRIBUTES", "k8s.namespace.name=shop")
        .envs(env.iter().copied());
    run(python, Duration::from_secs(120))
}

/// The SDK and exporter, installed once with pip into
/// `${OTEL_INJECTOR_CACHE:-$HOME/.cache/otel-injector}/otlp-test-python/<versions>`
/// and reused.
fn python_packages() -> PathBuf {
    let version = Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .expect("python3 runs");
    assert!(version.status.success(), "python3 -c failed: {version:?}");
    let key = format!(
        "otel-{OTEL_PYTHON}-py{}",
        String::from_utf8_lossy(&version.stdout).trim()
    );
    let cache = std::env::var_os("OTEL_INJECTOR_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/otel-injector")))
        .unwrap_or_else(std::env::temp_dir)
        .join("otlp-test-python");
    let target = cache.join(&key);
    if target.is_dir() {
        return target;
    }
    // Installed beside, then renamed: an interrupted install is never reused.
    let partial = cache.join(format!("{key}.partial-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).expect("create the pip target");
    let mut pip = Command::new("python3");
    pip.args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
    ])
    .args(["--no-input", "--target"])
    .arg(&partial)
    .arg(format!("opentelemetry-sdk=={OTEL_PYTHON}"))
    .arg(format!(
        "opentelemetry-exporter-otlp-proto-http=={OTEL_PYTHON}"
    ));
    let (ok, output) = run(pip, Duration::from_secs(300));
    assert!(
        ok,
        "pip could not install the OpenTelemetry Python SDK {OTEL_PYTHON} \
         (needs PyPI):\n{output}"
    );
    if std::fs::rename(&partial, &target).is_err() {
        // Another test run finished first; use its copy.
        let _ = std::fs::remove_dir_all(&partial);
        assert!(target.is_dir(), "{} missing", target.display());
    }
    target
}

/// Runs `command` with its output collected in files, killing it after
/// `timeout`: whether it succeeded, and its stdout and stderr.
fn run(mut command: Command, timeout: Duration) -> (bool, String) {
    let dir = tempfile::tempdir().expect("tempdir");
    let out_path = dir.path().join("output");
    let out = std::fs::File::create(&out_path).expect("output file");
    let err = out.try_clone().expect("output file");
    let mut child = command
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {command:?}: {e}"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait") {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = std::fs::read_to_string(&out_path).unwrap_or_default();
    match status {
        Some(status) => (status.success(), format!("{status}\n{output}")),
        None => (false, format!("killed after {timeout:?}\n{output}")),
    }
}
