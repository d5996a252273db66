//! Coverage over a set of pods: counts per namespace and state (the gauge),
//! and per workload (the `status` command, and what the reconciler acts on).

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::jiff::Timestamp;

use super::{Crash, PodState, classify, crash, workload_of};
use crate::admission::Context;
use crate::config::Rollback;

/// A workload (or a bare pod) in a namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WorkloadKey {
    pub namespace: String,
    /// `Deployment`, `StatefulSet`, ..., or `Pod` for a pod without an owner.
    pub kind: String,
    pub name: String,
}

impl std::fmt::Display for WorkloadKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}/{}", self.namespace, self.kind, self.name)
    }
}

/// What one workload's live pods are.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WorkloadSummary {
    pub states: BTreeMap<PodState, usize>,
    /// An instrumented pod that crash-loops, and why: rollback's trigger.
    pub instrumented_crash: Option<(String, Crash)>,
    /// A rolled-back (uninstrumented) pod that crash-loops too: the fault is not ours.
    pub rolled_back_crash: Option<(String, Crash)>,
}

impl WorkloadSummary {
    pub fn count(&self, state: PodState) -> usize {
        self.states.get(&state).copied().unwrap_or(0)
    }
}

/// Coverage of a set of pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Survey {
    /// Pods per namespace and state, for the namespaces the webhook covers:
    /// those configured for injection, and any with a pod it would act on.
    /// Every state of a covered namespace is present, zeros included.
    pub counts: BTreeMap<(String, PodState), i64>,
    pub workloads: BTreeMap<WorkloadKey, WorkloadSummary>,
}

/// Classifies every pod. `configured` are the namespaces the config injects
/// without annotations (always reported, even when empty).
pub fn survey<'a>(
    pods: impl IntoIterator<Item = &'a Pod>,
    ctx: Context<'_>,
    rollback: &Rollback,
    now: Timestamp,
) -> Survey {
    let mut covered: BTreeSet<String> = ctx.base.config().namespaces.iter().cloned().collect();
    let mut counts: BTreeMap<(String, PodState), i64> = BTreeMap::new();
    let mut workloads: BTreeMap<WorkloadKey, WorkloadSummary> = BTreeMap::new();
    for pod in pods {
        // A pod on its way out is not coverage, and is no crash signal.
        if pod.metadata.deletion_timestamp.is_some() || finished(pod) {
            continue;
        }
        let namespace = pod.metadata.namespace.clone().unwrap_or_default();
        let pod_name = pod.metadata.name.clone().unwrap_or_default();
        let state = classify(pod, ctx);
        if state != PodState::OptedOut {
            covered.insert(namespace.clone());
        }
        *counts.entry((namespace.clone(), state)).or_default() += 1;
        let key = match workload_of(pod, ctx) {
            Some(w) => WorkloadKey {
                namespace,
                kind: w.kind,
                name: w.name,
            },
            None => WorkloadKey {
                namespace,
                kind: "Pod".into(),
                name: pod_name.clone(),
            },
        };
        let summary = workloads.entry(key).or_default();
        *summary.states.entry(state).or_default() += 1;
        let slot = match state {
            PodState::Instrumented => &mut summary.instrumented_crash,
            PodState::RolledBack => &mut summary.rolled_back_crash,
            _ => continue,
        };
        if slot.is_none() {
            *slot = crash(pod, rollback, now).map(|c| (pod_name, c));
        }
    }
    counts.retain(|(ns, _), _| covered.contains(ns));
    for ns in &covered {
        for state in PodState::ALL {
            counts.entry((ns.clone(), state)).or_default();
        }
    }
    Survey { counts, workloads }
}

/// `Succeeded` or `Failed`: a Job's finished pod.
fn finished(pod: &Pod) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    matches!(phase, Some("Succeeded" | "Failed"))
}

