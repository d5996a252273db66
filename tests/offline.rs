//! Offline mode: `mutate` and `explain` on manifests, golden files, and the
//! `verify` checklist on pods.

mod common;

use std::path::Path;
use std::process::Command;

use common::fixture;
use otel_injector::config::Config;
use otel_injector::offline::{self, OutputFormat};
use otel_injector::verify::{self, Status};
use serde_json::{Value, json};

fn read(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/offline")
            .join(name),
    )
    .expect(name)
}

/// Compares with a golden file; `UPDATE_GOLDEN=1` rewrites it instead.
fn golden(name: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/offline")
        .join(name);
    if std::env::var("UPDATE_GOLDEN").is_ok_and(|v| v == "1") {
        std::fs::write(&path, actual).expect("write golden");
        return;
    }
    let expected = std::fs::read_to_string(&path).expect("golden file");
    assert_eq!(
        actual,
        expected,
        "output differs from {} (UPDATE_GOLDEN=1 to accept)",
        path.display()
    );
}

fn yaml_docs(text: &str) -> Vec<Value> {
    offline::read_documents(text)
        .expect("yaml")
        .into_iter()
        .map(|d| d.value)
        .collect()
}

#[test]
fn seed_deployment_gets_the_seed_configuration_and_keeps_its_own_fields() {
    let input = read("seed-deployment.yaml");
    let out =
        offline::mutate(&input, &Config::default(), "default", OutputFormat::Yaml).expect("mutate");
    golden("seed-deployment.mutated.yaml", &out);
    let before = &yaml_docs(&input)[0];
    let after = &yaml_docs(&out)[0];
    // The one deliberate difference from the seed's hand-made pod: the wrapper
    // runs the container's own interpreter (`python`), not `python3`, behind
    // the guard.
    assert_eq!(
        after["spec"]["template"]["spec"],
        common::seed_expected_by_default()["spec"],
        "pod template = the seed's final configuration, but for the wrapper's interpreter and guard"
    );
    for field in [
        "/apiVersion",
        "/kind",
        "/metadata",
        "/spec/replicas",
        "/spec/selector",
        "/spec/template/metadata/labels",
    ] {
        assert_eq!(
            after.pointer(field),
            before.pointer(field),
            "{field} changed"
        );
    }
    assert_eq!(
        after["spec"]["template"]["metadata"]["annotations"]["otel-injector.io/status"],
        "injected"
    );
}

#[test]
fn patch_output_applies_to_the_original_and_guards_container_indexes() {
    let input = read("seed-deployment.yaml");
    let text =
        offline::mutate(&input, &Config::default(), "default", OutputFormat::Patch).expect("patch");
    let line = text
        .lines()
        .find(|l| l.starts_with("kubectl patch deployment cxtm-logstream -n cxtm --type=json -p '"))
        .expect("kubectl line");
    let patch_json = line
        .trim_start_matches("kubectl patch deployment cxtm-logstream -n cxtm --type=json -p '")
        .trim_end_matches('\'')
        // The shell's reading of a single-quoted word: `'\''` is a quote (the guard has some).
        .replace("'\\''", "'");
    let patch: json_patch::Patch = serde_json::from_str(&patch_json).expect("patch json");
    let mut doc = yaml_docs(&input).remove(0);
    json_patch::patch(&mut doc, &patch).expect("applies");
    let mutated = yaml_docs(
        &offline::mutate(&input, &Config::default(), "default", OutputFormat::Yaml).expect("yaml"),
    )
    .remove(0);
    assert_eq!(doc, mutated);
    // Against a Deployment whose first container is another one, the patch refuses.
    let mut moved = yaml_docs(&input).remove(0);
    moved["spec"]["template"]["spec"]["containers"][0]["name"] = json!("sidecar");
    assert!(
        json_patch::patch(&mut moved, &patch).is_err(),
        "test op must fail on a moved container"
    );
}

