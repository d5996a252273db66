//! A real node beside the control plane (tests/node/up): containerd, runc,
//! kubelet, scheduler and controller-manager, with the test images imported.
//! Pods really run. Stopped and cleaned on drop, also when a test panics.
#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::cluster::{ControlPlane, free_port, repo};

/// The multi-version auto-instrumentation image of
/// images/autoinstrumentation-python, as tests/images/build tags it.
pub const MULTI_AUTO_IMAGE: &str = "docker.io/local/autoinstrumentation-python-multi:0.54b1";

pub struct Node {
    pub env: HashMap<String, String>,
    state_dir: PathBuf,
}

impl Node {
    /// Installs what is missing (apt), builds or reuses the images, starts
    /// the node and waits until it is Ready. Needs root.
    pub fn up(plane: &ControlPlane) -> Node {
        Self::up_with(plane, &[])
    }

    /// `up` with only these images (tests/images/build names, e.g.
    /// `runtime-venv`) built and imported; empty: all of them.
    pub fn up_with_images(plane: &ControlPlane, images: &[&str]) -> Node {
        Self::up_with(plane, &[("NODE_IMAGES", &images.join(" "))])
    }

    /// [`Node::up_with_images`] on the bridge pod network
    /// (`NODE_POD_NETWORK=bridge`): pods get addresses of their own on
    /// 10.244.0.0/24, and the node's address is 10.244.0.1.
    pub fn up_bridge_with_images(plane: &ControlPlane, images: &[&str]) -> Node {
        Self::up_with(
            plane,
            &[
                ("NODE_POD_NETWORK", "bridge"),
                ("NODE_IMAGES", &images.join(" ")),
            ],
        )
    }

    /// A control plane and a node that can mount image volumes
    /// (docs/delivery.md): the API server with `ImageVolume` on, and the node
    /// on containerd 2 (`NODE_CONTAINERD=2`, which turns on the kubelet's
    /// gate), with only `images` imported.
    pub fn up_image_volume(plane_name: &str, images: &[&str]) -> (ControlPlane, Node) {
        let plane = ControlPlane::up_with(
            plane_name,
            &[("APISERVER_EXTRA_ARGS", "--feature-gates=ImageVolume=true")],
        );
        let images = images.join(" ");
        let node = Self::up_with(
            &plane,
            &[("NODE_IMAGES", &images), ("NODE_CONTAINERD", "2")],
        );
        (plane, node)
    }

    /// [`Node::up`] with more environment for tests/node/up (e.g.
    /// `NODE_POD_NETWORK=bridge`, `NODE_IMAGES`).
    pub fn up_with(plane: &ControlPlane, env: &[(&str, &str)]) -> Node {
        assert!(
            is_root(),
            "the node tests need root (containerd, runc, kubelet); \
             OTEL_INJECTOR_SKIP_E2E=1 marks them ignored"
        );
        let started = Instant::now();
        // Constructed first, so a failing `up` is still torn down.
        let mut node = Node {
            env: HashMap::new(),
            state_dir: plane.state_dir.clone(),
        };
        let output = Command::new(repo().join("tests/node/up"))
            .env("STATE_DIR", &plane.state_dir)
            .env("NODE_OWNER_PID", std::process::id().to_string())
            .envs(env.iter().copied())
            .stderr(Stdio::inherit())
            .output()
            .expect("run tests/node/up");
        assert!(
            output.status.success(),
            "tests/node/up failed: {}",
            output.status
        );
        node.env = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect();
        eprintln!("node up in {:.1}s", started.elapsed().as_secs_f64());
        node
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        let status = Command::new(repo().join("tests/node/down"))
            .env("STATE_DIR", &self.state_dir)
            .status();
        if !status.as_ref().is_ok_and(|s| s.success()) {
            eprintln!("tests/node/down failed: {status:?}");
        }
    }
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.trim_ascii() == b"0")
}

