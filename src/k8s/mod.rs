//! The Kubernetes side: Instrumentation resources, namespaces and owners kept
//! in memory by kube-runtime watches (admission never waits on the API
//! server), and rate-limited Events for skips that need attention.

pub mod events;
pub mod instrumentation;
pub mod lease;
pub mod probe;
pub mod selfcert;
pub mod view;

pub use events::EventSink;
pub use view::KubeView;
