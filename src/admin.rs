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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::ImageVolumeSupport;
    use axum::body::Body;
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    async fn readyz_of(readiness: Arc<Readiness>) -> (StatusCode, String) {
        let app = router(AdminState {
            readiness,
            metrics: Arc::new(Metrics::new()),
        });
        let request = Request::get("/readyz")
            .body(Body::empty())
            .expect("request");
        let response = app.oneshot(request).await.expect("response");
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        (status, String::from_utf8_lossy(&bytes).into_owned())
    }

    #[tokio::test]
    async fn readyz_names_the_image_volume_fallback_and_stays_ready() {
        let readiness = Arc::new(Readiness::default());
        readiness.certs_loaded.store(true, Ordering::Release);
        readiness.watches_synced.store(true, Ordering::Release);
        assert_eq!(
            readyz_of(readiness.clone()).await,
            (StatusCode::OK, "ready".to_owned())
        );
        readiness
            .image_volumes
            .set(ImageVolumeSupport::Unsupported("the gate is off".into()));
        let (status, body) = readyz_of(readiness.clone()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            body,
            "ready; imageVolume delivery falls back to initContainer: the gate is off"
        );
        readiness.image_volumes.set(ImageVolumeSupport::Supported);
        assert_eq!(readyz_of(readiness).await.1, "ready");
    }
}
