//! The pure mutation: a pod and resolved settings in, a JSON Patch and a
//! decision out. No I/O, no clock, no globals: the server, the offline CLI,
//! the benchmarks and the fuzzer all call [`inject`].
//!
//! The patch only adds: it appends to arrays, sets object members, and (as
//! the operator does) inserts the downward-API IPs in front of a container's
//! env. Everything the pod already had survives in its order: the seed's
//! hand-made `kubectl patch` commands replaced whole arrays and would have
//! wiped existing env and volumes.

pub mod command;
pub mod exporter_tls;
pub mod patch;
pub mod workload;

use std::borrow::Cow;
use std::collections::{BTreeMap, HashSet};

use k8s_openapi::api::core::v1::{
    Container, EmptyDirVolumeSource, EnvVar, EnvVarSource, EphemeralVolumeSource,
    ImageVolumeSource, ObjectFieldSelector, Pod, PodSpec, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

use crate::settings::{Delivery, Platform};
pub use crate::settings::{Sampler, Settings};
use command::Wrap;
pub use exporter_tls::ExporterTls;
pub use patch::JsonPatch;
use patch::{PatchBuilder, pointer};
pub use workload::Workload;

/// Annotations the patch writes so anyone can read the outcome from the pod.
pub const STATUS_ANNOTATION: &str = "otel-injector.io/status";
pub const CONTAINERS_ANNOTATION: &str = "otel-injector.io/containers";
pub const REASON_ANNOTATION: &str = "otel-injector.io/reason";
pub const VERSION_ANNOTATION: &str = "otel-injector.io/version";
/// On a workload and its pod template: the reconciler rolled the workload
/// back (its instrumented pods crash-looped); the value says why. Admission
/// leaves pods that carry it untouched. Removing it from the workload turns
/// instrumentation back on (docs/fleet.md).
pub const ROLLED_BACK_ANNOTATION: &str = "otel-injector.io/rolled-back";
/// On a pod template: when the reconciler last restarted the workload (catch-up).
pub const RESTARTED_AT_ANNOTATION: &str = "otel-injector.io/restartedAt";

/// Init container names that mean "already instrumented for Python": ours
/// (configurable) and the OpenTelemetry Operator's.
pub const OPERATOR_INIT_CONTAINER: &str = "opentelemetry-auto-instrumentation-python";

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
    /// Delivery chosen by admission (annotation, fallback); `None`: the settings' default.
    pub delivery: Option<Delivery>,
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
    /// The pod already carries an auto-instrumentation init container or
    /// our image volume.
    AlreadyInjected {
        /// What was found, in words: `init container NAME` or `image volume NAME`.
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
    match request.delivery.unwrap_or(settings.delivery) {
        Delivery::InitContainer => {
            add_init_container(&mut patch, spec, settings, request, &first.name);
            add_volumes(&mut patch, spec, settings, shared_volume(settings));
        }
        Delivery::ImageVolume => add_volumes(&mut patch, spec, settings, image_volume(settings)),
    }
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
    // Pushed rather than `format!` and `join`: every injected review writes it.
    let len = reports
        .iter()
        .map(|r| r.name.len() + r.reason.len() + 4)
        .sum();
    let mut out = String::with_capacity(len);
    for r in reports {
        if !out.is_empty() {
            out.push_str("; ");
        }
        out.push_str(&r.name);
        out.push_str(": ");
        out.push_str(&r.reason);
    }
    out
}

/// The pod as a whole cannot (or need not) be injected: it already is, or
/// our volume or init container name is taken.
fn refuse(pod: &Pod, spec: &PodSpec, settings: &Settings) -> Option<Injection> {
    let init_containers = spec.init_containers.as_deref().unwrap_or_default();
    let volumes = spec.volumes.as_deref().unwrap_or_default();
    // An image volume of ours is the only trace imageVolume delivery leaves.
    let marker = init_containers
        .iter()
        .map(|c| c.name.as_str())
        .find(|n| *n == settings.init_container_name || *n == OPERATOR_INIT_CONTAINER)
        .map(|n| format!("init container {n}"))
        .or_else(|| {
            volumes
                .iter()
                .find(|v| v.name == settings.volume_name && v.image.is_some())
                .map(|v| format!("image volume {}", v.name))
        });
    if let Some(marker) = marker {
        return Some(Injection {
            outcome: Outcome::AlreadyInjected { marker },
            patch: JsonPatch::empty(),
            containers: Vec::new(),
            warnings: Vec::new(),
        });
    }
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
    let mount = app_mount(settings, shared.request);
    let mut mounts_exist = container.volume_mounts.is_some();
    patch.append_mount(&path("volumeMounts"), mounts_exist, &mount);
    mounts_exist = true;
    // The exporter's certificates, after ours as the operator mounts them.
    for tls in &plan.tls_mounts {
        patch.append_mount(&path("volumeMounts"), mounts_exist, tls);
    }
    let env = plan_env(container, shared, &plan.pythonpath);
    let user_pythonpath = plan.user_pythonpath_at.map(|i| (i, plan.pythonpath));
    let notes = patch_env(patch, container, env, user_pythonpath, &path);
    let mut reason = match plan.wrap {
        Wrap::Wrapped(new_command) => {
            patch.add_command(&path("command"), &new_command);
            "instrumented; command wrapped with opentelemetry-instrument".to_owned()
        }
        Wrap::NotWrapped(why) => format!("instrumented; command not wrapped: {why}"),
    };
    for note in notes {
        reason.push_str("; ");
        reason.push_str(&note);
    }
    ContainerReport {
        name: container.name.clone(),
        instrumented: true,
        reason,
    }
}

/// Adds one container's env to the patch; returns the env's notes for the
/// container's report.
fn patch_env(
    patch: &mut PatchBuilder,
    container: &Container,
    env: EnvPlan,
    user_pythonpath: Option<(usize, String)>,
    path: &impl Fn(&str) -> String,
) -> Vec<String> {
    // In-place updates first: their indexes are the container's own, before
    // anything is inserted in front of them.
    for (env_index, value) in user_pythonpath
        .iter()
        .chain(&env.resource_attributes_update)
    {
        let mut env_path = path("env/");
        env_path.push_str(itoa::Buffer::new().format(*env_index));
        env_path.push_str("/value");
        patch.add(&env_path, value);
    }
    if container.env.is_some() {
        // Kubernetes expands `$(VAR)` only for vars defined earlier in the
        // list: the operator puts OTEL_NODE_IP and OTEL_POD_IP first, so the
        // container's own env may use them too.
        for (i, var) in env.prefix.iter().enumerate() {
            let mut env_path = path("env/");
            env_path.push_str(itoa::Buffer::new().format(i));
            patch.add(&env_path, var);
        }
        patch.add_env(&path("env"), true, &env.appended);
    } else {
        let mut all = env.prefix;
        all.extend(env.appended);
        patch.add_env(&path("env"), false, &all);
    }
    env.notes
}

/// Where an app container sees the instrumentation. From an image volume,
/// only the platform's directory of the image, read-only (the API server
/// requires it), at the same path as the copy: `PYTHONPATH` and the wrapper
/// are the same in both modes.
fn app_mount(settings: &Settings, request: &Request<'_>) -> VolumeMount {
    let mut mount = VolumeMount {
        mount_path: settings.mount_path.clone(),
        name: settings.volume_name.clone(),
        ..Default::default()
    };
    if request.delivery.unwrap_or(settings.delivery) == Delivery::ImageVolume {
        let platform = request.platform.unwrap_or(settings.platform);
        mount.read_only = Some(true);
        mount.sub_path = Some(platform.image_sub_path().to_owned());
    }
    mount
}

/// The instrumentation image itself as a volume (`volumes[].image`).
pub fn image_volume(settings: &Settings) -> Volume {
    Volume {
        name: settings.volume_name.clone(),
        image: Some(ImageVolumeSource {
            reference: Some(settings.image.clone()),
            pull_policy: settings.image_pull_policy.clone(),
        }),
        ..Default::default()
    }
}

/// The volume the init container copies into: an emptyDir, or an
/// Instrumentation's ephemeral claim.
fn shared_volume(settings: &Settings) -> Volume {
    match &settings.volume_claim_template {
        // As the operator: a claim template replaces the emptyDir (and its size limit).
        Some(template) => Volume {
            name: settings.volume_name.clone(),
            ephemeral: Some(EphemeralVolumeSource {
                volume_claim_template: Some(template.clone()),
            }),
            ..Default::default()
        },
        None => Volume {
            name: settings.volume_name.clone(),
            empty_dir: Some(EmptyDirVolumeSource {
                size_limit: settings.volume_size_limit.clone().map(Quantity),
                ..Default::default()
            }),
            ..Default::default()
        },
    }
}

/// The init container that copies the instrumentation into the shared volume.
fn add_init_container(
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
    patch.append_container(
        "/spec/initContainers",
        spec.init_containers.is_some(),
        &init,
    );
}

/// The exporter's certificate volumes, then ours.
fn add_volumes(patch: &mut PatchBuilder, spec: &PodSpec, settings: &Settings, volume: Volume) {
    let existing = spec.volumes.as_deref().unwrap_or_default();
    let mut volumes_exist = spec.volumes.is_some();
    // The operator adds the certificate volumes first (while it handles the
    // containers), then its own; a volume of the same name is reused.
    let tls_volumes = settings
        .exporter_tls
        .iter()
        .flat_map(ExporterTls::volumes)
        .filter(|v| !existing.iter().any(|e| e.name == v.volume.name));
    for tls in tls_volumes {
        patch.append("/spec/volumes", volumes_exist, &tls.volume);
        volumes_exist = true;
    }
    patch.append("/spec/volumes", volumes_exist, &volume);
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
        None => patch.add_object("/metadata/annotations", missing),
        Some(_) => {
            for (k, v) in missing {
                patch.add_str(&pointer(["metadata", "annotations", k]), v);
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
        None => patch.add_object(
            "/spec/nodeSelector",
            wanted.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        ),
        Some(existing) => {
            for (key, value) in wanted {
                match existing.get(key) {
                    None => patch.add_str(&pointer(["spec", "nodeSelector", key]), value),
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
    /// The exporter's certificate volumes this container does not mount yet.
    tls_mounts: Vec<VolumeMount>,
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
    let mounts = container.volume_mounts.as_deref().unwrap_or_default();
    if let Some(clash) = mounts
        .iter()
        .find(|m| m.mount_path.trim_end_matches('/') == settings.mount_path)
    {
        return Err(format!(
            "volume {:?} is already mounted at {}; not mounting the instrumentation over it",
            clash.name, settings.mount_path
        ));
    }
    let mut tls_mounts = Vec::new();
    for tls in settings.exporter_tls.iter().flat_map(ExporterTls::volumes) {
        // Mounted already (the operator's check): nothing to add.
        if mounts.iter().any(|m| m.name == tls.mount.name) {
            continue;
        }
        // A second mount at one path gets the pod refused by the API server.
        if let Some(clash) = mounts
            .iter()
            .find(|m| m.mount_path.trim_end_matches('/') == tls.mount.mount_path)
        {
            return Err(format!(
                "volume {:?} is already mounted at {}, where spec.exporter.tls mounts {:?}; not instrumenting it",
                clash.name, tls.mount.mount_path, tls.mount.name
            ));
        }
        tls_mounts.push(tls.mount);
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
        tls_mounts,
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

/// Env the operator's downward API gives every instrumented container, first
/// in its list (`defaultPodNodeEnvVars`), so endpoints such as
/// `http://$(OTEL_NODE_IP):4318` expand.
pub const NODE_IP_ENV: &str = "OTEL_NODE_IP";
pub const POD_IP_ENV: &str = "OTEL_POD_IP";
pub const POD_NAME_ENV: &str = "OTEL_RESOURCE_ATTRIBUTES_POD_NAME";
pub const POD_UID_ENV: &str = "OTEL_RESOURCE_ATTRIBUTES_POD_UID";
pub const NODE_NAME_ENV: &str = "OTEL_RESOURCE_ATTRIBUTES_NODE_NAME";
const RESOURCE_ATTRIBUTES_ENV: &str = "OTEL_RESOURCE_ATTRIBUTES";

/// What one container's env gets.
#[derive(Debug, Default)]
struct EnvPlan {
    /// Inserted before the container's own env (Kubernetes expands `$(VAR)`
    /// only for vars defined earlier).
    prefix: Vec<EnvVar>,
    /// Appended after it.
    appended: Vec<EnvVar>,
    /// The container's own `OTEL_RESOURCE_ATTRIBUTES` (index) with the
    /// computed attributes appended, as the operator does.
    resource_attributes_update: Option<(usize, String)>,
    /// Said in the container's report.
    notes: Vec<String>,
}

/// `pythonpath` is the container's PYTHONPATH from its plan; where the
/// container sets its own, that one is updated in place instead.
fn plan_env(container: &Container, shared: &Shared<'_>, pythonpath: &str) -> EnvPlan {
    if shared.settings.kubernetes_resource_attributes {
        return operator_env(container, shared, pythonpath);
    }
    let appended = generated_env(container, shared, pythonpath);
    // Without an Instrumentation the webhook's own env is kept as it always
    // was; the downward-API IPs come only when something refers to them.
    let own = container.env.as_deref().unwrap_or_default();
    // A `$` first: almost no value has one, and a char search is a memchr
    // where each substring search sets up a searcher (~1k instructions per
    // review for the ~10 values of the seed pod).
    let refers = |v: &EnvVar| {
        v.value.as_deref().is_some_and(|v| {
            v.contains('$') && (v.contains("$(OTEL_NODE_IP)") || v.contains("$(OTEL_POD_IP)"))
        })
    };
    let prefix = if own.iter().chain(&appended).any(refers) {
        ip_vars()
            .into_iter()
            .filter(|v| !own.iter().chain(&appended).any(|e| e.name == v.name))
            .collect()
    } else {
        Vec::new()
    };
    EnvPlan {
        prefix,
        appended,
        ..EnvPlan::default()
    }
}

/// `OTEL_NODE_IP`, then `OTEL_POD_IP`: the operator prepends each in turn,
/// which leaves the node's first.
fn ip_vars() -> [EnvVar; 2] {
    [
        field_ref(NODE_IP_ENV, "status.hostIP"),
        field_ref(POD_IP_ENV, "status.podIP"),
    ]
}

/// Appends `var` unless the container or `out` already sets it (the
/// operator's `appendIfNotSet`: the first definition wins).
fn push_unset(own: &[EnvVar], out: &mut Vec<EnvVar>, var: EnvVar) {
    if !own.iter().chain(out.iter()).any(|e| e.name == var.name) {
        out.push(var);
    }
}

/// The env the operator gives a Python container with an Instrumentation
/// (`injectPythonSDKToContainer`, `injectCommonEnvVar`,
/// `injectDefaultPythonEnvVars`, `injectCommonSDKConfig`), in its order.
/// Differences, all in docs/migration.md: the webhook's config
/// `env` comes after `spec.env`; a var the container sets is never added a
/// second time; a `valueFrom` `OTEL_RESOURCE_ATTRIBUTES` is left alone (the
/// operator appends to its empty value, and the API server refuses the pod).
fn operator_env(container: &Container, shared: &Shared<'_>, pythonpath: &str) -> EnvPlan {
    let settings = shared.settings;
    let own = container.env.as_deref().unwrap_or_default();
    let mut out: Vec<EnvVar> = Vec::with_capacity(24);
    push_configured_env(settings, own, pythonpath, &mut out);
    // The attributes the computed ones are appended to: the container's own
    // (as written) or a configured one (python.env, spec.env, config env).
    let own_attributes = own
        .iter()
        .enumerate()
        .find(|(_, v)| v.name == RESOURCE_ATTRIBUTES_ENV);
    let configured_attributes = out.iter().position(|v| v.name == RESOURCE_ATTRIBUTES_ENV);
    let base: Option<&EnvVar> = own_attributes
        .map(|(_, v)| v)
        .or(configured_attributes.map(|i| &out[i]));
    let base_value = base.and_then(|v| v.value.clone());
    let computed = operator_resource_attributes(container, shared, base_value.as_deref());
    push_exporter_env(settings, own, &computed.service_name, &mut out);
    let downward = push_downward_env(&computed, own, &mut out);
    push_sampling_env(settings, own, &mut out);
    let prefix: Vec<EnvVar> = ip_vars()
        .into_iter()
        .filter(|v| !own.iter().chain(&out).any(|e| e.name == v.name))
        .collect();
    let mut plan = EnvPlan {
        prefix,
        appended: out,
        ..EnvPlan::default()
    };
    place_resource_attributes(
        &mut plan,
        own_attributes,
        configured_attributes,
        &computed.joined,
        downward,
    );
    plan
}

/// `python.env`, then `spec.env`, then the config's env, first per name,
/// with `PYTHONPATH` between the first and the rest (the operator's order);
/// then the protocol and the three exporters. PYTHONPATH is always ours to
/// merge, never replaced.
fn push_configured_env(
    settings: &Settings,
    own: &[EnvVar],
    pythonpath: &str,
    out: &mut Vec<EnvVar>,
) {
    let configured: Vec<(usize, &EnvVar)> = settings
        .env
        .iter()
        .enumerate()
        .filter(|(i, v)| {
            v.name != "PYTHONPATH" && !settings.env[..*i].iter().any(|e| e.name == v.name)
        })
        .collect();
    let (python, common): (Vec<_>, Vec<_>) = configured
        .into_iter()
        .partition(|(i, _)| *i < settings.python_env_count);
    for (_, var) in python {
        push_unset(own, out, var.clone());
    }
    push_unset(own, out, plain("PYTHONPATH", pythonpath));
    for (_, var) in common {
        push_unset(own, out, var.clone());
    }
    push_unset(
        own,
        out,
        plain("OTEL_EXPORTER_OTLP_PROTOCOL", settings.protocol.as_str()),
    );
    for name in [
        "OTEL_TRACES_EXPORTER",
        "OTEL_METRICS_EXPORTER",
        "OTEL_LOGS_EXPORTER",
    ] {
        push_unset(own, out, plain(name, "otlp"));
    }
}

/// The service name, the endpoint (where one is configured) and the
/// exporter's TLS files.
fn push_exporter_env(settings: &Settings, own: &[EnvVar], service: &str, out: &mut Vec<EnvVar>) {
    push_unset(own, out, plain("OTEL_SERVICE_NAME", service));
    if let Some(endpoint) = &settings.endpoint {
        push_unset(
            own,
            out,
            plain("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.as_str()),
        );
    }
    for var in settings.exporter_tls.iter().flat_map(ExporterTls::env) {
        push_unset(own, out, var);
    }
}

/// The downward-API vars the computed attributes refer to, appended where
/// the container does not set them; returns where they stand in `out`.
fn push_downward_env(
    computed: &ComputedAttributes,
    own: &[EnvVar],
    out: &mut Vec<EnvVar>,
) -> std::ops::Range<usize> {
    let mut downward = vec![field_ref(POD_NAME_ENV, "metadata.name")];
    if computed.needs_pod_uid {
        downward.push(field_ref(POD_UID_ENV, "metadata.uid"));
    }
    if computed.needs_node_name {
        downward.push(field_ref(NODE_NAME_ENV, "spec.nodeName"));
    }
    downward.retain(|v| !own.iter().chain(out.iter()).any(|e| e.name == v.name));
    let at = out.len();
    out.extend(downward);
    at..out.len()
}

/// Propagators, and the sampler unless the container or the env already
/// sets either sampler var.
fn push_sampling_env(settings: &Settings, own: &[EnvVar], out: &mut Vec<EnvVar>) {
    if !settings.propagators.is_empty() {
        push_unset(
            own,
            out,
            plain("OTEL_PROPAGATORS", settings.propagators.join(",")),
        );
    }
    let sampler_set = own
        .iter()
        .chain(out.iter())
        .any(|e| e.name == "OTEL_TRACES_SAMPLER" || e.name == "OTEL_TRACES_SAMPLER_ARG");
    if let (Some(sampler), false) = (&settings.sampler, sampler_set) {
        out.push(plain("OTEL_TRACES_SAMPLER", sampler.kind.as_str()));
        if let Some(arg) = &sampler.argument {
            out.push(plain("OTEL_TRACES_SAMPLER_ARG", arg.as_str()));
        }
    }
}

/// Where `OTEL_RESOURCE_ATTRIBUTES` goes: the container's own is updated in
/// place, a configured one moves to the end, else a new one is appended;
/// one that comes from `valueFrom` is kept as is and said in the notes.
fn place_resource_attributes(
    plan: &mut EnvPlan,
    own_attributes: Option<(usize, &EnvVar)>,
    configured_attributes: Option<usize>,
    joined: &str,
    downward: std::ops::Range<usize>,
) {
    let merged = |base: Option<&str>| match base {
        None => joined.to_owned(),
        Some(b) if b.ends_with(',') => format!("{b}{joined}"),
        Some(b) => format!("{b},{joined}"),
    };
    match (own_attributes, configured_attributes) {
        (Some((_, var)), _) if var.value_from.is_some() => plan.notes.push(format!(
            "its {RESOURCE_ATTRIBUTES_ENV} comes from valueFrom and is kept as is, without the computed attributes"
        )),
        (Some((index, var)), _) => {
            plan.resource_attributes_update = Some((index, merged(var.value.as_deref())));
            // The container's own var stays where it is: the downward-API
            // vars it now refers to must come before it.
            let moved: Vec<EnvVar> = plan.appended.drain(downward).collect();
            plan.prefix.extend(moved);
        }
        (None, Some(index)) => {
            let var = plan.appended.remove(index);
            if var.value_from.is_some() {
                plan.notes.push(format!(
                    "the configured {RESOURCE_ATTRIBUTES_ENV} comes from valueFrom and is kept as is, without the computed attributes"
                ));
                plan.appended.push(var);
            } else {
                // The operator moves it to the end: after every var it may use.
                plan.appended
                    .push(plain(RESOURCE_ATTRIBUTES_ENV, merged(var.value.as_deref())));
            }
        }
        (None, None) => plan
            .appended
            .push(plain(RESOURCE_ATTRIBUTES_ENV, merged(None))),
    }
}

/// The operator's resource attributes for one container (`createResourceMap`
/// and the rest of `injectCommonSDKConfig`).
struct ComputedAttributes {
    /// `k=v` pairs sorted by key, as `resourceMapToStr` writes them.
    joined: String,
    service_name: String,
    needs_pod_uid: bool,
    needs_node_name: bool,
}

/// Lowest to highest precedence: the Instrumentation's (and config's)
/// `resourceAttributes`; the `k8s.*` names, `service.instance.id` and the
/// owners; the pod's `resource.opentelemetry.io/<key>` annotations (not
/// `service.name`); `service.namespace`. A key `base` (the
/// `OTEL_RESOURCE_ATTRIBUTES` already set) holds is not computed at all.
fn operator_resource_attributes(
    container: &Container,
    shared: &Shared<'_>,
    base: Option<&str>,
) -> ComputedAttributes {
    let settings = shared.settings;
    let pod = shared.pod;
    let use_labels = settings.use_labels_for_resource_attributes;
    let existing = attribute_keys(base);
    let mut res = known_attributes(container, shared, &existing);
    // chooseServiceName reads the map as it is now, pod name included.
    let service_name = operator_service_name(container, pod, use_labels, &res);
    // The pod name always comes from the downward API (a template's pods have none yet).
    res.insert("k8s.pod.name".into(), format!("$({POD_NAME_ENV})"));
    let needs_pod_uid =
        settings.add_k8s_uid_attributes && res.get("k8s.pod.uid").is_none_or(String::is_empty);
    if needs_pod_uid {
        res.insert("k8s.pod.uid".into(), format!("$({POD_UID_ENV})"));
    }
    if base.is_none_or(|b| !b.contains("service.version"))
        && let Some(version) =
            workload::operator_service_version(pod, use_labels, container.image.as_deref())
    {
        res.insert("service.version".into(), version);
    }
    let needs_node_name = res.get("k8s.node.name").is_none_or(String::is_empty);
    if needs_node_name {
        res.insert("k8s.node.name".into(), format!("$({NODE_NAME_ENV})"));
    }
    ComputedAttributes {
        joined: join_attributes(res.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        service_name,
        needs_pod_uid,
        needs_node_name,
    }
}

/// The keys of `k=v` pairs already set (malformed pairs name no key).
fn attribute_keys(base: Option<&str>) -> HashSet<&str> {
    base.unwrap_or_default()
        .split(',')
        .filter_map(|kv| {
            let parts: Vec<&str> = kv.trim().split('=').collect();
            (parts.len() == 2).then_some(parts[0])
        })
        .collect()
}

/// The attributes known before the service name is chosen, each layer over
/// the one before, none of the `existing` keys.
fn known_attributes(
    container: &Container,
    shared: &Shared<'_>,
    existing: &HashSet<&str>,
) -> BTreeMap<String, String> {
    let settings = shared.settings;
    let pod = shared.pod;
    let namespace = shared.request.namespace;
    let mut res: BTreeMap<String, String> = BTreeMap::new();
    for (k, v) in &settings.resource_attributes {
        if !existing.contains(k.as_str()) {
            res.insert(k.clone(), v.clone());
        }
    }
    let pod_name = pod.metadata.name.as_deref().unwrap_or_default();
    let instance_id = workload::label_or_annotation(pod, false, "service.instance.id", &[])
        .map(str::to_owned)
        .unwrap_or_else(|| format!("{namespace}.$({POD_NAME_ENV}).{}", container.name));
    let mut k8s: Vec<(&str, &str)> = vec![
        ("k8s.namespace.name", namespace),
        ("k8s.container.name", &container.name),
        ("k8s.pod.name", pod_name),
        (
            "k8s.pod.uid",
            pod.metadata.uid.as_deref().unwrap_or_default(),
        ),
        (
            "k8s.node.name",
            pod.spec
                .as_ref()
                .and_then(|s| s.node_name.as_deref())
                .unwrap_or_default(),
        ),
        ("service.instance.id", &instance_id),
    ];
    if let Some(w) = shared.workload {
        k8s.extend(w.attributes(settings.add_k8s_uid_attributes));
    }
    for (k, v) in k8s {
        if !existing.contains(k) && !v.is_empty() {
            res.insert(k.to_owned(), v.to_owned());
        }
    }
    for (k, v) in pod.metadata.annotations.iter().flatten() {
        if let Some(key) = k.strip_prefix(workload::RESOURCE_ANNOTATION_PREFIX)
            && !existing.contains(key)
            && key != "service.name"
        {
            res.insert(key.to_owned(), v.clone());
        }
    }
    let use_labels = settings.use_labels_for_resource_attributes;
    let service_namespace =
        workload::label_or_annotation(pod, use_labels, "service.namespace", &[])
            .unwrap_or(namespace);
    if !service_namespace.is_empty() && !existing.contains("service.namespace") {
        res.insert("service.namespace".into(), service_namespace.to_owned());
    }
    res
}

/// The operator's `chooseServiceName`: a label or annotation, else the
/// first owner name the attributes hold, else the container's name.
fn operator_service_name(
    container: &Container,
    pod: &Pod,
    use_labels: bool,
    res: &BTreeMap<String, String>,
) -> String {
    workload::label_or_annotation(pod, use_labels, "service.name", &workload::NAME_LABELS)
        .map(str::to_owned)
        .or_else(|| {
            [
                "k8s.deployment.name",
                "k8s.replicaset.name",
                "k8s.statefulset.name",
                "k8s.daemonset.name",
                "k8s.cronjob.name",
                "k8s.job.name",
                "k8s.pod.name",
            ]
            .iter()
            .find_map(|k| res.get(*k).filter(|v| !v.is_empty()).cloned())
        })
        .unwrap_or_else(|| container.name.clone())
}

/// `k=v` pairs, comma-separated, in the order given (the operator's
/// `resourceMapToStr` form: it gives them in key order).
fn join_attributes<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> String {
    let mut joined = String::with_capacity(320);
    for (k, v) in pairs {
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(k);
        joined.push('=');
        joined.push_str(v);
    }
    joined
}

/// The env vars to append to one container without an Instrumentation
/// (the webhook's own profile), in the order that makes `$(VAR)` references
/// resolve (`OTEL_RESOURCE_ATTRIBUTES` after the vars it uses). Precedence:
/// the container's own env > `settings.env` > generated.
fn generated_env(container: &Container, shared: &Shared<'_>, pythonpath: &str) -> Vec<EnvVar> {
    let settings = shared.settings;
    let (mut generated, extra_at) = exporter_env(settings, pythonpath);
    generated.push(plain(
        "OTEL_RESOURCE_ATTRIBUTES",
        resource_attributes(container, shared),
    ));
    generated.push(plain("OTEL_SERVICE_NAME", shared.service_name.as_str()));
    with_overrides(generated, extra_at, &settings.env, container)
}

/// `PYTHONPATH`, the exporters and the SDK's settings; and the index where
/// the config's extra env goes (after the exporters).
fn exporter_env(settings: &Settings, pythonpath: &str) -> (Vec<EnvVar>, usize) {
    let mut generated: Vec<EnvVar> = Vec::with_capacity(16);
    generated.push(plain("PYTHONPATH", pythonpath));
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

/// `OTEL_RESOURCE_ATTRIBUTES` of the webhook's own profile: the configured
/// ones first, then `service.version` and `service.namespace` (the first
/// value of a key wins).
fn resource_attributes(container: &Container, shared: &Shared<'_>) -> String {
    let settings = shared.settings;
    let namespace = shared.request.namespace;
    // Borrowed where possible: this runs once per container on every review.
    let mut attributes: Vec<(&str, Cow<'_, str>)> =
        Vec::with_capacity(settings.resource_attributes.len() + 2);
    attributes.extend(
        settings
            .resource_attributes
            .iter()
            .map(|(k, v)| (k.as_str(), Cow::Borrowed(v.as_str()))),
    );
    if let Some(version) = workload::service_version(shared.pod, container.image.as_deref()) {
        attributes.push(("service.version", Cow::Owned(version)));
    }
    attributes.push(("service.namespace", Cow::Borrowed(namespace)));
    join_attributes(
        first_per_key(&attributes, |(k, _)| k)
            .into_iter()
            .map(|(k, v)| (*k, v.as_ref())),
    )
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
