//! One admission: the policy's verdict joined to the mutation. The webhook
//! ([`Reviewer`](crate::review::Reviewer)), `mutate`/`explain`
//! ([`offline`](crate::offline)) and the tests all call [`admit`], so they
//! cannot disagree about a pod. Everything admission knows about the cluster
//! (namespace annotations, Instrumentations, the pod's workload) comes
//! through one door, the [`ClusterView`].

use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;

use crate::config::Config;
use crate::delivery::{self, Chosen};
use crate::guard;
use crate::inject::{self, Injection, JsonPatch, ROLLED_BACK_ANNOTATION, Settings};
use crate::policy::{self, ClusterView, Scope};

/// The webhook's own configuration, resolved once: the config, the settings
/// built from it, and the guard's verdict on them.
#[derive(Debug)]
pub struct Base {
    config: Config,
    settings: Arc<Settings>,
    /// Why the settings cannot be used: a value the API server would refuse
    /// in the pod. A config read from a file never has one (it is refused at
    /// start); one built in code may.
    unusable: Option<String>,
    /// [`endpoint_warning`] of `settings`: the same for every review that
    /// uses them, so found once here (it was ~2k instructions per review).
    endpoint_lint: Option<String>,
}

impl Base {
    pub fn new(config: Config) -> Self {
        let settings = Settings::from_config(&config);
        let unusable = guard::check_settings(&settings).err().map(|problems| {
            let listed: Vec<String> = problems.iter().map(ToString::to_string).collect();
            format!(
                "the webhook's config has a value the API server would refuse in the pod: {}",
                listed.join("; ")
            )
        });
        Base {
            endpoint_lint: endpoint_warning(&settings),
            config,
            settings: Arc::new(settings),
            unusable,
        }
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }
}

/// What one admission reads: the webhook's base and the cluster.
#[derive(Clone, Copy)]
pub struct Context<'a> {
    pub base: &'a Base,
    pub cluster: &'a dyn ClusterView,
}

