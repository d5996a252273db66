//! The plain-HTTP admin port: liveness, readiness and metrics, apart from the
//! webhook so probes and scrapes never need TLS or touch admission.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::delivery::ImageVolumeState;
use crate::metrics::Metrics;

/// Readiness: certificates loaded, watches synced (when enabled), not draining.
#[derive(Debug, Default)]
pub struct Readiness {
    pub certs_loaded: AtomicBool,
    pub watches_synced: AtomicBool,
    pub draining: AtomicBool,
    /// Not a condition of readiness (the fallback serves every pod), a
    /// detail of `/readyz`: why imageVolume delivery is not available.
    pub image_volumes: Arc<ImageVolumeState>,
}

impl Readiness {
    pub fn is_ready(&self) -> bool {
        self.certs_loaded.load(Ordering::Acquire)
            && self.watches_synced.load(Ordering::Acquire)
            && !self.draining.load(Ordering::Acquire)
    }

    /// Why not ready, for the probe body and the logs.
    pub fn explain(&self) -> &'static str {
        if self.draining.load(Ordering::Acquire) {
            "draining"
        } else if !self.certs_loaded.load(Ordering::Acquire) {
            "certificates not loaded"
        } else if !self.watches_synced.load(Ordering::Acquire) {
            "Kubernetes watches not synced"
        } else {
            "ready"
        }
    }
}

#[derive(Clone)]
pub struct AdminState {
    pub readiness: Arc<Readiness>,
    pub metrics: Arc<Metrics>,
}

pub fn router(state: AdminState) -> Router {
    Router::new()
        .route("/livez", get(|| async { "ok" }))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let status = if state.readiness.is_ready() {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let mut body = state.readiness.explain().to_owned();
    if let Some(why) = state.readiness.image_volumes.get().refusal() {
        body.push_str("; imageVolume delivery falls back to initContainer: ");
        body.push_str(&why);
    }
    (status, body)
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.encode(),
    )
}
