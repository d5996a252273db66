//! Table-driven tests of the pure mutation and the annotation policy.

mod common;

use std::sync::Arc;

use common::*;
use otel_injector::config::Config;
use otel_injector::inject::{self, Outcome, Request, Settings};
use otel_injector::policy::StaticView;
use otel_injector::review::Reviewer;
use serde_json::{Value, json};

fn settings() -> Settings {
    Settings::from_config(&Config::default())
}

/// Runs the policy and the mutation as the webhook does, returning the patched pod.
fn admit(pod_json: &Value, namespace: &str) -> (Value, Option<inject::Injection>) {
    let admitted = admit_with(pod_json, namespace, &Config::default(), &StaticView);
    (admitted.pod, admitted.injection)
}

/// The seed's exact hand-made configuration: the built-in profile with
/// `commandWrapper: {interpreter: python3, guard: false}` (the default runs
/// the container's own interpreter behind the guard instead; see the next test).
#[test]
fn seed_pod_comes_out_as_the_seed_configured_it_by_hand() {
    let config = Config::from_yaml("commandWrapper:\n  interpreter: python3\n  guard: false\n")
        .expect("config");
    let admitted = admit_with(&fixture("seed-pod.json"), "cxtm", &config, &StaticView);
    let (mutated, injection) = (admitted.pod, admitted.injection);
    let injection = injection.expect("cxtm pods are in scope");
    assert_eq!(injection.outcome, Outcome::Injected);
    let expected = fixture("seed-expected-pod.json");
    assert_eq!(
        mutated["spec"], expected["spec"],
        "spec differs from the seed's final configuration"
    );
    let annotations = &mutated["metadata"]["annotations"];
    assert_eq!(annotations["otel-injector.io/status"], "injected");
    assert_eq!(annotations["otel-injector.io/containers"], "cxtm-logstream");
    // Nothing else in metadata changed.
    let mut meta = mutated["metadata"].clone();
    meta.as_object_mut().map(|m| m.remove("annotations"));
    assert_eq!(meta, expected["metadata"]);
}

/// The default wrapper names the interpreter the container's command already
/// uses, so an image without `python3` on PATH still starts. Everything else
/// is the seed's configuration.
#[test]
fn default_wrapper_uses_the_containers_own_interpreter() {
    let (mutated, _) = admit(&fixture("seed-pod.json"), "cxtm");
    assert_eq!(mutated["spec"], seed_expected_by_default()["spec"]);

    let venv = json!({
        "metadata": {"name": "venv", "namespace": "cxtm"},
        "spec": {"containers": [{"name": "app", "image": "venv:1", "command": ["/app/venv/bin/python", "app.py"]}]}
    });
    let (out, _) = admit(&venv, "cxtm");
    assert_eq!(
        out["spec"]["containers"][0]["command"],
        json!(guarded(
            "/app/venv/bin/python",
            &[
                "/otel-auto-instrumentation/bin/opentelemetry-instrument",
                "/app/venv/bin/python",
                "app.py"
            ]
        ))
    );
}

#[test]
fn readmission_of_the_result_yields_an_empty_patch() {
    let (once, _) = admit(&fixture("seed-pod.json"), "cxtm");
    let (_, again) = admit(&once, "cxtm");
    let again = again.expect("in scope");
    assert!(
        matches!(again.outcome, Outcome::AlreadyInjected { .. }),
        "{:?}",
        again.outcome
    );
    assert!(again.patch.is_empty(), "{:?}", again.patch);
}

