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
/// `events.k8s.io/v1` Events refuse a longer `note`.
const MAX_NOTE_BYTES: usize = 1000;

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
        let reference = regarding(decision);
        if !self
            .limiter
            .admit(&limiter_key(decision, &reference), Instant::now())
        {
            return;
        }
        let note = event_note(&decision.pod, &decision.reason);
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

/// The object the Event is about: the pod's owner, or its namespace when it
/// has none (the pod itself does not exist yet).
fn regarding(decision: &Decision) -> ObjectReference {
    match &decision.owner {
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
    }
}

fn limiter_key(decision: &Decision, reference: &ObjectReference) -> String {
    format!(
        "{}/{}/{}/{}",
        decision.namespace,
        reference.kind.as_deref().unwrap_or_default(),
        reference.name.as_deref().unwrap_or_default(),
        decision.reason
    )
}

/// The Event's note: `events.k8s.io/v1` refuses a note over 1 kB.
fn event_note(pod: &str, reason: &str) -> String {
    let mut note = format!("pod {pod} not instrumented: {reason}");
    if note.len() > MAX_NOTE_BYTES {
        // `truncate` panics inside a multi-byte character, and the reason
        // quotes pod values: cut at the last boundary before the limit.
        let cut = (0..=MAX_NOTE_BYTES)
            .rev()
            .find(|i| note.is_char_boundary(*i))
            .unwrap_or(0);
        note.truncate(cut);
    }
    note
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_long_non_ascii_reason_is_cut_at_a_character_boundary() {
        // The reason quotes the pod's own inject-python value.
        let value = "é".repeat(2000);
        let note = event_note("app-", &format!("inject-python={value} does not exist"));
        assert!(note.len() <= MAX_NOTE_BYTES, "{}", note.len());
        assert!(note.starts_with("pod app- not instrumented: inject-python=é"));
        // Every byte offset of the prefix shifts the cut: none may panic.
        for pad in 0..4 {
            let pod = "p".repeat(pad);
            let note = event_note(&pod, &"€".repeat(500));
            assert!(note.len() <= MAX_NOTE_BYTES && note.len() > MAX_NOTE_BYTES - 4);
        }
    }

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