#[test]
fn multi_document_files_pass_other_documents_through() {
    let input = read("multi.yaml");
    let out =
        offline::mutate(&input, &Config::default(), "default", OutputFormat::Yaml).expect("mutate");
    let (before, after) = (yaml_docs(&input), yaml_docs(&out));
    assert_eq!(before.len(), after.len());
    assert_eq!(after[0], before[0], "ConfigMap unchanged");
    assert_eq!(after[1], before[1], "Service unchanged");
    assert_eq!(
        after[3], before[3],
        "DaemonSet in a namespace not configured: unchanged"
    );
    let containers = &after[2]["spec"]["template"]["spec"]["containers"];
    assert_eq!(
        containers[0], before[2]["spec"]["template"]["spec"]["containers"][0],
        "sidecar untouched"
    );
    assert_eq!(
        containers[1]["env"][0]["value"],
        "/otel-auto-instrumentation/opentelemetry/instrumentation/auto_instrumentation:/srv/lib:/otel-auto-instrumentation:."
    );
    let diff =
        offline::mutate(&input, &Config::default(), "default", OutputFormat::Diff).expect("diff");
    assert!(
        diff.contains("+++ StatefulSet web (document 3) (instrumented)"),
        "{diff}"
    );
    assert!(
        !diff.contains("ConfigMap"),
        "unchanged documents are not in the diff"
    );
}

#[test]
fn cronjob_templates_are_reached_and_explained() {
    let input = read("cronjob.yaml");
    let out =
        offline::mutate(&input, &Config::default(), "default", OutputFormat::Yaml).expect("mutate");
    let after = yaml_docs(&out).remove(0);
    let template = &after["spec"]["jobTemplate"]["spec"]["template"];
    assert_eq!(
        template["metadata"]["annotations"]["otel-injector.io/status"],
        "skipped"
    );
    assert!(
        template["spec"].get("initContainers").is_none(),
        "valueFrom PYTHONPATH: not instrumented"
    );
    // With the PYTHONPATH fixed the musl tree is copied.
    let fixed = input.replace(
        "valueFrom:\n                    configMapKeyRef: {name: paths, key: pythonpath}",
        "value: /app",
    );
    let after = yaml_docs(
        &offline::mutate(&fixed, &Config::default(), "default", OutputFormat::Yaml)
            .expect("mutate"),
    )
    .remove(0);
    assert_eq!(
        after["spec"]["jobTemplate"]["spec"]["template"]["spec"]["initContainers"][0]["command"][2],
        "/autoinstrumentation-musl/."
    );
}

#[test]
fn explain_outputs() {
    for name in ["seed-deployment", "multi", "cronjob"] {
        let text = offline::explain(
            &read(&format!("{name}.yaml")),
            &Config::default(),
            "default",
        )
        .expect("explain");
        golden(&format!("{name}.explain.txt"), &text);
    }
    let seed = read("seed-deployment.explain.txt");
    assert!(seed.contains("command wrapped"), "{seed}");
    assert!(
        seed.contains("Deployment's own metadata, which the webhook never sees"),
        "{seed}"
    );
    let multi = read("multi.explain.txt");
    assert!(
        multi.contains("container istio-proxy: not instrumented: a known sidecar"),
        "{multi}"
    );
    assert!(
        multi.contains("DaemonSet agent (document 4) in namespace other: left untouched"),
        "{multi}"
    );
    assert!(read("cronjob.explain.txt").contains("valueFrom"));
}

#[test]
fn instrumentations_in_the_input_are_used() {
    let input = format!(
        "{}\n---\n{}",
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/instrumentation/cxtm-python-instrumentation.yaml")).expect("inst"),
        read("seed-deployment.yaml").replace(
            "    metadata:\n      labels:\n        app: cxtm-logstream\n",
            "    metadata:\n      labels:\n        app: cxtm-logstream\n      annotations:\n        instrumentation.opentelemetry.io/inject-python: cxtm-python-instrumentation\n"
        )
    );
    let config = Config {
        namespaces: vec![],
        ..Config::default()
    };
    let after = yaml_docs(
        &offline::mutate(&input, &config, "default", OutputFormat::Yaml).expect("mutate"),
    )
    .remove(1);
    let spec = &after["spec"]["template"]["spec"];
    assert_eq!(
        spec["initContainers"][0]["resources"]["limits"]["memory"], "256Mi",
        "operator defaults from the Instrumentation"
    );
    let explain = offline::explain(&input, &config, "default").expect("explain");
    assert!(
        explain.contains("Instrumentation cxtm/cxtm-python-instrumentation"),
        "{explain}"
    );
}

