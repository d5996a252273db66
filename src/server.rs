//! The HTTPS webhook: an axum router served over rustls, HTTP/1.1 keep-alive.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
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
        let ct = content_type
            .to_str()
            .unwrap_or_default()
            .to_ascii_lowercase();
        if !ct.starts_with("application/json") {
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

/// Accepts TLS connections until `shutdown` resolves, then lets in-flight
/// requests finish for up to `drain`. Connections are kept alive without a
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

/// [`serve_tls`], where the `max_requests`th answer on a connection says
/// `Connection: close`. The API server picks a Service endpoint only when it
/// opens a connection and keeps using that one, so without a limit one
/// replica takes every call; with it, each new connection is another random
/// pick, at the cost of one TLS handshake per `max_requests` reviews.
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
    let http = Arc::new(http);
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
        let acceptor = acceptor.clone();
        let service = TowerToHyperService::new(app.clone());
        let http = http.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let tls =
                match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
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
            let tracked = activity.clone();
            let served = Arc::new(std::sync::atomic::AtomicU64::new(0));
            let service = hyper::service::service_fn(move |request| {
                tracked.request_began();
                let tracked = tracked.clone();
                let n = served.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                let last = max_requests.is_some_and(|max| n >= max);
                let response = hyper::service::Service::call(&service, request);
                async move {
                    let mut response = response.await;
                    tracked.request_ended();
                    if last && let Ok(response) = response.as_mut() {
                        response.headers_mut().insert(
                            axum::http::header::CONNECTION,
                            axum::http::HeaderValue::from_static("close"),
                        );
                    }
                    response
                }
            });
            let conn =
                http.serve_connection(TokioIo::new(Watched::new(tls, activity.clone())), service);
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
        });
    }
    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => tracing::info!("all connections drained"),
        () = tokio::time::sleep(drain) => tracing::warn!(?drain, "drain deadline passed; closing remaining connections"),
    }
}
