//! No pod left behind: what became of each live pod (coverage), and the
//! reconciler that catches up the pods we missed and rolls back the
//! workloads we broke (docs/fleet.md).
//!
//! Everything here that decides is a pure function over a pod (and the
//! current policy, through [`admission::admit`]), so the gauge, the
//! `status` command and the reconciler agree, and the tests need no cluster.

pub mod reconciler;
pub mod status;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::jiff::Timestamp;

use crate::admission::{self, Context, Outcome};
use crate::config::Rollback;
use crate::inject::{STATUS_ANNOTATION, Workload, workload};

/// On a workload: the reconciler restored instrumentation after its
/// uninstrumented pods crashed too (the fault was not ours); it is not
/// rolled back again while this is present.
pub const CRASHES_UNINSTRUMENTED_ANNOTATION: &str = "otel-injector.io/crashes-uninstrumented";

/// What became of one live pod, under the current policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PodState {
    /// We instrumented it (or the operator did before us).
    Instrumented,
    /// The current config would instrument it, but it carries no
    /// `otel-injector.io/status`: it was created while no replica answered,
    /// or before we were installed.
    Missed,
    /// The policy leaves it alone (not in a configured namespace, or
    /// `inject-python: "false"`).
    OptedOut,
    /// In scope, but the guard or the Python check said no (or its
    /// Instrumentation cannot be used).
    Refused,
    /// In scope, but its workload was rolled back.
    RolledBack,
}

impl PodState {
    pub const ALL: [PodState; 5] = [
        PodState::Instrumented,
        PodState::Missed,
        PodState::OptedOut,
        PodState::Refused,
        PodState::RolledBack,
    ];

    /// The metric label and the `status` column.
    pub fn label(self) -> &'static str {
        match self {
            PodState::Instrumented => "instrumented",
            PodState::Missed => "missed",
            PodState::OptedOut => "opted_out",
            PodState::Refused => "refused",
            PodState::RolledBack => "rolled_back",
        }
    }
}

impl std::fmt::Display for PodState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Classifies a live pod. Admission decides, as it would for this pod now;
/// the status annotation our patch wrote says what happened at creation.
pub fn classify(pod: &Pod, ctx: Context<'_>) -> PodState {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    let name = pod.metadata.name.as_deref().unwrap_or_default();
    let admitted = admission::admit(pod, namespace, name, ctx);
    let status = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(STATUS_ANNOTATION))
        .map(String::as_str);
    match (admitted.outcome, status) {
        // Opted out now wins over history: nobody should catch it up.
        (Outcome::OutOfScope | Outcome::NotApplicable, _) => PodState::OptedOut,
        (Outcome::RolledBack, _) => PodState::RolledBack,
        (_, Some("injected")) | (Outcome::AlreadyInjected, _) => PodState::Instrumented,
        (_, Some("skipped")) | (Outcome::Skipped | Outcome::Error, _) => PodState::Refused,
        (Outcome::Injected, _) => PodState::Missed,
    }
}

/// The workload a pod's coverage is reported under, and that catch-up and
/// rollback act on: its top-level controller, or the pod itself.
pub fn workload_of(pod: &Pod, ctx: Context<'_>) -> Option<Workload> {
    let namespace = pod.metadata.namespace.as_deref().unwrap_or_default();
    ctx.cluster
        .workload(pod, namespace)
        .or_else(|| workload::workload_from_names(pod))
}

/// The kinds the reconciler restarts; others (bare pods, Jobs, CronJobs,
/// bare ReplicaSets) are reported only.
pub fn restartable(kind: &str) -> bool {
    matches!(kind, "Deployment" | "StatefulSet" | "DaemonSet")
}

/// Why a pod counts as crash-looping, when it does.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    /// A bounded metric label: `oom_killed`, `crash_loop` or `restarts`.
    pub kind: &'static str,
    pub container: String,
    /// `exit code N` or `OOMKilled`, as the kubelet reported it.
    pub detail: String,
}

impl std::fmt::Display for Crash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "container {}: {} ({})",
            self.container, self.detail, self.kind
        )
    }
}

/// Whether a pod crash-loops: a container in `CrashLoopBackOff`, killed for
/// memory, or restarted `settings.restarts` times within the window (pods
/// started within the window; older ones only by the other two signs).
pub fn crash(pod: &Pod, settings: &Rollback, now: Timestamp) -> Option<Crash> {
    let status = pod.status.as_ref()?;
    let window = Duration::from_secs(settings.window_seconds);
    let started_recently = status
        .start_time
        .as_ref()
        .is_some_and(|t| within(t.0, now, window));
    status
        .container_statuses
        .iter()
        .flatten()
        .chain(status.init_container_statuses.iter().flatten())
        .find_map(|c| container_crash(c, settings.restarts, started_recently))
}

fn within(then: Timestamp, now: Timestamp, window: Duration) -> bool {
    now.duration_since(then).unsigned_abs() <= window
}

