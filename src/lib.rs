//! otel-injector: a Kubernetes mutating admission webhook that gives Python
//! pods OpenTelemetry auto-instrumentation when they are created.
//!
//! Map of the crate:
//! - [`inject`]: the pure mutation (pod + settings → JSON Patch + outcome);
//! - [`policy`]: which pods are in scope and with which settings (annotations);
//! - [`admission`]: the one admission function joining the two, for the
//!   webhook, `mutate`/`explain` and the tests;
//! - [`review`]: AdmissionReview bytes → response bytes (no I/O);
//! - [`delivery`]: initContainer or imageVolume, and the fallback;
//! - `settings`: the typed values the mutation needs (a leaf module);
//! - [`config`]: the operator-side YAML config and the built-in cxtm profile;
//! - `guard`: what the patch adds, checked as the API server will check it;
//! - [`server`], `admin`, [`tls`], [`metrics`]: the HTTPS webhook and admin port;
//! - [`certs`]: CA and serving certificate generation;
//! - [`cli`], [`run`]: the command line and its wiring.
#![forbid(unsafe_code)]

// Modules that no bench, fuzz target or test names are crate-private; what
// those need of them is re-exported (config::{Platform, CommandWrapper,
// Delivery}, inject::{Settings, Sampler, ExporterTls}).

pub(crate) mod admin;
pub mod admission;
pub mod certs;
pub mod cli;
pub mod config;
pub mod conn_watch;
pub mod delivery;
pub(crate) mod fleet;
pub(crate) mod guard;
pub mod inject;
pub(crate) mod k8s;
pub mod logging;
pub mod metrics;
pub mod offline;
pub mod policy;
pub mod review;
pub mod run;
pub mod server;
pub(crate) mod settings;
pub mod tls;
pub mod verify;
