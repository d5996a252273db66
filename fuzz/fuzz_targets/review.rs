//! Raw bytes into `Reviewer::review`, the function the HTTP handler calls
//! with every request body. Never a panic; any answered body is a JSON
//! AdmissionReview with the request's uid, `allowed: true`, and a patch that
//! applies to the request's pod, leaves a valid Pod, and is not repeated when
//! that Pod is reviewed again.
#![no_main]

use std::sync::{Arc, OnceLock};

use base64::Engine;
use k8s_openapi::api::core::v1::Pod;
use libfuzzer_sys::fuzz_target;
use otel_injector::config::Config;
use otel_injector::policy::StaticView;
use otel_injector::review::Reviewer;
use serde_json::Value;

fn reviewer() -> &'static Reviewer {
    static REVIEWER: OnceLock<Reviewer> = OnceLock::new();
    REVIEWER.get_or_init(|| Reviewer::new(Config::default(), Arc::new(StaticView)))
}

fn patch_of(answer: &Value) -> Option<json_patch::Patch> {
    let encoded = answer["response"]["patch"].as_str()?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("patch is base64");
    Some(serde_json::from_slice(&bytes).expect("patch is a JSON Patch"))
}

fuzz_target!(|data: &[u8]| {
    let Ok(reviewed) = reviewer().review(data) else {
        return;
    };
    let answer: Value = serde_json::from_slice(&reviewed.body).expect("answer is JSON");
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    assert_eq!(
        answer["response"]["allowed"], true,
        "the webhook never denies"
    );
    let uid = answer["response"]["uid"].as_str().expect("response.uid");
    assert_eq!(uid, reviewed.decision.uid);
    let Some(patch) = patch_of(&answer) else {
        return;
    };
    // A patch was produced, so the body was a review of a pod that decoded.
    // serde skips unknown fields without checking their UTF-8, so read the
    // body as serde_json::Value the same lenient way.
    let request: Value = serde_json::from_slice(data)
        .or_else(|_| serde_json::from_str(&String::from_utf8_lossy(data)))
        .expect("input was JSON");
    assert_eq!(request["request"]["uid"].as_str(), Some(uid));
    let mut pod = request["request"]["object"].clone();
    if !pod["metadata"].is_object() {
        // Out of contract: the API server always sends `metadata` as an
        // object; without one there is nowhere to add the annotations.
        return;
    }
    // The review reads only the pod fields it needs, so a pod broken
    // elsewhere can be patched; a valid pod must stay valid.
    let was_a_pod = serde_json::from_value::<Pod>(pod.clone()).is_ok();
    json_patch::patch(&mut pod, &patch).expect("patch applies to the request's pod");
    if was_a_pod {
        let _: Pod = serde_json::from_value(pod.clone()).expect("patched pod is a Pod");
    }
    let mut again = request.clone();
    again["request"]["object"] = pod;
    let second = reviewer()
        .review(&serde_json::to_vec(&again).expect("json"))
        .expect("the patched review is answered");
    let second: Value = serde_json::from_slice(&second.body).expect("answer is JSON");
    assert!(
        second["response"].get("patch").is_none(),
        "second admission patched again: {:?}",
        patch_of(&second)
    );
});