/// The `status` table: one line per workload, its pods per state, and what
/// the reconciler would do about it.
pub fn render(survey: &Survey, namespace: Option<&str>) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{:<20} {:<40} {:>12} {:>6} {:>9} {:>7} {:>11}  NOTE",
        "NAMESPACE", "WORKLOAD", "INSTRUMENTED", "MISSED", "OPTED_OUT", "REFUSED", "ROLLED_BACK"
    );
    let mut totals: BTreeMap<PodState, usize> = BTreeMap::new();
    for (key, summary) in &survey.workloads {
        if namespace.is_some_and(|ns| ns != key.namespace) {
            continue;
        }
        for (state, n) in &summary.states {
            *totals.entry(*state).or_default() += n;
        }
        let c = |s| summary.count(s);
        let _ = writeln!(
            out,
            "{:<20} {:<40} {:>12} {:>6} {:>9} {:>7} {:>11}  {}",
            key.namespace,
            format!("{}/{}", key.kind, key.name),
            c(PodState::Instrumented),
            c(PodState::Missed),
            c(PodState::OptedOut),
            c(PodState::Refused),
            c(PodState::RolledBack),
            note(&key.kind, summary),
        );
    }
    let parts: Vec<String> = PodState::ALL
        .iter()
        .map(|s| format!("{} {}", totals.get(s).copied().unwrap_or(0), s.label()))
        .collect();
    let _ = writeln!(out, "total: {}", parts.join(", "));
    out
}

fn note(kind: &str, summary: &WorkloadSummary) -> String {
    if let Some((pod, crash)) = &summary.instrumented_crash {
        return format!("instrumented pod {pod} crash-loops: {crash}");
    }
    if let Some((pod, crash)) = &summary.rolled_back_crash {
        return format!("crashes uninstrumented too ({pod}: {crash})");
    }
    if summary.count(PodState::Missed) == 0 {
        return String::new();
    }
    if super::restartable(kind) {
        "missed: catch-up restarts it (fleet.catchUp.enabled), or kubectl rollout restart".into()
    } else {
        "missed: never restarted by catch-up; recreate it yourself".into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::admission::Base;
    use crate::config::Config;
    use crate::inject::STATUS_ANNOTATION;
    use crate::policy::StaticView;

    fn pod(ns: &str, name: &str, rs: Option<&str>, annotations: serde_json::Value) -> Pod {
        let owners = rs.map_or(serde_json::json!([]), |rs| {
            serde_json::json!([{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                "uid": "u", "controller": true}])
        });
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns, "annotations": annotations,
                "labels": {"pod-template-hash": "5d8f"}, "ownerReferences": owners},
            "spec": {"containers": [{"name": "app", "image": "python:3.12"}]}
        }))
        .expect("pod")
    }

    #[test]
    fn counts_per_namespace_and_workload_with_zeros_for_covered_namespaces() {
        let injected = serde_json::json!({STATUS_ANNOTATION: "injected"});
        let pods = [
            pod(
                "cxtm",
                "web-5d8f-a",
                Some("web-5d8f"),
                serde_json::json!({}),
            ),
            pod("cxtm", "web-5d8f-b", Some("web-5d8f"), injected),
            pod("cxtm", "bare", None, serde_json::json!({})),
            pod("kube-system", "dns", None, serde_json::json!({})),
        ];
        let base = Base::new(Config::default());
        let ctx = Context {
            base: &base,
            cluster: &StaticView,
        };
        let now: Timestamp = "2026-12-01T16:00:00Z".parse().expect("now");
        let s = survey(pods.iter(), ctx, &Rollback::default(), now);
        let get = |ns: &str, st| s.counts.get(&(ns.to_owned(), st)).copied();
        assert_eq!(get("cxtm", PodState::Missed), Some(2));
        assert_eq!(get("cxtm", PodState::Instrumented), Some(1));
        assert_eq!(get("cxtm", PodState::RolledBack), Some(0));
        // A namespace where we act on nothing is not ours to report.
        assert_eq!(get("kube-system", PodState::OptedOut), None);
        let web = WorkloadKey {
            namespace: "cxtm".into(),
            kind: "Deployment".into(),
            name: "web".into(),
        };
        assert_eq!(s.workloads[&web].count(PodState::Missed), 1);
        assert_eq!(s.workloads[&web].count(PodState::Instrumented), 1);
        let table = render(&s, Some("cxtm"));
        assert!(table.contains("Deployment/web"), "{table}");
        assert!(
            table.contains("Pod/bare") && table.contains("never restarted"),
            "{table}"
        );
        assert!(!table.contains("kube-system"), "{table}");
        assert!(table.contains("total: 1 instrumented, 2 missed"), "{table}");
    }
}
