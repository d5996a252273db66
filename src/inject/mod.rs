//! The pure mutation: a pod and resolved settings in, a JSON Patch and a
//! decision out. No I/O, no clock, no globals: the server, the offline CLI,
//! the benchmarks and the fuzzer all call [`inject`].
//!
//! The patch only appends to arrays and sets object members, so everything
//! the pod already had survives: the seed's hand-made `kubectl patch`
//! commands replaced whole arrays and would have wiped existing env and volumes.

pub mod command;
pub mod patch;
pub mod workload;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use indexmap::IndexMap;
use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, ObjectFieldSelector, Pod, PodSpec,
    ResourceRequirements, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::config::{CommandWrapper, Config, Platform};
use command::Wrap;
pub use patch::JsonPatch;
use patch::{PatchBuilder, pointer};
pub use workload::Workload;

/// Annotations the patch writes so anyone can read the outcome from the pod.
pub const STATUS_ANNOTATION: &str = "otel-injector.io/status";
pub const CONTAINERS_ANNOTATION: &str = "otel-injector.io/containers";
pub const REASON_ANNOTATION: &str = "otel-injector.io/reason";
pub const VERSION_ANNOTATION: &str = "otel-injector.io/version";

/// Init container names that mean "already instrumented for Python": ours
/// (configurable) and the OpenTelemetry Operator's.
pub const OPERATOR_INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-python";

/// Everything the mutation needs to know about what to inject, already
/// resolved from the config and, where one applies, an Instrumentation resource.
#[derive(Clone, Debug, PartialEq)]
pub struct Settings {
    pub image: String,
    pub image_pull_policy: Option<String>,
    pub init_container_name: String,
    pub volume_name: String,
    pub mount_path: String,
    pub volume_size_limit: Option<String>,
    pub init_container_resources: Option<ResourceRequirements>,
    pub endpoint: Option<String>,
    pub protocol: String,
    /// Env in precedence order, first wins (`python.env`, then `spec.env`, then config).
    pub env: Vec<EnvVar>,
    pub resource_attributes: IndexMap<String, String>,
    pub kubernetes_resource_attributes: bool,
    pub propagators: Vec<String>,
    pub sampler: Option<Sampler>,
    pub node_selector: BTreeMap<String, String>,
    pub command_wrapper: CommandWrapper,
    pub sidecars: Vec<String>,
    pub platform: Platform,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sampler {
    pub kind: String,
    pub argument: Option<String>,
}

impl Settings {
    pub fn from_config(config: &Config) -> Self {
        Settings {
            image: config.image.clone(),
            image_pull_policy: config.image_pull_policy.clone(),
            init_container_name: config.init_container_name.clone(),
            volume_name: config.volume_name.clone(),
            mount_path: config.mount_path.trim_end_matches('/').to_owned(),
            volume_size_limit: config.volume_size_limit.clone(),
            init_container_resources: config.init_container_resources.clone(),
            endpoint: config.exporter.endpoint.clone(),
            protocol: config.exporter.protocol.clone(),
            env: config.env.clone(),
            resource_attributes: config.resource_attributes.clone(),
            kubernetes_resource_attributes: config.kubernetes_resource_attributes,
            propagators: Vec::new(),
            sampler: None,
            node_selector: config.node_selector.clone(),
            command_wrapper: config.command_wrapper.clone(),
            sidecars: config.sidecars.clone(),
            platform: config.platform,
        }
    }

    /// `<mount>/opentelemetry/instrumentation/auto_instrumentation`, where `sitecustomize` lives.
    pub fn pythonpath_prefix(&self) -> String {
        format!(
            "{}/opentelemetry/instrumentation/auto_instrumentation",
            self.mount_path
        )
    }
}

/// Per-pod choices made from annotations by the policy layer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Request<'a> {
    pub namespace: &'a str,
    /// `request.name` of the AdmissionReview (may be empty for `generateName` pods).
    pub name: &'a str,
    /// Explicit target containers (`container-names` annotations); `None`: the default target.
    pub container_names: Option<Vec<String>>,
    /// Platform chosen by annotation; `None`: the settings' default.
    pub platform: Option<Platform>,
    /// The owning workload, when the caller resolved it from a cache.
    pub workload: Option<Workload>,
}