/// A Deployment of one of the test images, runnable on the local node:
/// hostNetwork on its own loopback port (`PORT`), `Recreate` (two pods of one
/// Deployment would want the same port), probes on 127.0.0.1 (the pod IP of a
/// hostNetwork pod is the machine's own address, which tests never reach),
/// and exporters that flush within a second, so tests do not wait a minute
/// for the SDK's default metric interval.
pub struct App {
    pub name: String,
    pub namespace: String,
    pub image: String,
    pub port: u16,
    pub command: Option<Vec<String>>,
    pub pod_annotations: Value,
}

impl App {
    pub fn new(name: &str, namespace: &str, image: &str) -> App {
        App {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            image: image.to_owned(),
            port: free_port(),
            command: None,
            pod_annotations: json!({}),
        }
    }

    pub fn command(mut self, command: &[&str]) -> App {
        self.command = Some(command.iter().map(|s| (*s).to_owned()).collect());
        self
    }

    pub fn pod_annotation(mut self, key: &str, value: &str) -> App {
        self.pod_annotations[key] = json!(value);
        self
    }

    /// Turns a Deployment manifest (such as the seed's) into one that runs
    /// here: this app's image, port and command, the rest kept.
    pub fn adapt(&self, mut deployment: Value) -> Value {
        deployment["metadata"]["name"] = json!(self.name);
        deployment["metadata"]["namespace"] = json!(self.namespace);
        let spec = &mut deployment["spec"];
        spec["strategy"] = json!({"type": "Recreate"});
        let template = &mut spec["template"];
        for (k, v) in self.pod_annotations.as_object().into_iter().flatten() {
            template["metadata"]["annotations"][k] = v.clone();
        }
        let pod = &mut template["spec"];
        pod["hostNetwork"] = json!(true);
        pod["terminationGracePeriodSeconds"] = json!(2);
        let c = &mut pod["containers"][0];
        c["image"] = json!(self.image);
        c["imagePullPolicy"] = json!("Never");
        match &self.command {
            Some(cmd) => c["command"] = json!(cmd),
            None => {
                if let Some(o) = c.as_object_mut() {
                    o.remove("command");
                }
            }
        }
        c["ports"] = json!([{"containerPort": self.port, "protocol": "TCP"}]);
        let mut env = c["env"].as_array().cloned().unwrap_or_default();
        env.extend([
            json!({"name": "PORT", "value": self.port.to_string()}),
            json!({"name": "OTEL_BSP_SCHEDULE_DELAY", "value": "200"}),
            json!({"name": "OTEL_BLRP_SCHEDULE_DELAY", "value": "200"}),
            json!({"name": "OTEL_METRIC_EXPORT_INTERVAL", "value": "1000"}),
        ]);
        c["env"] = json!(env);
        if c.get("livenessProbe").is_some() {
            c["livenessProbe"]["tcpSocket"] = json!({"port": self.port, "host": "127.0.0.1"});
        }
        c["readinessProbe"] = json!({
            "httpGet": {"path": "/healthz", "port": self.port, "host": "127.0.0.1"},
            "periodSeconds": 1, "failureThreshold": 30
        });
        deployment
    }

    /// A Deployment of its own (no seed manifest to start from).
    pub fn deployment(&self) -> Value {
        self.adapt(json!({
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": self.name, "labels": {"app": self.name}},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": self.name}},
                "template": {
                    "metadata": {"labels": {"app": self.name}},
                    "spec": {"containers": [{"name": self.name, "image": self.image}]}
                }
            }
        }))
    }

    /// `GET path` on the app's loopback port: (status, body).
    pub fn get(&self, path: &str) -> Option<(u16, String)> {
        super::cluster::http_get(self.port, path)
    }
}

/// The init container `init` of `pod` ran and exited 0.
pub fn assert_init_completed(pod: &Value, init: &str) {
    let status = &pod["status"]["initContainerStatuses"];
    let ours = status
        .as_array()
        .and_then(|all| all.iter().find(|s| s["name"] == init))
        .unwrap_or_else(|| panic!("no status for {init}: {status}"));
    assert_eq!(
        ours["state"]["terminated"]["exitCode"], 0,
        "init container did not complete: {ours}"
    );
}