/// With ServiceAccount admission on (every real cluster), the API server runs
/// that plugin again after the webhook; it would add its token mount to the
/// new init container, the pod would have changed since our call, and
/// `reinvocationPolicy: IfNeeded` would call us a second time. The init
/// container carries the mount already, exactly as the plugin writes it.
#[test]
fn init_container_carries_the_service_account_token_mount() {
    let token = "/var/run/secrets/kubernetes.io/serviceaccount";
    let mount = json!({"mountPath": token, "name": "kube-api-access-x7k2p", "readOnly": true});
    let mut pod = fixture("seed-pod.json");
    pod["spec"]["volumes"] = json!([
        {"name": "kube-api-access-x7k2p", "projected": {"sources": [{"serviceAccountToken": {"path": "token"}}]}}
    ]);
    pod["spec"]["containers"][0]["volumeMounts"] = json!([mount]);
    let init_mounts = |pod: &Value| {
        let (out, _) = admit(pod, "cxtm");
        let init = out["spec"]["initContainers"]
            .as_array()
            .and_then(|c| {
                c.iter()
                    .find(|c| c["name"] == "opentelemetry-auto-instrumentation-python")
            })
            .cloned()
            .expect("init container");
        init["volumeMounts"].as_array().cloned().unwrap_or_default()
    };
    let mounts = init_mounts(&pod);
    assert_eq!(mounts.len(), 2, "{mounts:?}");
    assert_eq!(mounts[0]["mountPath"], "/otel-auto-instrumentation");
    assert_eq!(
        mounts[1], mount,
        "the plugin's mount, as the plugin writes it"
    );

    // The pod opts out of the token: the plugin adds nothing, nor do we.
    let mut opted_out = pod.clone();
    opted_out["spec"]["automountServiceAccountToken"] = json!(false);
    assert_eq!(init_mounts(&opted_out).len(), 1);
    // A volume of that name that no container mounts at the token path is not
    // the plugin's doing.
    let mut elsewhere = pod.clone();
    elsewhere["spec"]["containers"][0]["volumeMounts"][0]["mountPath"] = json!("/data");
    assert_eq!(init_mounts(&elsewhere).len(), 1);
    // No ServiceAccount admission (the test control plane's default): no mount.
    assert_eq!(init_mounts(&fixture("seed-pod.json")).len(), 1);
}

#[test]
fn operator_injected_pods_are_left_alone() {
    let mut pod = fixture("seed-pod.json");
    pod["spec"]["initContainers"] =
        json!([{"name": "opentelemetry-auto-instrumentation-python", "image": "x"}]);
    let (out, injection) = admit(&pod, "cxtm");
    assert_eq!(out, pod);
    assert!(matches!(
        injection.map(|i| i.outcome),
        Some(Outcome::AlreadyInjected { .. })
    ));
}

/// A pod with its own volumes, init container, mounts, nodeSelector and env
/// (one var from a Secret), all of which must survive the patch.
fn pod_with_its_own_settings() -> Value {
    json!({
        "metadata": {"name": "app", "namespace": "cxtm", "annotations": {"team": "a"}},
        "spec": {
            "nodeSelector": {"kubernetes.io/os": "linux", "ao-node": "gpu"},
            "volumes": [{"name": "data", "emptyDir": {}}],
            "initContainers": [{"name": "migrate", "image": "m"}],
            "containers": [{
                "name": "app",
                "image": "app:1.0",
                "env": [
                    {"name": "PYTHONPATH", "value": "/app/lib"},
                    {"name": "OTEL_SERVICE_NAME", "value": "custom"},
                    {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://mine:4318"},
                    {"name": "SECRET", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}}
                ],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}]
            }]
        }
    })
}

#[test]
fn existing_settings_are_kept_and_appended_to() {
    let pod = pod_with_its_own_settings();
    let (out, injection) = admit(&pod, "cxtm");
    let injection = injection.expect("in scope");
    assert_eq!(injection.outcome, Outcome::Injected);
    assert_eq!(out["spec"]["volumes"][0], pod["spec"]["volumes"][0]);
    assert_eq!(
        out["spec"]["volumes"][1]["name"],
        "opentelemetry-auto-instrumentation-python"
    );
    assert_eq!(
        out["spec"]["initContainers"][0],
        pod["spec"]["initContainers"][0]
    );
    assert_eq!(
        out["spec"]["initContainers"][1]["name"],
        "opentelemetry-auto-instrumentation-python"
    );
    assert_eq!(
        out["spec"]["containers"][0]["volumeMounts"][0],
        pod["spec"]["containers"][0]["volumeMounts"][0]
    );
    assert_eq!(
        out["spec"]["containers"][0]["volumeMounts"][1]["mountPath"],
        "/otel-auto-instrumentation"
    );
    // The pod's nodeSelector value wins; a warning says so.
    assert_eq!(
        out["spec"]["nodeSelector"],
        json!({"kubernetes.io/os": "linux", "ao-node": "gpu"})
    );
    assert!(
        injection.warnings.iter().any(|w| w.contains("ao-node=gpu")),
        "{:?}",
        injection.warnings
    );
    assert_eq!(
        env_value(&out, 0, "PYTHONPATH").as_deref(),
        Some(
            "/otel-auto-instrumentation/opentelemetry/instrumentation/auto_instrumentation:/app/lib:/otel-auto-instrumentation:."
        ),
        "not wrapped (no command): the working directory goes last"
    );
    assert_eq!(
        env_value(&out, 0, "OTEL_SERVICE_NAME").as_deref(),
        Some("custom")
    );
    assert_eq!(
        env_value(&out, 0, "OTEL_EXPORTER_OTLP_ENDPOINT").as_deref(),
        Some("http://mine:4318")
    );
    assert_eq!(
        out["spec"]["containers"][0]["env"][3],
        pod["spec"]["containers"][0]["env"][3]
    );
    let names: Vec<String> = env_of(&out, 0).into_iter().map(|(n, _)| n).collect();
    let mut unique = names.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(names.len(), unique.len(), "duplicate env names: {names:?}");
    assert_eq!(out["metadata"]["annotations"]["team"], "a");
    // No command set: the entrypoint is kept.
    assert!(out["spec"]["containers"][0].get("command").is_none());
}