/// What happened to one container.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerReport {
    pub name: String,
    pub instrumented: bool,
    /// What was done, or why not (wrapped or not, and why).
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    /// The pod already carries an auto-instrumentation init container.
    AlreadyInjected {
        marker: String,
    },
    /// In scope, but nothing could be instrumented safely.
    Skipped {
        reason: String,
    },
}

impl Outcome {
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Injected => "injected",
            Outcome::AlreadyInjected { .. } => "already-injected",
            Outcome::Skipped { .. } => "skipped",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Injection {
    pub outcome: Outcome,
    pub patch: JsonPatch,
    pub containers: Vec<ContainerReport>,
    /// Messages for the admission response's `warnings`.
    pub warnings: Vec<String>,
}

/// Computes the patch that instruments `pod`. Never fails: anything it cannot
/// do safely becomes a skip with a reason.
pub fn inject(pod: &Pod, settings: &Settings, request: &Request<'_>) -> Injection {
    let Some(spec) = pod.spec.as_ref() else {
        return skipped(pod, Vec::new(), Vec::new(), "pod has no spec".into());
    };
    if let Some(refusal) = refuse(pod, spec, settings) {
        return refusal;
    }
    let mut warnings = Vec::new();
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let targets = choose_targets(
        &spec.containers,
        init_containers,
        settings,
        request,
        &mut warnings,
    );
    let fallback_workload = workload::workload_from_names(pod);
    let shared = Shared {
        pod,
        settings,
        request,
        service_name: workload::service_name(pod, request.workload.as_ref(), request.name),
        workload: request.workload.as_ref().or(fallback_workload.as_ref()),
        pythonpath_prefix: settings.pythonpath_prefix(),
    };
    let mut patch = PatchBuilder::default();
    let reports: Vec<ContainerReport> = spec
        .containers
        .iter()
        .enumerate()
        .filter(|(index, _)| targets.contains(index))
        .map(|(index, container)| instrument_container(&mut patch, index, container, &shared))
        .collect();

    let Some(first) = reports.iter().find(|r| r.instrumented) else {
        let reason = if reports.is_empty() {
            "no container to instrument".to_owned()
        } else {
            describe(&reports)
        };
        warnings.push(format!("otel-injector: pod not instrumented: {reason}"));
        return skipped(pod, reports, warnings, reason);
    };
    // Pod-level additions come after the containers so container indexes stay valid.
    add_init_container_and_volume(&mut patch, spec, settings, request, &first.name);
    add_node_selector(
        &mut patch,
        spec.node_selector.as_ref(),
        &settings.node_selector,
        &mut warnings,
    );
    let names: Vec<&str> = reports
        .iter()
        .filter(|r| r.instrumented)
        .map(|r| r.name.as_str())
        .collect();
    status_annotations(
        &mut patch,
        pod,
        "injected",
        &names.join(","),
        &describe(&reports),
    );
    Injection {
        outcome: Outcome::Injected,
        patch: patch.build(),
        containers: reports,
        warnings,
    }
}

/// `container: reason` for each report, joined.
fn describe(reports: &[ContainerReport]) -> String {
    reports
        .iter()
        .map(|r| format!("{}: {}", r.name, r.reason))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The pod as a whole cannot (or need not) be injected: it already is, or
/// our volume or init container name is taken.
fn refuse(pod: &Pod, spec: &PodSpec, settings: &Settings) -> Option<Injection> {
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    if let Some(marker) = init_containers
        .iter()
        .map(|c| c.name.as_str())
        .find(|n| *n == settings.init_container_name || *n == OPERATOR_INIT_CONTAINER)
    {
        return Some(Injection {
            outcome: Outcome::AlreadyInjected {
                marker: marker.to_owned(),
            },
            patch: JsonPatch::empty(),
            containers: Vec::new(),
            warnings: Vec::new(),
        });
    }
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    let reason = if volumes.iter().any(|v| v.name == settings.volume_name) {
        format!(
            "pod already has a volume named {:?} but no init container {:?}; not injecting to avoid a clash",
            settings.volume_name, settings.init_container_name
        )
    } else if spec
        .containers
        .iter()
        .any(|c| c.name == settings.init_container_name)
    {
        // Container names are unique across containers and init containers:
        // a second one would get the mutated pod rejected by the API server.
        format!(
            "pod already has an app container named {:?}; not adding an init container of the same name",
            settings.init_container_name
        )
    } else {
        return None;
    };
    Some(skipped(pod, Vec::new(), vec![reason.clone()], reason))
}

/// What every instrumented container of one pod shares.
struct Shared<'a> {
    pod: &'a Pod,
    settings: &'a Settings,
    request: &'a Request<'a>,
    service_name: String,
    workload: Option<&'a Workload>,
    pythonpath_prefix: String,
}

/// Adds the mount, env and wrapped command of one container to the patch,
/// or says why it is left alone.
fn instrument_container(
    patch: &mut PatchBuilder,
    index: usize,
    container: &Container,
    shared: &Shared<'_>,
) -> ContainerReport {
    let settings = shared.settings;
    let plan = match plan_container(container, settings, &shared.pythonpath_prefix) {
        Ok(plan) => plan,
        Err(reason) => {
            return ContainerReport {
                name: container.name.clone(),
                instrumented: false,
                reason,
            };
        }
    };
    let mut base = String::with_capacity(48);
    base.push_str("/spec/containers/");
    base.push_str(itoa::Buffer::new().format(index));
    base.push('/');
    // `format!` costs several times a push_str here, and a review builds ~15 paths.
    let path = |rest: &str| {
        let mut path = String::with_capacity(base.len() + rest.len() + 8);
        path.push_str(&base);
        path.push_str(rest);
        path
    };
    let mount = VolumeMount {
        mount_path: settings.mount_path.clone(),
        name: settings.volume_name.clone(),
        ..Default::default()
    };
    patch.append(
        &path("volumeMounts"),
        container.volume_mounts.is_some(),
        &mount,
    );
    let mut generated = generated_env(container, shared);
    if let Some(env_index) = plan.user_pythonpath_at {
        let mut env_path = path("env/");
        env_path.push_str(itoa::Buffer::new().format(env_index));
        env_path.push_str("/value");
        patch.add(&env_path, &plan.pythonpath);
    } else if let Some(var) = generated.iter_mut().find(|v| v.name == "PYTHONPATH") {
        var.value = Some(plan.pythonpath);
    }
    patch.add_env(&path("env"), container.env.is_some(), &generated);
    let reason = match plan.wrap {
        Wrap::Wrapped(new_command) => {
            patch.add(&path("command"), &new_command);
            "instrumented; command wrapped with opentelemetry-instrument".to_owned()
        }
        Wrap::NotWrapped(why) => format!("instrumented; command not wrapped: {why}"),
    };
    ContainerReport {
        name: container.name.clone(),
        instrumented: true,
        reason,
    }
}

/// The init container that copies the instrumentation, and its volume.
fn add_init_container_and_volume(
    patch: &mut PatchBuilder,
    spec: &PodSpec,
    settings: &Settings,
    request: &Request<'_>,
    first_instrumented: &str,
) {
    let security_context = spec
        .containers
        .iter()
        .find(|c| c.name == first_instrumented)
        .and_then(|c| c.security_context.clone());
    let platform = request.platform.unwrap_or(settings.platform);
    let init = Container {
        name: settings.init_container_name.clone(),
        image: Some(settings.image.clone()),
        image_pull_policy: settings.image_pull_policy.clone(),
        command: Some(vec![
            "cp".into(),
            "-r".into(),
            platform.source_dir().into(),
            format!("{}/", settings.mount_path),
        ]),
        volume_mounts: Some(
            std::iter::once(VolumeMount {
                mount_path: settings.mount_path.clone(),
                name: settings.volume_name.clone(),
                ..Default::default()
            })
            .chain(service_account_token_mount(spec))
            .collect(),
        ),
        resources: settings.init_container_resources.clone(),
        // Under a restricted Pod Security level an init container without
        // the app's securityContext would get the whole pod rejected.
        security_context,
        ..Default::default()
    };
    patch.append(
        "/spec/initContainers",
        spec.init_containers.is_some(),
        &init,
    );
    let volume = Volume {
        name: settings.volume_name.clone(),
        empty_dir: Some(EmptyDirVolumeSource {
            size_limit: settings.volume_size_limit.clone().map(Quantity),
            ..Default::default()
        }),
        ..Default::default()
    };
    patch.append("/spec/volumes", spec.volumes.is_some(), &volume);
}

/// Where the ServiceAccount admission plugin mounts the API token, and the
/// prefix of the projected volume it adds.
const SERVICE_ACCOUNT_TOKEN_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
const SERVICE_ACCOUNT_VOLUME_PREFIX: &str = "kube-api-access-";

/// The API token mount the ServiceAccount admission plugin gave the pod's
/// containers, for the init container too.
///
/// After a webhook changes a pod, the API server runs its built-in mutating
/// plugins again; the ServiceAccount plugin then adds exactly this mount to
/// the new init container. The pod has changed since our call, so
/// `reinvocationPolicy: IfNeeded` would call us a second time, only to answer
/// "already injected": two calls per pod in every cluster. With the mount
/// already there the plugin changes nothing, the final pod is the same, and a
/// change by a later webhook still gets us reinvoked.
///
/// As the plugin does: the first `kube-api-access-*` volume, read-only, at the
/// default path. Only when the pod does not opt out of automounting and one of
/// its containers already mounts that volume there (the plugin's own work).
fn service_account_token_mount(spec: &PodSpec) -> Option<VolumeMount> {
    if spec.automount_service_account_token == Some(false) {
        return None;
    }
    let volume = spec
        .volumes
        .as_deref()?
        .iter()
        .find(|v| v.name.starts_with(SERVICE_ACCOUNT_VOLUME_PREFIX))?;
    let mounted = spec
        .containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .flat_map(|c| c.volume_mounts.iter().flatten())
        .any(|m| m.name == volume.name && m.mount_path == SERVICE_ACCOUNT_TOKEN_PATH);
    mounted.then(|| VolumeMount {
        name: volume.name.clone(),
        mount_path: SERVICE_ACCOUNT_TOKEN_PATH.to_owned(),
        read_only: Some(true),
        ..Default::default()
    })
}

fn skipped(
    pod: &Pod,
    containers: Vec<ContainerReport>,
    warnings: Vec<String>,
    reason: String,
) -> Injection {
    let mut patch = PatchBuilder::default();
    status_annotations(&mut patch, pod, "skipped", "", &reason);
    Injection {
        outcome: Outcome::Skipped { reason },
        patch: patch.build(),
        containers,
        warnings,
    }
}

/// Writes the outcome annotations, only where they differ from what the pod
/// already says, so a re-admission of our own output yields an empty patch.
fn status_annotations(
    patch: &mut PatchBuilder,
    pod: &Pod,
    status: &str,
    containers: &str,
    reason: &str,
) {
    let existing = pod.metadata.annotations.as_ref();
    let mut wanted = vec![
        (STATUS_ANNOTATION, status),
        (VERSION_ANNOTATION, env!("CARGO_PKG_VERSION")),
    ];
    if !containers.is_empty() {
        wanted.push((CONTAINERS_ANNOTATION, containers));
    }
    wanted.push((REASON_ANNOTATION, reason));
    let missing: Vec<(&str, &str)> = wanted
        .into_iter()
        .filter(|(k, v)| existing.and_then(|a| a.get(*k)).map(String::as_str) != Some(*v))
        .collect();
    if missing.is_empty() {
        return;
    }
    match existing {
        None => patch.add_object("/metadata/annotations", &missing),
        Some(_) => {
            for (k, v) in missing {
                patch.add(&pointer(["metadata", "annotations", k]), v);
            }
        }
    }
}

fn add_node_selector(
    patch: &mut PatchBuilder,
    existing: Option<&BTreeMap<String, String>>,
    wanted: &BTreeMap<String, String>,
    warnings: &mut Vec<String>,
) {
    if wanted.is_empty() {
        return;
    }
    match existing {
        None => patch.add("/spec/nodeSelector", wanted),
        Some(existing) => {
            for (key, value) in wanted {
                match existing.get(key) {
                    None => patch.add(&pointer(["spec", "nodeSelector", key]), value),
                    Some(v) if v == value => {}
                    Some(v) => warnings.push(format!(
                        "otel-injector: nodeSelector {key}={v} set by the pod is kept (config wants {key}={value})"
                    )),
                }
            }
        }
    }
}

/// Indexes of the containers to instrument.
fn choose_targets(
    containers: &[Container],
    init_containers: &[Container],
    settings: &Settings,
    request: &Request<'_>,
    warnings: &mut Vec<String>,
) -> Vec<usize> {
    match &request.container_names {
        Some(names) => {
            let mut targets = Vec::new();
            for name in names {
                match containers.iter().position(|c| &c.name == name) {
                    Some(i) if !targets.contains(&i) => targets.push(i),
                    Some(_) => {}
                    // Deliberate: init containers run before (or, appended, after
                    // ours) in order, so instrumenting one is not safe in general.
                    None if init_containers.iter().any(|c| &c.name == name) => warnings.push(format!(
                        "otel-injector: {name:?} is an init container; only app containers are instrumented"
                    )),
                    None => warnings.push(format!(
                        "otel-injector: container {name:?} named in the container-names annotation is not in the pod"
                    )),
                }
            }
            targets.sort_unstable();
            targets
        }
        None => containers
            .iter()
            .position(|c| !settings.sidecars.iter().any(|s| s == &c.name))
            .into_iter()
            .collect(),
    }
}

struct ContainerPlan {
    /// The container's `PYTHONPATH`.
    pythonpath: String,
    /// Index in `env` of the user's own `PYTHONPATH`, which `pythonpath` replaces.
    user_pythonpath_at: Option<usize>,
    wrap: Wrap,
}

fn plan_container(
    container: &Container,
    settings: &Settings,
    prefix: &str,
) -> Result<ContainerPlan, String> {
    let env = container.env.as_deref().unwrap_or_default();
    let user_pythonpath = env.iter().enumerate().find(|(_, v)| v.name == "PYTHONPATH");
    if let Some((_, var)) = user_pythonpath
        && var.value_from.is_some()
    {
        return Err("PYTHONPATH comes from valueFrom, so it cannot be merged; set it as a plain value to instrument".into());
    }
    if let Some(clash) = container
        .volume_mounts
        .as_deref()
        .unwrap_or_default()
        .iter()
        .find(|m| m.mount_path.trim_end_matches('/') == settings.mount_path)
    {
        return Err(format!(
            "volume {:?} is already mounted at {}; not mounting the instrumentation over it",
            clash.name, settings.mount_path
        ));
    }
    let wrap = if settings.command_wrapper.enabled {
        command::wrap(
            container.command.as_deref(),
            &settings.mount_path,
            &settings.command_wrapper,
        )
    } else {
        Wrap::NotWrapped(
            "command wrapper disabled in config: PYTHONPATH's sitecustomize instruments it",
        )
    };
    let user = user_pythonpath
        .and_then(|(_, v)| v.value.as_deref())
        .unwrap_or_default();
    let mut pythonpath = String::with_capacity(prefix.len() + user.len() + 48);
    pythonpath.push_str(prefix);
    pythonpath.push(':');
    if !user.is_empty() {
        pythonpath.push_str(user);
        pythonpath.push(':');
    }
    pythonpath.push_str(&settings.mount_path);
    // `opentelemetry-instrument` puts the working directory on PYTHONPATH;
    // without it, sitecustomize runs before any server (gunicorn, uvicorn)
    // has added it to sys.path, and the Django instrumentation cannot import
    // the app's settings then (operator #2302: every request answers 500).
    // Last, so that neither the app's nor our packages are shadowed by it.
    if matches!(wrap, Wrap::NotWrapped(_)) {
        pythonpath.push_str(":.");
    }
    Ok(ContainerPlan {
        pythonpath,
        user_pythonpath_at: user_pythonpath.map(|(i, _)| i),
        wrap,
    })
}

fn plain(name: &str, value: impl Into<String>) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: Some(value.into()),
        value_from: None,
    }
}

