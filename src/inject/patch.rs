//! A JSON Patch (RFC 6902) of `add` operations only: appends, object
//! members, and inserts at an index (env vars the operator puts first), so a
//! patch never removes anything the pod had nor changes its order.
//!
//! The patch is written as JSON text while it is built: every value goes
//! straight from its typed form (k8s-openapi structs, strings) into one
//! buffer. Going through `serde_json::Value` first cost more than the rest of
//! the mutation together (an `IndexMap` per object, then a second
//! serialization); see BENCHMARKS.md.

use std::fmt;
use std::sync::LazyLock;

use k8s_openapi::api::core::v1::{
    Container, EnvVar, ResourceRequirements, SecurityContext, VolumeMount,
};
use serde::Serialize;

use super::command::GUARD;

/// A finished JSON Patch: its JSON text and how many operations it holds.
#[derive(Clone, PartialEq, Eq)]
pub struct JsonPatch {
    json: Vec<u8>,
    ops: usize,
}

impl JsonPatch {
    /// `[]`.
    pub fn empty() -> Self {
        JsonPatch {
            json: b"[]".to_vec(),
            ops: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.ops
    }

    pub fn is_empty(&self) -> bool {
        self.ops == 0
    }

    /// The patch as JSON text (what the AdmissionReview response carries, before base64).
    pub fn as_bytes(&self) -> &[u8] {
        &self.json
    }

    pub fn as_str(&self) -> &str {
        // Only serde_json and ASCII punctuation write into `json`.
        std::str::from_utf8(&self.json).unwrap_or_default()
    }

    /// The patch as `json_patch` operations, to apply it or rewrite its paths.
    /// An error (which would be a bug in the builder) is returned rather than
    /// an empty patch: callers would print or apply "nothing to do" instead.
    pub fn to_operations(&self) -> Result<json_patch::Patch, serde_json::Error> {
        serde_json::from_slice(&self.json)
    }

    /// A patch from raw text, for tests of what happens when one is broken.
    #[cfg(test)]
    pub(crate) fn from_raw(json: &[u8], ops: usize) -> Self {
        JsonPatch {
            json: json.to_vec(),
            ops,
        }
    }
}

impl fmt::Debug for JsonPatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// JSON pointer (RFC 6901) from path segments, escaping `~` and `/`
/// (annotation and label keys contain `/`).
pub fn pointer<'a>(segments: impl IntoIterator<Item = &'a str>) -> String {
    let mut out = String::with_capacity(48);
    for segment in segments {
        out.push('/');
        if segment.contains(['~', '/']) {
            out.push_str(&segment.replace('~', "~0").replace('/', "~1"));
        } else {
            out.push_str(segment);
        }
    }
    out
}

#[derive(Debug)]
pub struct PatchBuilder {
    json: Vec<u8>,
    ops: usize,
}

impl Default for PatchBuilder {
    fn default() -> Self {
        // The seed pod's patch is ~2.4 KB.
        let mut json = Vec::with_capacity(4096);
        json.push(b'[');
        PatchBuilder { json, ops: 0 }
    }
}

impl PatchBuilder {
    /// An `add` of `value` at `path` (a JSON pointer from [`pointer`]).
    pub fn add<T: Serialize + ?Sized>(&mut self, path: &str, value: &T) {
        self.begin(path);
        self.value(value);
        self.json.push(b'}');
    }

    /// Appends `item` to the array at `path`, creating the array when the pod has none.
    pub fn append<T: Serialize + ?Sized>(&mut self, path: &str, exists: bool, item: &T) {
        self.append_with(path, exists, |b| b.value(item));
    }

    /// [`Self::append`] of a volume mount, written directly (see [`write_volume_mount`]).
    pub fn append_mount(&mut self, path: &str, exists: bool, mount: &VolumeMount) {
        self.append_with(path, exists, |b| write_volume_mount(&mut b.json, mount));
    }

    /// [`Self::append`] of a container, written directly where it holds only
    /// what an init container of ours sets (see [`Self::container`]).
    pub fn append_container(&mut self, path: &str, exists: bool, container: &Container) {
        self.append_with(path, exists, |b| b.container(container));
    }

