//! The HTTPS webhook: an axum router served over rustls, HTTP/1.1 keep-alive.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::conn_watch::{Activity, REQUEST_HEADER_TIMEOUT, Watched};
use crate::k8s::EventSink;
use crate::metrics::Metrics;
use crate::review::{Decision, Reviewer};

/// Largest AdmissionReview body accepted. UPDATE reviews carry object and
/// oldObject, and the API server caps an object at ~1.5 MiB in etcd; 8 MiB
/// leaves room without inviting abuse (axum's implicit default is 2 MiB).
pub const DEFAULT_BODY_LIMIT: usize = 8 * 1024 * 1024;

/// A TLS handshake that has not finished by then is dropped.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// hyper's header-read timer also runs while a keep-alive connection sits
/// idle. The API server's webhook client drops idle connections after 90 s
/// (Go's http.Transport default it inherits), so ours must be longer or the
/// API server may send a review on a connection we are closing (EOF errors).
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(120);

/// The whole request body must arrive within this long. hyper's header-read
/// timer stops once the headers are in, so without it a client that stalls
/// mid-body holds its connection and task forever. The API server waits at
/// most 30 s for a webhook (ours: `timeoutSeconds: 5`): nothing legitimate is cut.
pub const BODY_READ_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct AppState {
    pub reviewer: Reviewer,
    pub metrics: Arc<Metrics>,
    pub body_limit: usize,
    /// Kubernetes Events for pods that needed attention; `None` without a cluster.
    pub events: Option<Arc<EventSink>>,
}

/// The webhook's routes; tested in-process with `tower::ServiceExt::oneshot`.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/mutate", post(mutate))
        .route("/mutate-v1-pod", post(mutate))
        .route("/healthz", get(|| async { "ok" }))
        .fallback(|| async {
            error(
                StatusCode::NOT_FOUND,
                "not found: POST AdmissionReviews to /mutate",
            )
        })
        .with_state(state)
}

/// While `readiness` says draining (after SIGTERM, during the shutdown delay),
/// every response carries `Connection: close`, so the API server drops that
/// connection after the answer and opens its next one to an endpoint that is
/// still in the Service. Without it, the API server keeps sending reviews
/// over a kept-alive connection to a terminating pod (kubernetes#127335)
/// until the drain closes it, and a review written just as the server closes
/// an idle connection fails (and, with `failurePolicy: Ignore`, its pod goes
/// uninstrumented).
pub fn close_connections_when_draining(
    app: Router,
    readiness: std::sync::Arc<crate::admin::Readiness>,
) -> Router {
    app.layer(tower::util::MapResponseLayer::new(
        move |mut response: Response| {
            if readiness
                .draining
                .load(std::sync::atomic::Ordering::Acquire)
            {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            response
        },
    ))
}

fn error(status: StatusCode, message: impl Into<String>) -> Response {
    (
        status,
        axum::Json(json!({ "error": message.into(), "status": status.as_u16() })),
    )
        .into_response()
}

// Takes the whole request rather than a `HeaderMap` extractor, which would clone the headers.
async fn mutate(State(state): State<AppState>, request: Request) -> Response {
    let started = Instant::now();
    let (parts, body) = request.into_parts();
    let headers = &parts.headers;
    if let Some(content_type) = headers.get(header::CONTENT_TYPE) {
        let ct = content_type.to_str().unwrap_or_default();
        // Compared in place: lowercasing a copy was an allocation per review.
        let json = ct
            .get(.."application/json".len())
            .is_some_and(|t| t.eq_ignore_ascii_case("application/json"));
        if !json {
            let ct = ct.to_ascii_lowercase();
            state.metrics.bad_request("unsupported-media-type");
            return error(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("Content-Type {ct:?} is not supported: send application/json"),
            );
        }
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > state.body_limit as u64) {
        state.metrics.bad_request("too-large");
        return too_large(state.body_limit);
    }
    let read = axum::body::to_bytes(body, state.body_limit);
    let bytes = match tokio::time::timeout(BODY_READ_TIMEOUT, read).await {
        Err(_) => {
            state.metrics.bad_request("body-timeout");
            return error(
                StatusCode::REQUEST_TIMEOUT,
                format!("request body not received within {BODY_READ_TIMEOUT:?}"),
            );
        }
        Ok(Ok(bytes)) => bytes,
        Ok(Err(e)) => {
            let too_big = std::error::Error::source(&e)
                .is_some_and(|s| s.is::<http_body_util::LengthLimitError>());
            if too_big {
                state.metrics.bad_request("too-large");
                return too_large(state.body_limit);
            }
            state.metrics.bad_request("unreadable");
            return error(
                StatusCode::BAD_REQUEST,
                format!("cannot read request body: {e}"),
            );
        }
    };
    match state.reviewer.review(&bytes) {
        Ok(reviewed) => {
            let elapsed = started.elapsed();
            log_decision(&reviewed.decision, elapsed);
            state.metrics.observe(&reviewed.decision, elapsed);
            let needs_attention = reviewed.decision.outcome.needs_attention();
            // sideEffects: None promises nothing happens for dry runs.
            if let Some(events) = state
                .events
                .as_ref()
                .filter(|_| needs_attention && !reviewed.decision.dry_run)
            {
                events.pod_not_instrumented(&reviewed.decision);
            }
            ([(header::CONTENT_TYPE, "application/json")], reviewed.body).into_response()
        }
        Err(bad) => {
            tracing::warn!(error = %bad, body_bytes = bytes.len(), "rejected a body that is not an AdmissionReview");
            state.metrics.bad_request("not-a-review");
            error(StatusCode::BAD_REQUEST, bad.to_string())
        }
    }
}

fn too_large(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the {limit}-byte limit"),
    )
}