/// Waits for `kubectl rollout status` of a Deployment, then returns its one
/// running pod (the newest, when an old one is still terminating).
pub fn rollout(plane: &ControlPlane, namespace: &str, name: &str) -> Value {
    let target = format!("deployment/{name}");
    if let Err(e) = plane.try_kubectl(
        &[
            "rollout",
            "status",
            "-n",
            namespace,
            &target,
            "--timeout=150s",
        ],
        None,
    ) {
        let pods = plane
            .try_kubectl(&["get", "pods", "-n", namespace, "-o", "wide"], None)
            .unwrap_or_default();
        let describe = plane
            .try_kubectl(
                &[
                    "describe",
                    "pods",
                    "-n",
                    namespace,
                    "-l",
                    &format!("app={name}"),
                ],
                None,
            )
            .unwrap_or_default();
        panic!("{e}\n{pods}\n{describe}");
    }
    newest_pod(plane, namespace, name).unwrap_or_else(|| panic!("no pod for {namespace}/{name}"))
}

/// The newest pod of `app=<name>` that is not being deleted.
pub fn newest_pod(plane: &ControlPlane, namespace: &str, name: &str) -> Option<Value> {
    let out = plane
        .try_kubectl(
            &[
                "get",
                "pods",
                "-n",
                namespace,
                "-l",
                &format!("app={name}"),
                "-o",
                "json",
            ],
            None,
        )
        .ok()?;
    let list: Value = serde_json::from_str(&out).ok()?;
    list["items"]
        .as_array()?
        .iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .max_by_key(|p| {
            p["metadata"]["creationTimestamp"]
                .as_str()
                .map(str::to_owned)
        })
        .cloned()
}

/// What a watch saw of one pod, timed by this process (the API server's
/// timestamps have one-second resolution).
#[derive(Clone, Debug, Default)]
pub struct PodTimes {
    pub created: Option<Instant>,
    pub init_done: Option<Instant>,
    /// The app container is running (kubelet started it).
    pub started: Option<Instant>,
    pub ready: Option<Instant>,
}

/// `kubectl get pods --watch` in a thread, recording when each pod was first
/// seen, when its init containers completed and when it became Ready.
pub struct PodWatch {
    child: Child,
    pub times: Arc<Mutex<HashMap<String, PodTimes>>>,
}

impl PodWatch {
    pub fn start(plane: &ControlPlane, namespace: &str) -> PodWatch {
        let template = "{.metadata.name} init={.status.initContainerStatuses[*].state.terminated.reason} started={.status.containerStatuses[*].started} ready={.status.conditions[?(@.type==\"Ready\")].status}{\"\\n\"}";
        let mut child = Command::new(plane.var("KUBECTL"))
            .env("KUBECONFIG", plane.var("KUBECONFIG"))
            .args(["get", "pods", "-n", namespace, "--watch", "-o"])
            .arg(format!("jsonpath={template}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("kubectl get pods --watch");
        let times: Arc<Mutex<HashMap<String, PodTimes>>> = Arc::default();
        let stdout = child.stdout.take().expect("watch stdout");
        let sink = times.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let now = Instant::now();
                let mut fields = line.split_whitespace();
                let Some(name) = fields.next() else { continue };
                let mut all = sink.lock().expect("watch times");
                let t = all.entry(name.to_owned()).or_default();
                t.created.get_or_insert(now);
                for f in fields {
                    if f == "init=Completed" {
                        t.init_done.get_or_insert(now);
                    }
                    if f == "started=true" {
                        t.started.get_or_insert(now);
                    }
                    if f == "ready=True" {
                        t.ready.get_or_insert(now);
                    }
                }
            }
        });
        PodWatch { child, times }
    }

    pub fn get(&self, pod: &str) -> PodTimes {
        self.times
            .lock()
            .expect("watch times")
            .get(pod)
            .cloned()
            .unwrap_or_default()
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs.get(xs.len() / 2).copied().unwrap_or_default()
}

pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) {
    super::cluster::eventually(what, timeout, || ok().then_some(()));
}