fn field_ref(name: &str, path: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.to_owned(),
                api_version: None,
            }),
            ..Default::default()
        }),
    }
}

/// The env vars to append to one container, in the order that makes
/// `$(VAR)` references resolve (`OTEL_RESOURCE_ATTRIBUTES` after the vars it
/// uses). Precedence: the container's own env > `settings.env` > generated.
fn generated_env(container: &Container, shared: &Shared<'_>) -> Vec<EnvVar> {
    let settings = shared.settings;
    let (mut generated, extra_at) = exporter_env(settings, &shared.pythonpath_prefix);
    if settings.kubernetes_resource_attributes {
        generated.push(field_ref(
            "OTEL_RESOURCE_ATTRIBUTES_POD_NAME",
            "metadata.name",
        ));
        generated.push(field_ref(
            "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME",
            "spec.nodeName",
        ));
    }
    generated.push(plain(
        "OTEL_RESOURCE_ATTRIBUTES",
        resource_attributes(container, shared),
    ));
    generated.push(plain("OTEL_SERVICE_NAME", shared.service_name.as_str()));
    with_overrides(generated, extra_at, &settings.env, container)
}

/// `PYTHONPATH`, the exporters and the SDK's settings; and the index where
/// the config's extra env goes (after the exporters).
fn exporter_env(settings: &Settings, pythonpath_prefix: &str) -> (Vec<EnvVar>, usize) {
    let mut generated: Vec<EnvVar> = Vec::with_capacity(16);
    generated.push(plain(
        "PYTHONPATH",
        format!("{pythonpath_prefix}:{}", settings.mount_path),
    ));
    for name in [
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_LOGS_EXPORTER",
    ] {
        generated.push(plain(name, "otlp"));
    }
    let extra_at = generated.len();
    if let Some(endpoint) = &settings.endpoint {
        generated.push(plain("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()));
    }
    generated.push(plain(
        "OTEL_EXPORTER_OTLP_PROTOCOL",
        settings.protocol.as_str(),
    ));
    if !settings.propagators.is_empty() {
        generated.push(plain("OTEL_PROPAGATORS", settings.propagators.join(",")));
    }
    if let Some(sampler) = &settings.sampler {
        generated.push(plain("OTEL_TRACES_SAMPLER", sampler.kind.as_str()));
        if let Some(arg) = &sampler.argument {
            generated.push(plain("OTEL_TRACES_SAMPLER_ARG", arg.as_str()));
        }
    }
    (generated, extra_at)
}

/// `OTEL_RESOURCE_ATTRIBUTES`: the configured ones first, then the
/// operator's `k8s.*` names, `service.version` and `service.namespace`
/// (the first value of a key wins).
fn resource_attributes(container: &Container, shared: &Shared<'_>) -> String {
    let settings = shared.settings;
    let namespace = shared.request.namespace;
    // Borrowed where possible: this runs once per container on every review.
    let mut attributes: Vec<(&str, Cow<'_, str>)> =
        Vec::with_capacity(settings.resource_attributes.len() + 8);
    attributes.extend(
        settings
            .resource_attributes
            .iter()
            .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str()))),
    );
    if settings.kubernetes_resource_attributes {
        attributes.push(("k8s.container.name", Cow::Borrowed(&container.name)));
        attributes.push(("k8s.namespace.name", Cow::Borrowed(namespace)));
        attributes.push((
            "k8s.node.name",
            Cow::Borrowed("$(OTEL_RESOURCE_ATTRIBUTES_NODE_NAME)"),
        ));
        attributes.push((
            "k8s.pod.name",
            Cow::Borrowed("$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME)"),
        ));
        if let Some((key, w)) = shared.workload.and_then(|w| Some((w.attribute_key()?, w))) {
            attributes.push((key, Cow::Borrowed(&w.name)));
        }
        attributes.push((
            "service.instance.id",
            Cow::Owned(format!(
                "{namespace}.$(OTEL_RESOURCE_ATTRIBUTES_POD_NAME).{}",
                container.name
            )),
        ));
    }
    if let Some(version) = workload::service_version(shared.pod, container.image.as_deref()) {
        attributes.push(("service.version", Cow::Owned(version)));
    }
    attributes.push(("service.namespace", Cow::Borrowed(namespace)));
    let mut joined = String::with_capacity(320);
    for (k, v) in first_per_key(&attributes, |(k, _)| k) {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(k);
        joined.push('=');
        joined.push_str(v);
    }
    joined
}