#[test]
fn errors_name_the_document_line_and_field() {
    let err = offline::mutate(
        "kind: Pod\n---\nkind: [unclosed\n",
        &Config::default(),
        "default",
        OutputFormat::Yaml,
    )
    .expect_err("bad yaml")
    .to_string();
    assert!(
        err.contains("document 2") && err.contains("line") && err.contains("column"),
        "{err}"
    );
    let err = offline::mutate(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web}\nspec:\n  template:\n    spec:\n      containers: notalist\n",
        &Config::default(),
        "cxtm",
        OutputFormat::Yaml,
    )
    .expect_err("bad field")
    .to_string();
    assert!(
        err.contains("Deployment web (document 1)") && err.contains("/spec/template/spec"),
        "{err}"
    );
}

#[test]
fn readme_examples_run_as_written() {
    let bin = env!("CARGO_BIN_EXE_otel-injector");
    let root = env!("CARGO_MANIFEST_DIR");
    for args in [
        vec![
            "mutate",
            "-f",
            "tests/fixtures/offline/seed-deployment.yaml",
        ],
        vec![
            "mutate",
            "-f",
            "tests/fixtures/offline/seed-deployment.yaml",
            "-o",
            "patch",
        ],
        vec![
            "mutate",
            "-f",
            "tests/fixtures/offline/multi.yaml",
            "-o",
            "diff",
        ],
        vec![
            "explain",
            "-f",
            "tests/fixtures/offline/seed-deployment.yaml",
        ],
        vec![
            "mutate",
            "-f",
            "manifests/instrumentation/cxtm-python-instrumentation.yaml",
            "--config",
            "manifests/config.yaml",
        ],
    ] {
        let out = Command::new(bin)
            .args(&args)
            .current_dir(root)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(!out.stdout.is_empty(), "{args:?} printed nothing");
    }
    let out = Command::new(bin)
        .args(["mutate", "-f", "-"])
        .current_dir(root)
        .stdin(
            std::fs::File::open(
                Path::new(root).join("tests/fixtures/offline/seed-deployment.yaml"),
            )
            .expect("file"),
        )
        .output()
        .expect("run");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        read("seed-deployment.mutated.yaml")
    );
}

fn pod(value: Value) -> k8s_openapi::api::core::v1::Pod {
    serde_json::from_value(value).expect("pod")
}

#[test]
fn verify_checklist_catches_what_the_seed_checked_by_hand() {
    let config = Config::default();
    let good = fixture("seed-expected-pod.json");
    let checks = verify::check_pod(&pod(good.clone()), &config);
    assert!(
        checks.iter().all(|c| c.status != Status::Fail),
        "{checks:#?}"
    );
    assert!(
        checks.iter().any(|c| c.status == Status::Pending),
        "no status yet: pending, not failed"
    );

    let (text, ok) = verify::render(&[(
        "Pod cxtm/plain".into(),
        verify::check_pod(&pod(fixture("seed-pod.json")), &config),
    )]);
    assert!(!ok);
    assert!(text.contains("[FAIL]") && text.contains("fix:"), "{text}");

    let mut broken = good.clone();
    broken["spec"]["containers"][0]["env"][5]["value"] = json!("http://collector:4317");
    broken["status"] = json!({"initContainerStatuses": [{"name": "opentelemetry-auto-instrumentation-python", "ready": false, "restartCount": 0, "image": "x", "imageID": "", "state": {"waiting": {"reason": "ImagePullBackOff"}}}]});
    let checks = verify::check_pod(&pod(broken), &config);
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.what.as_str())
        .collect();
    assert!(
        failed.iter().any(|w| w.contains("endpoint port")),
        "{failed:?}"
    );
    assert!(
        failed
            .iter()
            .any(|w| w.contains("init container completed")),
        "{failed:?}"
    );

    let mut no_path = good;
    no_path["spec"]["containers"][0]["env"][0]["value"] = json!("/app");
    no_path["spec"]["containers"][0]["command"] = json!(["python", "run.py"]);
    let failed: Vec<String> = verify::check_pod(&pod(no_path), &config)
        .into_iter()
        .filter(|c| c.status == Status::Fail)
        .map(|c| c.what)
        .collect();
    assert!(
        failed.iter().any(|w| w.contains("PYTHONPATH")),
        "{failed:?}"
    );
    assert!(
        failed.iter().any(|w| w.contains("entry point")),
        "{failed:?}"
    );
}

