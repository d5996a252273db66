//! Kubernetes Events for skips that need attention, rate-limited so a
//! crash-looping ReplicaSet cannot flood the API server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::review::Decision;

/// At most one Event per (namespace, owner, reason) in this window.
pub const EVENT_INTERVAL: Duration = Duration::from_secs(300);
const MAX_KEYS: usize = 10_000;

pub struct EventSink {
    recorder: Recorder,
    last: Mutex<HashMap<String, Instant>>,
    interval: Duration,
}

impl EventSink {
    pub fn new(client: Client, interval: Duration) -> Self {
        let reporter = Reporter {
            controller: "otel-injector".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        EventSink {
            recorder: Recorder::new(client, reporter),
            last: Mutex::new(HashMap::new()),
            interval,
        }
    }

    /// True when an Event for `key` may be sent now (and records it).
    pub fn admit(&self, key: &str, now: Instant) -> bool {
        let Ok(mut last) = self.last.lock() else {
            return false;
        };
        if last.len() > MAX_KEYS {
            last.retain(|_, t| now.duration_since(*t) < self.interval);
        }
        match last.get(key) {
            Some(t) if now.duration_since(*t) < self.interval => false,
            _ => {
                last.insert(key.to_owned(), now);
                true
            }
        }
    }

    /// Publishes, in the background, an Event about a pod that was not
    /// instrumented, on its owner (or its namespace when it has none).
    pub fn pod_not_instrumented(self: &std::sync::Arc<Self>, decision: &Decision) {
        let reference = match &decision.owner {
            Some(owner) => ObjectReference {
                api_version: Some(owner.api_version.clone()),
                kind: Some(owner.kind.clone()),
                name: Some(owner.name.clone()),
                namespace: Some(decision.namespace.clone()),
                uid: Some(owner.uid.clone()),
                ..Default::default()
            },
            None => ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("Namespace".into()),
                name: Some(decision.namespace.clone()),
                // Recorded in the namespace itself, where `kubectl get events -n` shows it.
                namespace: Some(decision.namespace.clone()),
                ..Default::default()
            },
        };
        let key = format!(
            "{}/{}/{}/{}",
            decision.namespace,
            reference.kind.as_deref().unwrap_or_default(),
            reference.name.as_deref().unwrap_or_default(),
            decision.reason
        );
        if !self.admit(&key, Instant::now()) {
            return;
        }
        let mut note = format!("pod {} not instrumented: {}", decision.pod, decision.reason);
        note.truncate(1000);
        let event = Event {
            type_: EventType::Warning,
            reason: "InstrumentationSkipped".into(),
            note: Some(note),
            action: "InjectPython".into(),
            secondary: None,
        };
        let sink = self.clone();
        tokio::spawn(async move {
            if let Err(e) = sink.recorder.publish(&event, &reference).await {
                tracing::warn!(error = %e, "could not record a Kubernetes Event");
            }
        });
    }
}