/// `generated` with the configured env applied: a configured var replaces a
/// generated one in place, the rest go in at `extra_at`; then whatever the
/// container sets itself is dropped (its own value wins).
fn with_overrides(
    generated: Vec<EnvVar>,
    extra_at: usize,
    configured: &[EnvVar],
    container: &Container,
) -> Vec<EnvVar> {
    let overrides = first_per_key(configured, |v| &v.name);
    let is_generated = |name: &str| generated.iter().any(|g| g.name == name);
    let mut ordered = Vec::with_capacity(generated.len() + overrides.len());
    let extra: Vec<EnvVar> = overrides
        .iter()
        .filter(|o| !is_generated(&o.name))
        .map(|o| (*o).clone())
        .collect();
    let mut extra = Some(extra);
    for (i, var) in generated.into_iter().enumerate() {
        if i == extra_at {
            ordered.extend(extra.take().unwrap_or_default());
        }
        match overrides.iter().find(|o| o.name == var.name) {
            Some(o) if var.name != "PYTHONPATH" => ordered.push((*o).clone()),
            _ => ordered.push(var),
        }
    }
    // The container's own env wins: a linear scan, as pods have few vars and
    // hashing them all cost more than comparing.
    let existing = container.env.as_deref().unwrap_or_default();
    ordered.retain(|v| !existing.iter().any(|e| e.name == v.name));
    ordered
}

/// The first item for each key, in order. Lists here are short (generated
/// env, resource attributes), so a scan beats hashing; long ones fall back to a set.
fn first_per_key<'a, T, K: Eq + std::hash::Hash + ?Sized + 'a>(
    items: &'a [T],
    key: impl Fn(&'a T) -> &'a K,
) -> Vec<&'a T> {
    let mut out: Vec<&T> = Vec::with_capacity(items.len());
    if items.len() <= 32 {
        for item in items {
            if !out.iter().any(|seen| key(seen) == key(item)) {
                out.push(item);
            }
        }
    } else {
        let mut seen = HashSet::with_capacity(items.len());
        out.extend(items.iter().filter(|item| seen.insert(key(item))));
    }
    out
}