/// What became of a review, for metric labels, the log level and Events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// The patch instruments at least one container.
    Injected,
    /// The pod already has an auto-instrumentation init container.
    AlreadyInjected,
    /// In scope, but nothing could be instrumented safely.
    Skipped,
    /// The policy leaves the pod alone (not opted in, or opted out).
    OutOfScope,
    /// Not a pod CREATE: nothing to decide.
    NotApplicable,
    /// In scope, but its workload was rolled back (its instrumented pods
    /// crash-looped): admitted untouched until the annotation is removed.
    RolledBack,
    /// The pod asked for injection but could not have it (a missing or
    /// invalid Instrumentation, an undecodable review, ...).
    Error,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Injected,
        Outcome::AlreadyInjected,
        Outcome::Skipped,
        Outcome::OutOfScope,
        Outcome::NotApplicable,
        Outcome::RolledBack,
        Outcome::Error,
    ];

    /// The metric label and log field.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::AlreadyInjected => "already-injected",
            Outcome::Skipped => "skipped",
            Outcome::OutOfScope => "out-of-scope",
            Outcome::NotApplicable => "not-applicable",
            Outcome::RolledBack => "rolled-back",
            Outcome::Error => "error",
        }
    }

    /// A pod that wanted instrumentation and did not get it: someone should
    /// look (a warning-level log line and an Event on its owner).
    pub fn needs_attention(self) -> bool {
        matches!(
            self,
            Outcome::Skipped | Outcome::Error | Outcome::RolledBack
        )
    }

    /// Reviews nobody needs to read about one by one (debug level).
    pub fn is_routine(self) -> bool {
        matches!(self, Outcome::OutOfScope | Outcome::NotApplicable)
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

impl From<&inject::Outcome> for Outcome {
    fn from(outcome: &inject::Outcome) -> Self {
        match outcome {
            inject::Outcome::Injected => Outcome::Injected,
            inject::Outcome::AlreadyInjected { .. } => Outcome::AlreadyInjected,
            inject::Outcome::Skipped { .. } => Outcome::Skipped,
        }
    }
}

/// What admission decided for one pod.
#[derive(Clone, Debug, PartialEq)]
pub struct Admission {
    /// The policy's verdict (an unusable in-scope pod becomes `Unresolvable`).
    pub scope: Scope,
    pub outcome: Outcome,
    /// Why, in words: the policy's reason, or the mutation's.
    pub reason: String,
    /// The mutation, when the pod was in scope.
    pub injection: Option<Injection>,
    /// The response's `warnings`: the mutation's, then admission's own
    /// (the endpoint lint, the reason an in-scope pod is untouched).
    pub warnings: Vec<String>,
    /// The delivery asked for and used, when the pod was in scope.
    pub delivery: Option<Chosen>,
}

impl Admission {
    /// The JSON Patch to send, when there is anything to patch.
    pub fn patch(&self) -> Option<&JsonPatch> {
        self.injection
            .as_ref()
            .map(|i| &i.patch)
            .filter(|p| !p.is_empty())
    }

    /// Names of the containers the patch instruments.
    pub fn instrumented(&self) -> impl Iterator<Item = &str> {
        self.injection
            .iter()
            .flat_map(|i| i.containers.iter())
            .filter(|c| c.instrumented)
            .map(|c| c.name.as_str())
    }

    fn out_of_scope(why: String) -> Self {
        Admission {
            reason: why.clone(),
            scope: Scope::OutOfScope { why },
            outcome: Outcome::OutOfScope,
            injection: None,
            warnings: Vec::new(),
            delivery: None,
        }
    }

    /// In scope, but its workload was rolled back: left alone, and said so.
    fn after_rollback(rollback: &str, scope: Scope) -> Self {
        let reason = format!(
            "its workload was rolled back ({rollback}); remove the annotation {ROLLED_BACK_ANNOTATION} from the workload to instrument it again"
        );
        Admission {
            warnings: vec![not_instrumented(&reason)],
            scope,
            outcome: Outcome::RolledBack,
            reason,
            injection: None,
            delivery: None,
        }
    }

    fn unresolvable(why: String) -> Self {
        Admission {
            warnings: vec![not_instrumented(&why)],
            scope: Scope::Unresolvable { why: why.clone() },
            outcome: Outcome::Error,
            reason: why,
            injection: None,
            delivery: None,
        }
    }
}

/// Why the pod's workload was rolled back, when its template says it was.
pub fn rolled_back(pod: &Pod) -> Option<&str> {
    pod.metadata
        .annotations
        .as_ref()?
        .get(ROLLED_BACK_ANNOTATION)
        .map(String::as_str)
}

/// The warning for a pod admitted without the instrumentation it asked for.
pub fn not_instrumented(why: &str) -> String {
    format!("otel-injector: pod not instrumented: {why}")
}

/// Decides whether and how `pod` in `namespace` is instrumented. `name` is
/// the review's `request.name` (empty for a `generateName` pod). Never
/// fails: anything that cannot be done becomes an outcome with a reason.
pub fn admit(pod: &Pod, namespace: &str, name: &str, ctx: Context<'_>) -> Admission {
    let ns_annotations = ctx.cluster.namespace_annotations(namespace);
    let scope = policy::resolve(
        pod,
        namespace,
        ns_annotations.as_ref(),
        &ctx.base.config,
        &ctx.base.settings,
        ctx.cluster,
    );
    let (settings, container_names, platform, why) = match scope {
        Scope::Inject {
            settings,
            container_names,
            platform,
            why,
        } => (settings, container_names, platform, why),
        Scope::OutOfScope { why } => return Admission::out_of_scope(why),
        Scope::Unresolvable { why } => return Admission::unresolvable(why),
    };
    if let Some(rollback) = rolled_back(pod) {
        let scope = Scope::Inject {
            settings,
            container_names,
            platform,
            why,
        };
        return Admission::after_rollback(rollback, scope);
    }
    // Instrumentation values are checked where they are read; the base
    // settings once, here, as every settings object is built on them.
    if let Some(unusable) = &ctx.base.unusable {
        return Admission::unresolvable(unusable.clone());
    }
    let mut delivery_warnings = Vec::new();
    let chosen = delivery::choose(
        pod,
        ns_annotations.as_ref(),
        settings.delivery,
        &ctx.cluster.image_volumes(),
        &mut delivery_warnings,
    );
    let request = inject::Request {
        namespace,
        name,
        container_names: container_names.clone(),
        platform,
        workload: ctx.cluster.workload(pod, namespace),
        delivery: Some(chosen.delivery),
    };
    let injection = inject::inject(pod, &settings, &request);
    let outcome = Outcome::from(&injection.outcome);
    let reason = injection_reason(&injection.outcome, &why);
    // An Instrumentation's settings are new each review; the base's lint is known.
    let lint = if Arc::ptr_eq(&settings, &ctx.base.settings) {
        ctx.base.endpoint_lint.clone()
    } else {
        endpoint_warning(&settings)
    };
    let warnings = admission_warnings(&injection, &settings, delivery_warnings, lint);
    Admission {
        scope: Scope::Inject {
            settings,
            container_names,
            platform,
            why,
        },
        outcome,
        reason,
        injection: Some(injection),
        warnings,
        delivery: Some(chosen),
    }
}

/// The admission's reason for a pod in scope: why it was chosen when it is
/// injected, else why the mutation left it alone.
fn injection_reason(outcome: &inject::Outcome, why: &str) -> String {
    match outcome {
        inject::Outcome::Injected => why.to_owned(),
        inject::Outcome::AlreadyInjected { marker } => {
            format!("pod already has {marker}")
        }
        inject::Outcome::Skipped { reason } => reason.clone(),
    }
}

/// The response's warnings: the mutation's, then (for an injected pod) the
/// delivery's and what of an Instrumentation is not applied, then the
/// endpoint lint (`lint`, [`endpoint_warning`] of `settings`).
fn admission_warnings(
    injection: &Injection,
    settings: &Settings,
    delivery_warnings: Vec<String>,
    lint: Option<String>,
) -> Vec<String> {
    // The mutation keeps its own for callers that read it alone; most pods have none.
    let mut warnings = injection.warnings.clone();
    if injection.outcome == inject::Outcome::Injected {
        warnings.extend(delivery_warnings);
        warnings.extend(
            settings
                .not_applied
                .iter()
                .map(|n| format!("otel-injector: {n}")),
        );
    }
    warnings.extend(lint);
    warnings
}

/// What the container will see for the exporter: configured env beats the
/// generated values. The seed's Instrumentation had exactly this mistake.
pub fn endpoint_warning(settings: &Settings) -> Option<String> {
    let from_env = |name: &str| {
        settings
            .env
            .iter()
            .find(|v| v.name == name)
            .and_then(|v| v.value.as_deref())
    };
    let endpoint = from_env("OTEL_EXPORTER_OTLP_ENDPOINT").or(settings.endpoint.as_deref())?;
    let protocol = from_env("OTEL_EXPORTER_OTLP_PROTOCOL").unwrap_or(&settings.protocol);
    endpoint_mismatch(endpoint, protocol).map(|problem| format!("otel-injector: {problem}"))
}

/// The OTLP port that does not speak `protocol`: HTTP (`http/protobuf`,
/// `http/json`) on the gRPC port 4317, or gRPC on the HTTP port 4318. Both
/// fail silently in the app. `None` when they agree or the endpoint has no
/// port. `verify` and admission share it, so they agree on what is wrong.
pub fn endpoint_mismatch(endpoint: &str, protocol: &str) -> Option<String> {
    let port = endpoint_port(endpoint)?;
    let http = protocol.trim().starts_with("http");
    let grpc = protocol.trim() == "grpc";
    match port {
        "4317" if http => Some(format!(
            "OTLP endpoint {endpoint} is the gRPC port 4317 but the protocol is {protocol}; Python's HTTP exporter needs port 4318"
        )),
        "4318" if grpc => Some(format!(
            "OTLP endpoint {endpoint} is the HTTP port 4318 but the protocol is grpc; the gRPC exporter needs port 4317"
        )),
        _ => None,
    }
}

/// The port of an endpoint URL (`http://host:4318/v1/traces` → `4318`), or
/// of a bare `host:port`.
fn endpoint_port(endpoint: &str) -> Option<&str> {
    let rest = endpoint
        .trim()
        .split_once("://")
        .map_or(endpoint.trim(), |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    // Userinfo (`user:pass@host`) and IPv6 brackets (`[::1]:4317`) aside.
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let after_host = match host_port.rsplit_once(']') {
        Some((_, after)) => after,
        None => host_port,
    };
    let (_, port) = after_host.rsplit_once(':')?;
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then_some(port)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_lint_flags_both_mismatches_and_reads_paths() {
        let flagged = [
            ("http://collector:4317", "http/protobuf"),
            ("http://collector:4317/", "http/json"),
            ("http://collector:4317/v1/traces", "http/protobuf"),
            ("collector.ao.svc:4317", "http/protobuf"),
            ("http://collector:4318", "grpc"),
            ("https://user:pw@collector:4318/otlp", "grpc"),
            ("http://[fd00::1]:4317/x", "http/protobuf"),
        ];
        for (endpoint, protocol) in flagged {
            assert!(
                endpoint_mismatch(endpoint, protocol).is_some(),
                "{endpoint} {protocol}"
            );
        }
        let fine = [
            ("http://collector:4318", "http/protobuf"),
            ("http://collector:4318/v1/traces", "http/protobuf"),
            ("http://collector:4317", "grpc"),
            ("http://collector", "http/protobuf"),
            ("http://collector:43170", "http/protobuf"),
            ("http://collector/4317", "http/protobuf"),
        ];
        for (endpoint, protocol) in fine {
            assert_eq!(
                endpoint_mismatch(endpoint, protocol),
                None,
                "{endpoint} {protocol}"
            );
        }
    }

    fn pod(annotations: serde_json::Value) -> Pod {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "app", "annotations": annotations},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}
        }))
        .expect("pod")
    }

    #[test]
    fn a_config_built_in_code_with_a_value_the_api_server_refuses_injects_nothing() {
        // Config::from_file refuses this at start; a Config built in code
        // (tests, benchmarks, a library user) is checked here instead.
        let config = Config {
            volume_size_limit: Some("200MB".into()),
            ..Config::default()
        };
        let base = Base::new(config);
        let context = Context {
            base: &base,
            cluster: &policy::StaticView,
        };
        let admitted = admit(&pod(serde_json::json!({})), "cxtm", "app", context);
        assert_eq!(admitted.outcome, Outcome::Error);
        assert_eq!(admitted.patch(), None);
        assert!(
            admitted
                .warnings
                .iter()
                .any(|w| w.contains("volumeSizeLimit") && w.contains("webhook's config")),
            "{:?}",
            admitted.warnings
        );
        let opted_out =
            serde_json::json!({"instrumentation.opentelemetry.io/inject-python": "false"});
        let admitted = admit(&pod(opted_out), "cxtm", "app", context);
        assert_eq!(admitted.outcome, Outcome::OutOfScope);
    }

    #[test]
    fn a_rolled_back_pod_is_admitted_untouched_with_a_warning_unless_opted_out() {
        let base = Base::new(Config::default());
        let context = Context {
            base: &base,
            cluster: &policy::StaticView,
        };
        let rolled = serde_json::json!({ROLLED_BACK_ANNOTATION: "app: exit code 1"});
        let admitted = admit(&pod(rolled), "cxtm", "app", context);
        assert_eq!(admitted.outcome, Outcome::RolledBack);
        assert_eq!(admitted.patch(), None);
        assert!(
            admitted.warnings.iter().any(|w| w.contains("exit code 1")),
            "{:?}",
            admitted.warnings
        );
        // Out of scope stays out of scope: the annotation does not put a pod in.
        let admitted = admit(&pod(rolled_out()), "cxtm", "app", context);
        assert_eq!(admitted.outcome, Outcome::OutOfScope);
        let admitted = admit(&pod(serde_json::json!({})), "cxtm", "app", context);
        assert_eq!(admitted.outcome, Outcome::Injected);
    }

    fn rolled_out() -> serde_json::Value {
        serde_json::json!({
            ROLLED_BACK_ANNOTATION: "app: OOMKilled",
            "instrumentation.opentelemetry.io/inject-python": "false"
        })
    }

    #[test]
    fn outcome_labels_are_distinct() {
        let labels: std::collections::BTreeSet<&str> =
            Outcome::ALL.iter().map(|o| o.label()).collect();
        assert_eq!(labels.len(), Outcome::ALL.len());
    }
}