#[test]
fn pythonpath_from_value_from_skips_the_container_with_a_reason() {
    let pod = json!({
        "metadata": {"name": "app", "namespace": "cxtm"},
        "spec": {"containers": [{
            "name": "app", "image": "app:1",
            "env": [{"name": "PYTHONPATH", "valueFrom": {"configMapKeyRef": {"name": "c", "key": "k"}}}]
        }]}
    });
    let (out, injection) = admit(&pod, "cxtm");
    let injection = injection.expect("in scope");
    let Outcome::Skipped { reason } = &injection.outcome else {
        panic!("{:?}", injection.outcome)
    };
    assert!(reason.contains("valueFrom"), "{reason}");
    assert!(injection.warnings.iter().any(|w| w.contains("valueFrom")));
    assert_eq!(
        out["spec"], pod["spec"],
        "a skipped pod's spec is untouched"
    );
    assert_eq!(
        out["metadata"]["annotations"]["otel-injector.io/status"],
        "skipped"
    );
}

#[test]
fn sidecar_first_pods_instrument_the_app_container() {
    let pod = json!({
        "metadata": {"name": "app", "namespace": "cxtm"},
        "spec": {"containers": [
            {"name": "istio-proxy", "image": "istio/proxyv2:1.20"},
            {"name": "web", "image": "web:2.0", "command": ["python3", "-m", "web"]}
        ]}
    });
    let (out, _) = admit(&pod, "cxtm");
    assert!(
        out["spec"]["containers"][0].get("env").is_none(),
        "sidecar untouched"
    );
    assert_eq!(
        out["spec"]["containers"][1]["command"],
        json!(guarded(
            "python3",
            &[
                "/otel-auto-instrumentation/bin/opentelemetry-instrument",
                "python3",
                "-m",
                "web"
            ]
        ))
    );
    assert!(
        env_value(&out, 1, "OTEL_RESOURCE_ATTRIBUTES")
            .is_some_and(|v| v.contains("service.version=2.0"))
    );
}

#[test]
fn non_python_commands_are_not_wrapped_but_instrumented() {
    let pod = json!({
        "metadata": {"name": "app", "namespace": "cxtm"},
        "spec": {"containers": [{"name": "app", "image": "app:1", "command": ["gunicorn", "app:app"], "args": ["-w", "4"]}]}
    });
    let (out, _) = admit(&pod, "cxtm");
    assert_eq!(
        out["spec"]["containers"][0]["command"],
        json!(["gunicorn", "app:app"])
    );
    assert_eq!(out["spec"]["containers"][0]["args"], json!(["-w", "4"]));
    assert!(env_value(&out, 0, "PYTHONPATH").is_some());
}

#[test]
fn container_names_annotation_selects_targets() {
    let pod = json!({
        "metadata": {"name": "app", "namespace": "cxtm", "annotations": {
            "instrumentation.opentelemetry.io/container-names": "b, missing"
        }},
        "spec": {"containers": [{"name": "a", "image": "a:1"}, {"name": "b", "image": "b:1"}]}
    });
    let (out, injection) = admit(&pod, "cxtm");
    assert!(out["spec"]["containers"][0].get("env").is_none());
    assert!(env_value(&out, 1, "PYTHONPATH").is_some());
    assert!(
        injection
            .expect("in scope")
            .warnings
            .iter()
            .any(|w| w.contains("\"missing\""))
    );
}

#[test]
fn scope_rules() {
    let base = fixture("seed-pod.json");
    let with_annotation = |value: &str| {
        let mut p = base.clone();
        p["metadata"]["annotations"] =
            json!({"instrumentation.opentelemetry.io/inject-python": value});
        p
    };
    let cases = [
        (base.clone(), "cxtm", true),
        (base.clone(), "other", false),
        (with_annotation("false"), "cxtm", false),
        (with_annotation("true"), "other", true),
        (with_annotation("True"), "other", true),
    ];
    for (pod, ns, injected) in cases {
        let (out, _) = admit(&pod, ns);
        assert_eq!(
            out != pod,
            injected,
            "ns={ns} annotations={}",
            pod["metadata"]["annotations"]
        );
    }
}