/// Issue 14, item 5: a pod that asks for Python in a namespace the shipped
/// webhook selectors do not send gets a warning from `explain`; a labelled
/// Namespace in the input (as `kubectl get namespace NS -o yaml` gives it)
/// or the config's `namespaces` silence it.
#[test]
fn explain_warns_about_namespaces_the_webhook_is_never_called_for() {
    let deployment = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: shop, namespace: shop}
spec:
  selector: {matchLabels: {app: shop}}
  template:
    metadata:
      labels: {app: shop}
      annotations: {instrumentation.opentelemetry.io/inject-python: "true"}
    spec:
      containers: [{name: app, image: "shop:1"}]
"#;
    let config = otel_injector::config::Config::default();
    let text = otel_injector::offline::explain(deployment, &config, "default").expect("explain");
    assert!(
        text.contains("namespace shop is neither") && text.contains("manifests/all-namespaces"),
        "{text}"
    );
    let labelled = format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels: {{otel-injector.io/injection: enabled}}\n---{deployment}"
    );
    let text = otel_injector::offline::explain(&labelled, &config, "default").expect("explain");
    assert!(!text.contains("is neither"), "{text}");
    let in_config = otel_injector::config::Config {
        namespaces: vec!["shop".into()],
        ..Default::default()
    };
    let text = otel_injector::offline::explain(deployment, &in_config, "default").expect("explain");
    assert!(!text.contains("is neither"), "{text}");
}

/// Issue 25: `verify` must not FAIL what admission itself makes. Two cases
/// that did: a claim template (the volume is `ephemeral`, not an emptyDir)
/// and a config with no exporter endpoint (the SDK's default applies).
#[test]
fn verify_passes_what_admission_makes_with_a_claim_template_or_no_endpoint() {
    let completed = |mut admitted: Value| {
        admitted["status"] = json!({"initContainerStatuses": [{"name": "opentelemetry-auto-instrumentation-python",
            "ready": true, "restartCount": 0, "image": "x", "imageID": "",
            "state": {"terminated": {"exitCode": 0}}}]});
        admitted
    };
    let fails = |checks: Vec<verify::Check>| -> Vec<String> {
        checks
            .into_iter()
            .filter(|c| c.status == Status::Fail)
            .map(|c| format!("{}: {}", c.what, c.detail))
            .collect()
    };

    let mut no_endpoint = Config::default();
    no_endpoint.exporter.endpoint = None;
    let admitted = common::admit_with(
        &fixture("seed-pod.json"),
        "cxtm",
        &no_endpoint,
        &otel_injector::policy::StaticView,
    );
    assert!(admitted.pod.to_string().contains("PYTHONPATH"), "injected");
    let failed = fails(verify::check_pod(
        &pod(completed(admitted.pod)),
        &no_endpoint,
    ));
    assert!(failed.is_empty(), "no endpoint configured: {failed:?}");

    let cluster = offline::FileView::default().with_instrumentation(
        "cxtm",
        "claim",
        json!({"python": {"volumeClaimTemplate": {"spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}}}}}}),
    );
    let mut seed = fixture("seed-pod.json");
    seed["metadata"]["annotations"] =
        json!({"instrumentation.opentelemetry.io/inject-python": "claim"});
    let config = Config::default();
    let admitted = common::admit_with(&seed, "cxtm", &config, &cluster);
    assert!(
        admitted.pod["spec"]["volumes"]
            .as_array()
            .is_some_and(|v| v.iter().any(|v| v.get("ephemeral").is_some())),
        "the claim template made an ephemeral volume: {}",
        admitted.pod["spec"]["volumes"]
    );
    let failed = fails(verify::check_pod(&pod(completed(admitted.pod)), &config));
    assert!(failed.is_empty(), "claim template: {failed:?}");
}