/// One structured event per admission decision.
///
/// Fields are recorded as `&str`, not `%Display`: the JSON formatter writes
/// a `str` directly, while a `Display` value goes through `fmt` a character
/// at a time (measured: the log line was the largest cost after the review).
fn log_decision(d: &Decision, elapsed: Duration) {
    let duration_us = elapsed.as_micros() as u64;
    let containers = join(&d.containers, ",");
    let warnings = join(&d.warnings, " | ");
    macro_rules! event {
        ($level:ident) => {
            tracing::$level!(
                uid = d.uid.as_str(),
                namespace = d.namespace.as_str(),
                pod = d.pod.as_str(),
                decision = d.outcome.label(),
                reason = d.reason.as_str(),
                containers = &*containers,
                patch_ops = d.patch_ops,
                dry_run = d.dry_run,
                warnings = &*warnings,
                duration_us,
                "admission decision"
            )
        };
    }
    if d.outcome.needs_attention() {
        event!(warn)
    } else if d.outcome.is_routine() {
        event!(debug)
    } else {
        event!(info)
    }
}

fn join<'a>(items: &'a [String], separator: &str) -> Cow<'a, str> {
    match items {
        [] => Cow::Borrowed(""),
        [one] => Cow::Borrowed(one),
        many => Cow::Owned(many.join(separator)),
    }
}

/// Accepts TLS connections until `shutdown` resolves, then drains (see
/// [`serve_tls_with`]) for up to `drain`. Connections are kept alive without a
/// request limit.
pub async fn serve_tls(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
) {
    serve_tls_with(listener, acceptor, app, shutdown, drain, None).await;
}

/// After the drain deadline, how long connections still open get to finish
/// the request they are serving before the server returns anyway.
const AFTER_DRAIN_DEADLINE: Duration = Duration::from_secs(1);

/// [`serve_tls`], where the `max_requests`th answer on a connection says
/// `Connection: close`. The API server picks a Service endpoint only when it
/// opens a connection and keeps using that one, so without a limit one
/// replica takes every call; with it, each new connection is another random
/// pick, at the cost of one TLS handshake per `max_requests` reviews.
///
/// Once `shutdown` resolves the listener closes, but open connections are not
/// closed by the server: every answer from then on says `Connection: close`,
/// so a connection ends right after its next answer, or when its client drops
/// it. Closing an idle kept-alive connection from this side races the client:
/// the API server may be writing a review on it at that moment, and a POST
/// that hit a closed connection is never retried by Go's HTTP client (with
/// `failurePolicy: Ignore` that pod is admitted uninstrumented). The API
/// server drops an idle connection after 90 s by itself, and hyper's header
/// timer ends any other after [`HEADER_READ_TIMEOUT`]; only after `drain` are
/// the connections still open closed from this side.
pub async fn serve_tls_with(
    listener: TcpListener,
    acceptor: TlsAcceptor,
    app: Router,
    shutdown: impl Future<Output = ()>,
    drain: Duration,
    max_requests: Option<u64>,
) {
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    let shared = Arc::new(Shared {
        http,
        closing: AtomicBool::new(false),
        max_requests,
    });
    // Each connection task holds a clone: `recv` returns None once all ended.
    let (open, mut all_closed) = tokio::sync::mpsc::channel::<()>(1);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer): (_, SocketAddr) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve_connection(Connection {
            stream,
            peer,
            acceptor: acceptor.clone(),
            app: app.clone(),
            shared: shared.clone(),
            watcher: graceful.watcher(),
            _open: open.clone(),
        }));
    }
    drop(listener);
    shared.closing.store(true, Ordering::Release);
    tracing::info!(
        open_connections = open.strong_count() - 1,
        ?drain,
        "listener closed; each open connection ends after its next answer (Connection: close) or when its client drops it"
    );
    drop(open);
    tokio::select! {
        _ = all_closed.recv() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => {
            tracing::warn!(?drain, "drain deadline passed; closing the remaining connections");
            let _ = tokio::time::timeout(AFTER_DRAIN_DEADLINE, graceful.shutdown()).await;
        }
    }
}

