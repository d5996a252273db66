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

/// Lets one event per key through per interval; memory bounded by pruning.
#[derive(Debug)]
pub struct RateLimiter {
    last: Mutex<HashMap<String, Instant>>,
    interval: Duration,
}

impl RateLimiter {
    pub fn new(interval: Duration) -> Self {
        RateLimiter {
            last: Mutex::new(HashMap::new()),
            interval,
        }
    }

    /// True when an event for `key` may be sent at `now` (and records it).
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
}

pub struct EventSink {
    recorder: Recorder,
    limiter: RateLimiter,
}

impl EventSink {
    pub fn new(client: Client, interval: Duration) -> Self {
        let reporter = Reporter {
            controller: "otel-injector".into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        EventSink {
            recorder: Recorder::new(client, reporter),
            limiter: RateLimiter::new(interval),
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
        if !self.limiter.admit(&key, Instant::now()) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_crash_looping_owner_gets_one_event_per_interval() {
        let limiter = RateLimiter::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let sent = (0..1000)
            .filter(|i| limiter.admit("cxtm/ReplicaSet/app/reason", t0 + Duration::from_millis(*i)))
            .count();
        assert_eq!(sent, 1);
        assert!(
            limiter.admit("cxtm/ReplicaSet/other/reason", t0),
            "other owners are independent"
        );
        assert!(
            limiter.admit("cxtm/ReplicaSet/app/reason", t0 + Duration::from_secs(301)),
            "again after the interval"
        );
    }

    #[test]
    fn memory_stays_bounded() {
        let limiter = RateLimiter::new(Duration::from_millis(1));
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS * 3) {
            limiter.admit(&format!("k{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert!(limiter.last.lock().map(|m| m.len()).unwrap_or(usize::MAX) <= MAX_KEYS + 1);
    }
}
