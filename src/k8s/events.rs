//! Kubernetes Events for skips that need attention, rate-limited so a
//! crash-looping ReplicaSet cannot flood the API server.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

use crate::review::Decision;

/// Owners remembered at once; past it the oldest is forgotten (it may then
/// get a second Event within the interval, which is the lesser harm).
const MAX_KEYS: usize = 10_000;
/// `events.k8s.io/v1` Events refuse a longer `note`.
pub const MAX_NOTE_BYTES: usize = 1000;

/// Lets one event per key through per interval, with a fixed bound on the
/// keys it remembers and O(1) work per call (amortized).
#[derive(Debug)]
pub struct RateLimiter {
    state: Mutex<LimiterState>,
    interval: Duration,
}

#[derive(Debug, Default)]
struct LimiterState {
    last: HashMap<String, Instant>,
    /// The keys of `last` in the order they were recorded, which is also
    /// the order they expire in (one interval for all).
    order: VecDeque<(Instant, String)>,
}

impl RateLimiter {
    pub fn new(interval: Duration) -> Self {
        RateLimiter {
            state: Mutex::new(LimiterState::default()),
            interval,
        }
    }

    /// True when an event for `key` may be sent at `now` (and records it).
    pub fn admit(&self, key: &str, now: Instant) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let LimiterState { last, order } = &mut *state;
        // Drop what has expired from the front only: no scan of the rest.
        while let Some((recorded, _)) = order.front() {
            if now.saturating_duration_since(*recorded) < self.interval {
                break;
            }
            if let Some((recorded, old)) = order.pop_front()
                && last.get(&old) == Some(&recorded)
            {
                last.remove(&old);
            }
        }
        if last.contains_key(key) {
            return false;
        }
        if last.len() >= MAX_KEYS
            && let Some((_, oldest)) = order.pop_front()
        {
            last.remove(&oldest);
        }
        last.insert(key.to_owned(), now);
        order.push_back((now, key.to_owned()));
        true
    }

    /// Keys remembered now.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.state.lock().map_or(0, |s| s.last.len())
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
            reason: event_reason(decision.outcome).into(),
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

/// The Event's reason: a rolled-back workload's pods say so, so that
/// `kubectl get events --field-selector reason=InstrumentationRolledBack`
/// finds both the rollback and the pods admitted since.
fn event_reason(outcome: crate::admission::Outcome) -> &'static str {
    match outcome {
        crate::admission::Outcome::RolledBack => "InstrumentationRolledBack",
        _ => "InstrumentationSkipped",
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

/// One Event per owner and outcome: the reason is free text that quotes pod
/// values, so keying on it would let every pod add a key.
fn limiter_key(decision: &Decision, reference: &ObjectReference) -> String {
    format!(
        "{}/{}/{}/{}",
        decision.namespace,
        reference.kind.as_deref().unwrap_or_default(),
        reference.name.as_deref().unwrap_or_default(),
        decision.outcome.label()
    )
}

/// The Event's note: `events.k8s.io/v1` refuses a note over 1 kB.
fn event_note(pod: &str, reason: &str) -> String {
    bounded_to(
        format!("pod {pod} not instrumented: {reason}"),
        MAX_NOTE_BYTES,
    )
}

/// `text` cut to at most `max` bytes. `truncate` panics inside a multi-byte
/// character, and notes and reasons quote pod values and log lines: cut at
/// the last boundary before the limit.
pub fn bounded_to(mut text: String, max: usize) -> String {
    if text.len() > max {
        let cut = (0..=max)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        text.truncate(cut);
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;

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
    fn memory_stays_bounded_within_the_interval() {
        // Keys all alive at once (the old test used a 1 ms interval, so they
        // had all expired and pruning found something to drop).
        let limiter = RateLimiter::new(Duration::from_secs(300));
        let t0 = Instant::now();
        for i in 0..(MAX_KEYS * 3) {
            limiter.admit(&format!("k{i}"), t0 + Duration::from_millis(i as u64));
        }
        assert!(limiter.len() <= MAX_KEYS, "{} keys", limiter.len());
        assert!(
            limiter.admit("k0", t0 + Duration::from_secs(1)),
            "the oldest key was forgotten to make room"
        );
    }

    #[test]
    fn the_free_text_reason_is_not_part_of_the_key() {
        // One owner, a new reason each time (reasons quote pod values), so
        // distinct keys would grow without bound.
        let limiter = RateLimiter::new(Duration::from_secs(300));
        let t0 = Instant::now();
        let sent = (0..100)
            .filter(|i| {
                let decision = Decision {
                    uid: format!("u{i}"),
                    namespace: "cxtm".into(),
                    pod: "app-".into(),
                    outcome: crate::admission::Outcome::Error,
                    reason: format!("Instrumentation cxtm/x{i} does not exist"),
                    containers: Vec::new(),
                    patch_ops: 0,
                    patch_bytes: 0,
                    warnings: Vec::new(),
                    dry_run: false,
                    delivery: None,
                    owner: Some(OwnerReference {
                        api_version: "apps/v1".into(),
                        kind: "ReplicaSet".into(),
                        name: "app-5d8f".into(),
                        uid: "rs-uid".into(),
                        controller: Some(true),
                        ..Default::default()
                    }),
                };
                let key = limiter_key(&decision, &regarding(&decision));
                limiter.admit(&key, t0 + Duration::from_secs(*i))
            })
            .count();
        assert_eq!(sent, 1);
    }
}