#[test]
fn deployment_pods_are_named_after_the_deployment() {
    let pod = fixture("deployment-pod.json");
    let (out, _) = admit(&pod, "cxtm");
    assert_eq!(
        env_value(&out, 0, "OTEL_SERVICE_NAME").as_deref(),
        Some("cxtm-logstream")
    );
    assert!(
        out["spec"]["containers"][0].get("command").is_none(),
        "no command: entrypoint kept, sitecustomize instruments"
    );
}

#[test]
fn musl_platform_copies_the_musl_tree() {
    let mut pod = fixture("seed-pod.json");
    pod["metadata"]["annotations"] =
        json!({"instrumentation.opentelemetry.io/otel-python-platform": "musl"});
    let (out, _) = admit(&pod, "cxtm");
    assert_eq!(
        out["spec"]["initContainers"][0]["command"][2],
        "/autoinstrumentation-musl/."
    );
}

#[test]
fn pod_without_spec_is_skipped() {
    let p = pod(&json!({"metadata": {"name": "x"}}));
    let injection = inject::inject(
        &p,
        &settings(),
        &Request {
            namespace: "cxtm",
            ..Default::default()
        },
    );
    assert!(matches!(injection.outcome, Outcome::Skipped { .. }));
}

#[test]
fn grpc_endpoint_with_http_protocol_is_flagged() {
    let config = Config::from_yaml(
        "exporter:\n  endpoint: http://collector:4317\n  protocol: http/protobuf\n",
    )
    .expect("config");
    let reviewer = Reviewer::new(config, Arc::new(StaticView));
    let review = review(&fixture("seed-pod.json"), "cxtm", "u1");
    let out = reviewer
        .review(&serde_json::to_vec(&review).expect("json"))
        .expect("answered");
    assert!(
        out.decision.warnings.iter().any(|w| w.contains("4318")),
        "{:?}",
        out.decision.warnings
    );
}

#[test]
fn endpoints_with_a_path_and_grpc_on_the_http_port_are_flagged() {
    for (endpoint, protocol) in [
        ("http://collector:4317/v1/traces", "http/protobuf"),
        ("http://collector:4318", "grpc"),
    ] {
        let config = Config::from_yaml(&format!(
            "exporter:\n  endpoint: {endpoint}\n  protocol: {protocol}\n"
        ))
        .expect("config");
        let reviewer = Reviewer::new(config, Arc::new(StaticView));
        let review = review(&fixture("seed-pod.json"), "cxtm", "u1");
        let out = reviewer
            .review(&serde_json::to_vec(&review).expect("json"))
            .expect("answered");
        assert!(
            out.decision.warnings.iter().any(|w| w.contains(endpoint)),
            "{endpoint} {protocol}: {:?}",
            out.decision.warnings
        );
    }
}

/// A view that answers the image volume check as told, and nothing else.
struct ImageVolumes(otel_injector::delivery::ImageVolumeSupport);

impl otel_injector::policy::ClusterView for ImageVolumes {
    fn instrumentation(&self, _: &str, _: &str, _: &Settings) -> Option<Result<Settings, String>> {
        None
    }
    fn instrumentations_in(&self, _: &str) -> Vec<String> {
        Vec::new()
    }
    fn namespace_annotations(&self, _: &str) -> Option<std::collections::BTreeMap<String, String>> {
        None
    }
    fn workload(&self, _: &k8s_openapi::api::core::v1::Pod, _: &str) -> Option<inject::Workload> {
        None
    }
    fn image_volumes(&self) -> otel_injector::delivery::ImageVolumeSupport {
        self.0.clone()
    }
}

fn with_delivery(pod: &Value, delivery: &str) -> Value {
    let mut pod = pod.clone();
    pod["metadata"]["annotations"]["otel-injector.io/delivery"] = json!(delivery);
    pod
}