fn container_crash(c: &ContainerStatus, restarts: i32, started_recently: bool) -> Option<Crash> {
    let last = c.last_state.as_ref().and_then(|s| s.terminated.as_ref());
    let current = c.state.as_ref().and_then(|s| s.terminated.as_ref());
    let waiting = c
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .and_then(|w| w.reason.as_deref());
    let terminated = current.or(last);
    let detail = match terminated {
        Some(t) if t.reason.as_deref() == Some("OOMKilled") => "OOMKilled".to_owned(),
        Some(t) => format!("exit code {}", t.exit_code),
        None => "no exit recorded".to_owned(),
    };
    let kind = if terminated.is_some_and(|t| t.reason.as_deref() == Some("OOMKilled")) {
        "oom_killed"
    } else if waiting == Some("CrashLoopBackOff") {
        "crash_loop"
    } else if started_recently && c.restart_count >= restarts {
        "restarts"
    } else {
        return None;
    };
    Some(Crash {
        kind,
        container: c.name.clone(),
        detail,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Base;
    use crate::config::Config;
    use crate::inject::ROLLED_BACK_ANNOTATION;
    use crate::policy::StaticView;

    fn pod(namespace: &str, annotations: serde_json::Value, init: bool) -> Pod {
        let mut spec = serde_json::json!({"containers": [{
            "name": "app", "image": "python:3.12", "command": ["python3", "app.py"]
        }]});
        if init {
            spec["initContainers"] =
                serde_json::json!([{"name": crate::inject::OPERATOR_INIT_CONTAINER, "image": "x"}]);
        }
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app-1", "namespace": namespace, "annotations": annotations},
            "spec": spec
        }))
        .expect("pod")
    }

    fn state(pod: &Pod) -> PodState {
        let base = Base::new(Config::default());
        classify(
            pod,
            Context {
                base: &base,
                cluster: &StaticView,
            },
        )
    }

    #[test]
    fn each_state_from_a_pod_fixture() {
        let none = serde_json::json!({});
        assert_eq!(state(&pod("cxtm", none.clone(), false)), PodState::Missed);
        let injected = serde_json::json!({STATUS_ANNOTATION: "injected"});
        assert_eq!(state(&pod("cxtm", injected, true)), PodState::Instrumented);
        // Instrumented by hand or by the operator: the init container says so.
        assert_eq!(
            state(&pod("cxtm", none.clone(), true)),
            PodState::Instrumented
        );
        assert_eq!(
            state(&pod("other", none.clone(), false)),
            PodState::OptedOut
        );
        let opted_out =
            serde_json::json!({"instrumentation.opentelemetry.io/inject-python": "false"});
        assert_eq!(state(&pod("cxtm", opted_out, false)), PodState::OptedOut);
        let skipped = serde_json::json!({STATUS_ANNOTATION: "skipped"});
        assert_eq!(state(&pod("cxtm", skipped, false)), PodState::Refused);
        let missing_instrumentation =
            serde_json::json!({"instrumentation.opentelemetry.io/inject-python": "nope"});
        assert_eq!(
            state(&pod("cxtm", missing_instrumentation, false)),
            PodState::Refused
        );
        let rolled = serde_json::json!({ROLLED_BACK_ANNOTATION: "container app: exit code 3"});
        assert_eq!(state(&pod("cxtm", rolled, false)), PodState::RolledBack);
    }

    #[test]
    fn a_pod_opted_out_after_it_was_instrumented_counts_as_opted_out() {
        let both = serde_json::json!({
            STATUS_ANNOTATION: "injected",
            "instrumentation.opentelemetry.io/inject-python": "false"
        });
        assert_eq!(state(&pod("cxtm", both, true)), PodState::OptedOut);
    }

    #[test]
    fn state_labels_are_distinct() {
        let labels: std::collections::BTreeSet<&str> =
            PodState::ALL.iter().map(|s| s.label()).collect();
        assert_eq!(labels.len(), PodState::ALL.len());
    }

    fn with_status(status: serde_json::Value) -> Pod {
        let mut p = pod("cxtm", serde_json::json!({}), true);
        p.status = Some(serde_json::from_value(status).expect("status"));
        p
    }

    const NOW: &str = "2026-12-01T16:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().expect("timestamp")
    }

    #[test]
    fn crash_loops_are_recognised_by_each_sign() {
        let settings = Rollback::default();
        let looping = with_status(serde_json::json!({
            "startTime": "2026-12-01T10:00:00Z",
            "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": false,
                "restartCount": 1,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 3}}}]
        }));
        let c = crash(&looping, &settings, now()).expect("crash loop");
        assert_eq!((c.kind, c.detail.as_str()), ("crash_loop", "exit code 3"));
        let oom = with_status(serde_json::json!({
            "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": false,
                "restartCount": 0,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
        }));
        assert_eq!(
            crash(&oom, &settings, now()).map(|c| c.kind),
            Some("oom_killed")
        );
        let restarts = |start: &str, count: i32| {
            with_status(serde_json::json!({
                "startTime": start,
                "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true,
                    "restartCount": count, "state": {"running": {}},
                    "lastState": {"terminated": {"exitCode": 1}}}]
            }))
        };
        let recent = "2026-12-01T15:55:00Z";
        assert_eq!(
            crash(&restarts(recent, 3), &settings, now()).map(|c| c.kind),
            Some("restarts")
        );
        assert_eq!(crash(&restarts(recent, 2), &settings, now()), None);
        // Three restarts over a day are not a crash loop.
        assert_eq!(
            crash(&restarts("2026-11-30T16:00:00Z", 3), &settings, now()),
            None
        );
        let healthy = with_status(serde_json::json!({
            "containerStatuses": [{"name": "app", "image": "x", "imageID": "", "ready": true,
                "restartCount": 0, "state": {"running": {}}}]
        }));
        assert_eq!(crash(&healthy, &settings, now()), None);
    }
}