    fn append_with(&mut self, path: &str, exists: bool, write: impl FnOnce(&mut Self)) {
        if exists {
            self.begin_with(path, "/-");
            write(self);
        } else {
            self.begin(path);
            self.json.push(b'[');
            write(self);
            self.json.push(b']');
        }
        self.json.push(b'}');
    }

    /// Adds env vars to the container env at `path`: one `add` of the whole
    /// list when the container has no env (each op costs the API server a
    /// pass over the pod when it applies the patch), else one append per var.
    /// Plain `name`/`value` vars (all the generated ones) are written
    /// directly, as k8s-openapi would serialize them.
    pub fn add_env(&mut self, path: &str, exists: bool, vars: &[EnvVar]) {
        if vars.is_empty() {
            return;
        }
        if exists {
            for var in vars {
                self.begin_with(path, "/-");
                self.env_var(var);
                self.json.push(b'}');
            }
        } else {
            self.begin(path);
            self.json.push(b'[');
            self.list(vars, Self::env_var);
            self.json.extend_from_slice(b"]}");
        }
    }

    fn env_var(&mut self, var: &EnvVar) {
        if var.value_from.is_some() {
            self.value(var);
            return;
        }
        self.json.extend_from_slice(br#"{"name":"#);
        write_json_str(&mut self.json, &var.name);
        if let Some(value) = &var.value {
            self.json.extend_from_slice(br#","value":"#);
            write_json_str(&mut self.json, value);
        }
        self.json.push(b'}');
    }

    /// An `add` of the container command at `path`. The guard's script
    /// (623 characters, 10 newlines to escape) is the same in every
    /// wrapped command, so its JSON form is escaped once per process rather
    /// than once per review.
    pub fn add_command(&mut self, path: &str, command: &[String]) {
        self.begin(path);
        self.json.push(b'[');
        self.list(command, |b, arg| {
            if arg == GUARD {
                b.json.extend_from_slice(guard_json());
            } else {
                write_json_str(&mut b.json, arg);
            }
        });
        self.json.extend_from_slice(b"]}");
    }

    /// An `add` of a string, written directly.
    pub fn add_str(&mut self, path: &str, value: &str) {
        self.begin(path);
        write_json_str(&mut self.json, value);
        self.json.push(b'}');
    }

    /// An `add` of a JSON object with these string members, in order, written
    /// directly: serde_json escapes strings a byte at a time, and the status
    /// annotations of every review went through it.
    pub fn add_object<'a>(
        &mut self,
        path: &str,
        members: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) {
        self.begin(path);
        self.json.push(b'{');
        self.list(members, |b, (key, value)| {
            write_json_str(&mut b.json, key);
            b.json.push(b':');
            write_json_str(&mut b.json, value);
        });
        self.json.extend_from_slice(b"}}");
    }

    /// A container as k8s-openapi serializes it. The init container (name,
    /// image, pull policy, `cp` command, mounts) is in every injected review,
    /// so its strings go through [`write_json_str`]; a container with any
    /// other field, and the nested resources and securityContext, through serde.
    fn container(&mut self, container: &Container) {
        // Exhaustive, so a field added to k8s-openapi's Container is a compile
        // error here rather than silently dropped.
        let Container {
            args,
            command,
            env,
            env_from,
            image,
            image_pull_policy,
            lifecycle,
            liveness_probe,
            name,
            ports,
            readiness_probe,
            resize_policy,
            resources,
            restart_policy,
            restart_policy_rules,
            security_context,
            startup_probe,
            stdin,
            stdin_once,
            termination_message_path,
            termination_message_policy,
            tty,
            volume_devices,
            volume_mounts,
            working_dir,
        } = container;
        let other = args.is_some()
            || env.is_some()
            || env_from.is_some()
            || lifecycle.is_some()
            || liveness_probe.is_some()
            || ports.is_some()
            || readiness_probe.is_some()
            || resize_policy.is_some()
            || restart_policy.is_some()
            || restart_policy_rules.is_some()
            || startup_probe.is_some()
            || stdin.is_some()
            || stdin_once.is_some()
            || termination_message_path.is_some()
            || termination_message_policy.is_some()
            || tty.is_some()
            || volume_devices.is_some()
            || working_dir.is_some();
        if other {
            self.value(container);
            return;
        }
        self.json.push(b'{');
        if let Some(command) = command {
            self.json.extend_from_slice(br#""command":["#);
            self.list(command, |b, arg| write_json_str(&mut b.json, arg));
            self.json.extend_from_slice(b"],");
        }
        if let Some(image) = image {
            self.json.extend_from_slice(br#""image":"#);
            write_json_str(&mut self.json, image);
            self.json.push(b',');
        }
        if let Some(policy) = image_pull_policy {
            self.json.extend_from_slice(br#""imagePullPolicy":"#);
            write_json_str(&mut self.json, policy);
            self.json.push(b',');
        }
        self.json.extend_from_slice(br#""name":"#);
        write_json_str(&mut self.json, name);
        self.container_tail(resources, security_context, volume_mounts);
    }

    /// The fields after `name` of [`Self::container`], in k8s-openapi's order.
    fn container_tail(
        &mut self,
        resources: &Option<ResourceRequirements>,
        security_context: &Option<SecurityContext>,
        volume_mounts: &Option<Vec<VolumeMount>>,
    ) {
        if let Some(resources) = resources {
            self.json.extend_from_slice(br#","resources":"#);
            self.value(resources);
        }
        if let Some(context) = security_context {
            self.json.extend_from_slice(br#","securityContext":"#);
            self.value(context);
        }
        if let Some(mounts) = volume_mounts {
            self.json.extend_from_slice(br#","volumeMounts":["#);
            self.list(mounts, |b, mount| write_volume_mount(&mut b.json, mount));
            self.json.push(b']');
        }
        self.json.push(b'}');
    }

    fn begin(&mut self, path: &str) {
        self.begin_with(path, "");
    }

    /// `items` written by `item`, separated by commas (the brackets are
    /// the caller's).
    fn list<T>(&mut self, items: impl IntoIterator<Item = T>, mut item: impl FnMut(&mut Self, T)) {
        for (i, x) in items.into_iter().enumerate() {
            if i > 0 {
                self.json.push(b',');
            }
            item(self, x);
        }
    }

    fn begin_with(&mut self, path: &str, suffix: &str) {
        if self.ops > 0 {
            self.json.push(b',');
        }
        self.ops += 1;
        self.json.extend_from_slice(br#"{"op":"add","path":"#);
        if needs_escaping(path) {
            let mut joined = String::with_capacity(path.len() + suffix.len());
            joined.push_str(path);
            joined.push_str(suffix);
            write_json_str(&mut self.json, &joined);
        } else {
            // The suffix is `/-` or empty: nothing to escape there either.
            self.json.push(b'"');
            self.json.extend_from_slice(path.as_bytes());
            self.json.extend_from_slice(suffix.as_bytes());
            self.json.push(b'"');
        }
        self.json.extend_from_slice(br#","value":"#);
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) {
        let mark = self.json.len();
        if serde_json::to_writer(&mut self.json, value).is_err() {
            // k8s-openapi types and strings always serialize; a failure would
            // be a bug in the types, reported as `null` rather than a panic.
            self.json.truncate(mark);
            self.json.extend_from_slice(b"null");
        }
    }

    pub fn build(mut self) -> JsonPatch {
        self.json.push(b']');
        JsonPatch {
            json: self.json,
            ops: self.ops,
        }
    }
}

/// [`GUARD`] as a JSON string, escaped on first use.
fn guard_json() -> &'static [u8] {
    static JSON: LazyLock<Vec<u8>> = LazyLock::new(|| {
        let mut out = Vec::with_capacity(GUARD.len() + 128);
        write_json_str(&mut out, GUARD);
        out
    });
    &JSON
}

/// Whether `s` has a byte JSON must escape (`"`, `\\`, below 0x20). The
/// strings here are names, paths and values of 5 to 150 bytes: a fold over
/// the whole slice vectorises only past ~64 bytes and ran byte by byte
/// (~3 instructions each, the largest part of `write_json_str`'s ~6k per
/// review). Whole 16-byte blocks (then one overlapping last block) compile
/// to a few vector instructions; 8 to 15 bytes are two overlapping words
/// tested a word at a time.
pub(crate) fn needs_escaping(s: &str) -> bool {
    let bytes = s.as_bytes();
    let n = bytes.len();
    if n >= 16 {
        let mut blocks = bytes.chunks_exact(16);
        if blocks
            .by_ref()
            .any(|b| <&[u8; 16]>::try_from(b).is_ok_and(block_needs_escaping))
        {
            return true;
        }
        return !blocks.remainder().is_empty()
            && <&[u8; 16]>::try_from(&bytes[n - 16..]).is_ok_and(block_needs_escaping);
    }
    if n >= 8 {
        let word = |at: usize| {
            bytes
                .get(at..at + 8)
                .and_then(|w| <[u8; 8]>::try_from(w).ok())
                .map_or(0, u64::from_le_bytes)
        };
        return word_needs_escaping(word(0)) || word_needs_escaping(word(n - 8));
    }
    bytes.iter().copied().any(byte_needs_escaping)
}

fn byte_needs_escaping(b: u8) -> bool {
    (b == b'"') | (b == b'\\') | (b < 0x20)
}

/// A fold without an early exit over a fixed 16 bytes: the compiler turns it
/// into vector compares.
#[inline(always)]
fn block_needs_escaping(block: &[u8; 16]) -> bool {
    block
        .iter()
        .fold(false, |found, &b| found | byte_needs_escaping(b))
}

/// Eight bytes at once (bit tricks: a byte below 0x20, a byte equal to `"`
/// or `\\` as a zero byte of `x ^ repeated`). Exact for "is there one".
#[inline(always)]
fn word_needs_escaping(x: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let has_zero = |v: u64| v.wrapping_sub(ONES) & !v & HIGH != 0;
    (x.wrapping_sub(ONES * 0x20) & !x & HIGH != 0)
        || has_zero(x ^ (ONES * u64::from(b'"')))
        || has_zero(x ^ (ONES * u64::from(b'\\')))
}

/// `s` as a JSON string: copied as is when nothing in it needs escaping
/// (every generated name and value), else escaped by serde_json.
fn write_json_str(out: &mut Vec<u8>, s: &str) {
    if needs_escaping(s) {
        // Writing a &str into a Vec cannot fail.
        let _ = serde_json::to_writer(&mut *out, s);
    } else {
        out.reserve(s.len() + 2);
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
    }
}

/// A volume mount as k8s-openapi serializes it (fields in its order, unset
/// ones left out), strings through [`write_json_str`]: every injected review
/// writes two.
fn write_volume_mount(out: &mut Vec<u8>, mount: &VolumeMount) {
    // Exhaustive: a new field is a compile error here.
    let VolumeMount {
        mount_path,
        mount_propagation,
        name,
        read_only,
        recursive_read_only,
        sub_path,
        sub_path_expr,
    } = mount;
    out.extend_from_slice(br#"{"mountPath":"#);
    write_json_str(out, mount_path);
    if let Some(v) = mount_propagation {
        out.extend_from_slice(br#","mountPropagation":"#);
        write_json_str(out, v);
    }
    out.extend_from_slice(br#","name":"#);
    write_json_str(out, name);
    match read_only {
        Some(true) => out.extend_from_slice(br#","readOnly":true"#),
        Some(false) => out.extend_from_slice(br#","readOnly":false"#),
        None => {}
    }
    for (key, value) in [
        (&br#","recursiveReadOnly":"#[..], recursive_read_only),
        (br#","subPath":"#, sub_path),
        (br#","subPathExpr":"#, sub_path_expr),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(key);
            write_json_str(out, value);
        }
    }
    out.push(b'}');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pointer_escapes_slash_and_tilde() {
        let p = pointer(["metadata", "annotations", "example.com/a~b"]);
        assert_eq!(p, "/metadata/annotations/example.com~1a~0b");
    }

    #[test]
    fn builds_a_json_patch_that_json_patch_reads() {
        let mut b = PatchBuilder::default();
        b.append("/spec/volumes", false, &serde_json::json!({"name": "v"}));
        b.append(
            "/spec/containers/0/env",
            true,
            &serde_json::json!({"name": "A"}),
        );
        b.add("/metadata/annotations/a~1b", "x\"y");
        b.add_object("/metadata/labels", [("k", "v"), ("a", "b")]);
        let patch = b.build();
        assert_eq!(patch.len(), 4);
        let plain = EnvVar {
            name: "A\"B".into(),
            value: Some("line\nbreak ✓".into()),
            value_from: None,
        };
        let from = EnvVar {
            name: "F".into(),
            value: None,
            value_from: Some(Default::default()),
        };
        let vars = [plain.clone(), from.clone()];
        let mut direct = PatchBuilder::default();
        direct.add_env("/e", true, &vars);
        direct.add_env("/f", false, &vars);
        let mut generic = PatchBuilder::default();
        generic.append("/e", true, &plain);
        generic.append("/e", true, &from);
        generic.add("/f", &vars);
        assert_eq!(direct.build(), generic.build(), "same bytes as serde");
        let ops = patch.to_operations().expect("parses back");
        assert_eq!(ops.0.len(), 4);
        let back: serde_json::Value = serde_json::from_slice(patch.as_bytes()).expect("json");
        assert_eq!(
            back,
            serde_json::json!([
                {"op": "add", "path": "/spec/volumes", "value": [{"name": "v"}]},
                {"op": "add", "path": "/spec/containers/0/env/-", "value": {"name": "A"}},
                {"op": "add", "path": "/metadata/annotations/a~1b", "value": "x\"y"},
                {"op": "add", "path": "/metadata/labels", "value": {"k": "v", "a": "b"}},
            ])
        );
    }

    #[test]
    fn commands_are_written_as_serde_writes_them_guard_included() {
        let command: Vec<String> = ["python3", "-S", "-c", GUARD, "/m/bin/x", "a\"b\n", GUARD]
            .iter()
            .map(|s| (*s).to_owned())
            .collect();
        let mut direct = PatchBuilder::default();
        direct.add_command("/spec/containers/0/command", &command);
        let mut generic = PatchBuilder::default();
        generic.add("/spec/containers/0/command", &command);
        assert_eq!(direct.build(), generic.build());
    }

    /// Volume mounts and containers written directly are the bytes serde writes.
    #[test]
    fn mounts_and_containers_are_written_as_serde_writes_them() {
        use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
        let plain = VolumeMount {
            mount_path: "/otel".into(),
            name: "v".into(),
            ..Default::default()
        };
        let full = VolumeMount {
            mount_path: "/a\"b".into(),
            mount_propagation: Some("HostToContainer".into()),
            name: "n\n✓".into(),
            read_only: Some(false),
            recursive_read_only: Some("IfPossible".into()),
            sub_path: Some("linux-amd64".into()),
            sub_path_expr: Some("$(POD)".into()),
        };
        let read_only = VolumeMount {
            read_only: Some(true),
            ..plain.clone()
        };
        let init = Container {
            name: "init".into(),
            image: Some("img:1".into()),
            command: Some(vec!["cp".into(), "-r".into(), "/a b/\"".into()]),
            volume_mounts: Some(vec![plain.clone(), read_only.clone()]),
            ..Default::default()
        };
        let mut limits = std::collections::BTreeMap::new();
        limits.insert("cpu".to_owned(), Quantity("50m".into()));
        let dressed = Container {
            image_pull_policy: Some("IfNotPresent".into()),
            resources: Some(ResourceRequirements {
                limits: Some(limits),
                ..Default::default()
            }),
            security_context: Some(SecurityContext {
                run_as_non_root: Some(true),
                ..Default::default()
            }),
            volume_mounts: Some(Vec::new()),
            ..init.clone()
        };
        let other = Container {
            working_dir: Some("/w".into()),
            args: Some(vec!["x".into()]),
            ..init.clone()
        };
        let bare = Container {
            name: "c".into(),
            ..Default::default()
        };
        for (exists, mount) in [(false, &plain), (true, &full), (true, &read_only)] {
            let mut direct = PatchBuilder::default();
            direct.append_mount("/m", exists, mount);
            let mut generic = PatchBuilder::default();
            generic.append("/m", exists, mount);
            assert_eq!(direct.build(), generic.build(), "{mount:?}");
        }
        for (exists, container) in [
            (false, &init),
            (true, &dressed),
            (true, &other),
            (false, &bare),
        ] {
            let mut direct = PatchBuilder::default();
            direct.append_container("/c", exists, container);
            let mut generic = PatchBuilder::default();
            generic.append("/c", exists, container);
            assert_eq!(direct.build(), generic.build(), "{container:?}");
        }
    }

    #[test]
    fn objects_and_strings_are_written_as_serde_writes_them() {
        let members = [("a/b", "x\"y"), ("k", "line\nbreak ✓"), ("", "")];
        let mut direct = PatchBuilder::default();
        direct.add_object("/o", members);
        direct.add_object("/e", []);
        direct.add_str("/s", "tab\there");
        let mut generic = PatchBuilder::default();
        let map: serde_json::Map<String, serde_json::Value> = members
            .iter()
            .map(|(k, v)| ((*k).to_owned(), serde_json::Value::from(*v)))
            .collect();
        generic.add("/o", &map);
        generic.add("/e", &serde_json::Map::new());
        generic.add("/s", "tab\there");
        assert_eq!(direct.build(), generic.build());
    }

    #[test]
    fn paths_that_need_json_escaping_are_escaped() {
        let mut b = PatchBuilder::default();
        let path = pointer(["spec", "nodeSelector", "odd\"key\\"]);
        b.add(&path, "v");
        b.append(&path, true, "w");
        let ops = b.build().to_operations().expect("parses back");
        let paths: Vec<String> = ops
            .0
            .iter()
            .map(|op| match op {
                json_patch::PatchOperation::Add(add) => add.path.to_string(),
                other => panic!("unexpected {other:?}"),
            })
            .collect();
        assert_eq!(
            paths,
            [
                "/spec/nodeSelector/odd\"key\\",
                "/spec/nodeSelector/odd\"key\\/-"
            ]
        );
    }

    #[test]
    fn a_patch_that_does_not_parse_back_is_an_error_not_an_empty_patch() {
        let broken = JsonPatch::from_raw(br#"[{"op":"add","path":"/a""#, 1);
        assert!(broken.to_operations().is_err());
    }

    /// The block and word tests agree with the byte-by-byte definition, at
    /// every position of every length around the block and word sizes, among
    /// multi-byte characters too.
    #[test]
    fn needs_escaping_agrees_with_the_definition() {
        let plain = |s: &str| s.bytes().any(byte_needs_escaping);
        for filler in ["x", "é", "✓", "\u{7f}", " ", "~"] {
            for len in 0..70 {
                let base: String = filler.repeat(len);
                assert_eq!(needs_escaping(&base), plain(&base), "{base:?}");
                for bad in ['"', '\\', '\n', '\u{0}', '\u{1f}', '\u{20}', '#', '\u{80}'] {
                    for at in 0..=len {
                        let s: String = filler
                            .repeat(at)
                            .chars()
                            .chain([bad])
                            .chain(filler.repeat(len - at).chars())
                            .collect();
                        assert_eq!(needs_escaping(&s), plain(&s), "{s:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn empty_patch_is_an_empty_array() {
        assert_eq!(PatchBuilder::default().build().as_bytes(), b"[]");
        assert_eq!(JsonPatch::empty(), PatchBuilder::default().build());
    }
}