/// imageVolume: the image itself as a read-only volume, its platform
/// directory mounted where the copy would be, no init container; env and
/// the wrapper exactly as with the copy.
#[test]
fn image_volume_delivery_mounts_the_image_instead_of_copying_it() {
    use otel_injector::delivery::ImageVolumeSupport;
    let supported = ImageVolumes(ImageVolumeSupport::Supported);
    let config = Config::from_yaml("imagePullPolicy: IfNotPresent").expect("config");
    let copied = admit_with(&fixture("seed-pod.json"), "cxtm", &config, &supported).pod;
    let pod = with_delivery(&fixture("seed-pod.json"), "imageVolume");
    let admitted = admit_with(&pod, "cxtm", &config, &supported);
    let mounted = &admitted.pod;
    assert_eq!(admitted.outcome(), Some(&Outcome::Injected));
    assert!(admitted.warnings().is_empty(), "{:?}", admitted.warnings());
    assert_eq!(
        mounted["spec"].get("initContainers"),
        pod["spec"].get("initContainers")
    );
    let volumes = mounted["spec"]["volumes"].as_array().expect("volumes");
    let ours = volumes.last().expect("our volume");
    assert_eq!(
        *ours,
        json!({"name": "opentelemetry-auto-instrumentation-python",
               "image": {"reference": config.image, "pullPolicy": "IfNotPresent"}})
    );
    let mounts = mounted["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts");
    let mount = mounts.last().expect("our mount");
    assert_eq!(
        *mount,
        json!({"name": "opentelemetry-auto-instrumentation-python",
               "mountPath": "/otel-auto-instrumentation",
               "readOnly": true, "subPath": "autoinstrumentation"})
    );
    // The app sees the same tree: env and command do not depend on the delivery.
    assert_eq!(
        mounted["spec"]["containers"][0]["env"],
        copied["spec"]["containers"][0]["env"]
    );
    assert_eq!(
        mounted["spec"]["containers"][0]["command"],
        copied["spec"]["containers"][0]["command"]
    );
    // Fed back in: recognised by its volume, nothing added twice.
    let again = admit_with(mounted, "cxtm", &config, &supported);
    assert!(
        matches!(again.outcome(), Some(Outcome::AlreadyInjected { marker }) if marker.contains("image volume")),
        "{:?}",
        again.outcome()
    );
    assert_eq!(again.pod, *mounted);
    // musl: the musl tree of the image.
    let mut musl = pod.clone();
    musl["metadata"]["annotations"]["instrumentation.opentelemetry.io/otel-python-platform"] =
        json!("musl");
    let out = admit_with(&musl, "cxtm", &config, &supported).pod;
    let mounts = out["spec"]["containers"][0]["volumeMounts"]
        .as_array()
        .expect("mounts");
    assert_eq!(
        mounts.last().expect("mount")["subPath"],
        "autoinstrumentation-musl"
    );
}

/// The config's default applies to pods without the annotation; the
/// annotation can choose initContainer back.
#[test]
fn delivery_comes_from_the_config_unless_the_pod_says() {
    use otel_injector::delivery::ImageVolumeSupport;
    let supported = ImageVolumes(ImageVolumeSupport::Supported);
    let config = Config::from_yaml("delivery: imageVolume").expect("config");
    let has_init = |pod: &Value| pod["spec"].get("initContainers").is_some();
    let out = admit_with(&fixture("seed-pod.json"), "cxtm", &config, &supported).pod;
    assert!(!has_init(&out));
    let pod = with_delivery(&fixture("seed-pod.json"), "initContainer");
    let out = admit_with(&pod, "cxtm", &config, &supported).pod;
    assert!(has_init(&out));
    let err = Config::from_yaml("delivery: volume").expect_err("unknown delivery");
    assert!(err.to_string().contains("delivery"), "{err}");
}

/// Never block a pod: where the API server would drop `volumes[].image` (and
/// then refuse the pod), or nobody knows yet, imageVolume pods get the init
/// container, with a warning that says why.
#[test]
fn image_volume_falls_back_to_the_init_container_when_the_check_says_no() {
    use otel_injector::delivery::ImageVolumeSupport;
    let pod = with_delivery(&fixture("seed-pod.json"), "imageVolume");
    for support in [
        ImageVolumeSupport::Pending,
        ImageVolumeSupport::Unsupported("the API server dropped volumes[].image".into()),
    ] {
        let admitted = admit_with(
            &pod,
            "cxtm",
            &Config::default(),
            &ImageVolumes(support.clone()),
        );
        let expected = admit_with(
            &fixture("seed-pod.json"),
            "cxtm",
            &Config::default(),
            &StaticView,
        );
        assert_eq!(admitted.pod["spec"], expected.pod["spec"], "{support:?}");
        let chosen = admitted.admission.delivery.expect("in scope");
        assert!(chosen.fell_back(), "{support:?}");
        assert!(
            admitted
                .warnings()
                .iter()
                .any(|w| w.contains("imageVolume delivery is not available")),
            "{:?}",
            admitted.warnings()
        );
    }
}