/// What every connection of one server shares.
struct Shared {
    http: hyper::server::conn::http1::Builder,
    /// The listener is closed: every answer says `Connection: close`.
    closing: AtomicBool,
    max_requests: Option<u64>,
}

/// One accepted TCP connection and what serving it needs.
struct Connection {
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    app: Router,
    shared: Arc<Shared>,
    watcher: hyper_util::server::graceful::Watcher,
    /// Dropped when the connection ends (see `serve_tls_with`).
    _open: tokio::sync::mpsc::Sender<()>,
}

/// TLS handshake, then HTTP/1.1 until the connection ends, its request
/// headers stall (slowloris), or the drain deadline closes it.
async fn serve_connection(conn: Connection) {
    let Connection {
        stream,
        peer,
        acceptor,
        app,
        shared,
        watcher,
        _open,
    } = conn;
    let tls = match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let activity = Activity::default();
    let service = counted_service(app, activity.clone(), shared.clone());
    let conn = shared
        .http
        .serve_connection(TokioIo::new(Watched::new(tls, activity.clone())), service);
    let conn = watcher.watch(conn);
    tokio::pin!(conn);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            result = &mut conn => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = tick.tick() => {
                if activity.headers_overdue(REQUEST_HEADER_TIMEOUT) {
                    tracing::debug!(%peer, "request headers not complete in time; closing the connection");
                    break;
                }
            }
        }
    }
}

/// The router, telling `activity` when a request is being served, and adding
/// `Connection: close` to the connection's last answer: the
/// `max_requests`th, or any once the server is closing.
fn counted_service(
    app: Router,
    activity: Activity,
    shared: Arc<Shared>,
) -> impl hyper::service::Service<
    Request<hyper::body::Incoming>,
    Response = Response,
    Error = std::convert::Infallible,
    Future = impl Future<Output = Result<Response, std::convert::Infallible>> + Send,
> + Clone {
    let service = TowerToHyperService::new(app);
    let served = Arc::new(AtomicU64::new(0));
    hyper::service::service_fn(move |request| {
        activity.request_began();
        let activity = activity.clone();
        let n = served.fetch_add(1, Ordering::Relaxed) + 1;
        let limit = shared.max_requests.is_some_and(|max| n >= max);
        let shared = shared.clone();
        let response = hyper::service::Service::call(&service, request);
        async move {
            let mut response = response.await;
            activity.request_ended();
            // Read after the answer is made: a request that began before the
            // listener closed and ends after still closes its connection.
            let last = limit || shared.closing.load(Ordering::Acquire);
            if last && let Ok(response) = response.as_mut() {
                response.headers_mut().insert(
                    axum::http::header::CONNECTION,
                    axum::http::HeaderValue::from_static("close"),
                );
            }
            response
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::TlsConnector;
    use tokio_rustls::client::TlsStream;

    /// Longer than any test here may take: a server that returns before it
    /// closed its connections because of the deadline.
    const NEVER: Duration = Duration::from_secs(3600);
    /// Bound on each wait below, so a broken drain fails instead of hanging.
    const BOUND: Duration = Duration::from_secs(60);

    struct Served {
        addr: SocketAddr,
        connector: TlsConnector,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        task: tokio::task::JoinHandle<()>,
        _dir: tempfile::TempDir,
    }

    async fn serve(app: Router) -> Served {
        crate::tls::install_crypto_provider();
        let dir = tempfile::tempdir().expect("tempdir");
        let names = crate::certs::service_names("otel-injector", "otel-injector");
        let paths = crate::certs::generate(&names)
            .expect("certs")
            .write(dir.path())
            .expect("write certs");
        let store = Arc::new(crate::tls::CertStore::load(paths.cert, paths.key).expect("load"));
        let tls = crate::tls::server_config(store, None).expect("server config");
        let mut roots = rustls::RootCertStore::empty();
        let pem = std::fs::read(&paths.ca).expect("ca");
        for cert in rustls_pemfile::certs(&mut &pem[..]) {
            roots.add(cert.expect("pem")).expect("ca cert");
        }
        let client = rustls::ClientConfig::builder()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(serve_tls(
            listener,
            TlsAcceptor::from(Arc::new(tls)),
            app,
            async move {
                let _ = stopped.await;
            },
            NEVER,
        ));
        Served {
            addr,
            connector: TlsConnector::from(Arc::new(client)),
            stop: Some(stop),
            task,
            _dir: dir,
        }
    }

    impl Served {
        async fn connect(&self) -> TlsStream<tokio::net::TcpStream> {
            let tcp = tokio::net::TcpStream::connect(self.addr)
                .await
                .expect("connect");
            let name = rustls::pki_types::ServerName::try_from("localhost").expect("name");
            self.connector.connect(name, tcp).await.expect("handshake")
        }

        /// Resolves the shutdown future, then waits until the listener is
        /// closed (a new connection is refused).
        async fn shut_down(&mut self) {
            let _ = self.stop.take().expect("running").send(());
            let refused = async {
                while tokio::net::TcpStream::connect(self.addr).await.is_ok() {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            tokio::time::timeout(BOUND, refused)
                .await
                .expect("the listener closes after shutdown");
        }
    }

    /// One `GET /healthz` on `conn`; the response head, lowercased.
    async fn healthz(conn: &mut TlsStream<tokio::net::TcpStream>) -> String {
        conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\n\r\n")
            .await
            .expect("write the request");
        let mut seen = Vec::new();
        let read = async {
            // The body is "ok": the response is complete once it follows the head.
            while !seen.ends_with(b"\r\n\r\nok") {
                let mut chunk = [0u8; 1024];
                let n = conn.read(&mut chunk).await.expect("read the response");
                assert!(n > 0, "connection closed before the answer: {seen:?}");
                seen.extend_from_slice(&chunk[..n]);
            }
        };
        tokio::time::timeout(BOUND, read).await.expect("an answer");
        String::from_utf8_lossy(&seen).to_ascii_lowercase()
    }

    fn app() -> Router {
        Router::new().route("/healthz", get(|| async { "ok" }))
    }

    /// kubernetes#127335 and the miss after `helm upgrade`: the API server
    /// keeps an idle kept-alive connection to a pod that is shutting down, and
    /// may send a review on it at any moment. The server must not close it
    /// under the client: the next request on it is answered, with
    /// `Connection: close`, and only then does the connection end.
    #[tokio::test]
    async fn after_shutdown_an_idle_connection_gets_its_next_answer_then_closes() {
        let mut served = serve(app()).await;
        let mut kept = served.connect().await;
        let head = healthz(&mut kept).await;
        assert!(head.starts_with("http/1.1 200"), "{head}");
        assert!(!head.contains("connection: close"), "kept alive: {head}");

        served.shut_down().await;
        let head = healthz(&mut kept).await;
        assert!(
            head.starts_with("http/1.1 200"),
            "answered after shutdown: {head}"
        );
        assert!(
            head.contains("connection: close"),
            "the answer after shutdown closes its connection: {head}"
        );
        let mut rest = Vec::new();
        let n = tokio::time::timeout(BOUND, kept.read_to_end(&mut rest))
            .await
            .expect("the server closes the connection after that answer");
        assert!(
            n.map_or(true, |n| n == 0),
            "nothing after the last answer: {rest:?}"
        );
        // That was the only connection: the server is done, long before `NEVER`.
        tokio::time::timeout(BOUND, served.task)
            .await
            .expect("the server returns once its connections ended")
            .expect("server task");
    }

    /// A connection its client drops (the API server does after 90 s idle)
    /// ends the drain too; until then the server waits for it.
    #[tokio::test]
    async fn the_drain_ends_when_the_last_idle_client_hangs_up() {
        let mut served = serve(app()).await;
        let mut first = served.connect().await;
        let mut second = served.connect().await;
        healthz(&mut first).await;
        healthz(&mut second).await;
        served.shut_down().await;
        drop(first);
        assert!(
            !served.task.is_finished(),
            "the server returned while a connection was open"
        );
        // `second` is still open: a request on it is still answered.
        let head = healthz(&mut second).await;
        assert!(head.contains("connection: close"), "{head}");
        drop(second);
        tokio::time::timeout(BOUND, served.task)
            .await
            .expect("the server returns once both clients hung up")
            .expect("server task");
    }
}
