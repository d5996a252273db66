//! Command-line interface: flags grouped by concern with clap `flatten`.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "otel-injector",
    version,
    about = "Injects OpenTelemetry Python auto-instrumentation into pods"
)]
pub struct Cli {
    #[command(flatten)]
    pub log: LogArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
// Parsed once at start-up: the size of the largest variant costs nothing.
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Run the admission webhook (HTTPS) and its admin port (HTTP).
    Serve(ServeArgs),
    /// Write a CA and a serving certificate for the webhook Service.
    Certs(CertsArgs),
    /// Apply the webhook's mutation to manifests offline (Pod, Deployment,
    /// StatefulSet, DaemonSet, ReplicaSet, Job, CronJob, List).
    Mutate(MutateArgs),
    /// Say, per container, whether the webhook would instrument it and why.
    Explain(ExplainArgs),
    /// Check a live pod (or a deployment's pods) with your kubeconfig.
    Verify(VerifyArgs),
    /// Coverage of the live cluster per workload: instrumented, missed,
    /// opted_out, refused, rolled_back (docs/fleet.md).
    Status(StatusArgs),
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Only this namespace (default: all namespaces).
    #[arg(short = 'n', long)]
    pub namespace: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct InputArgs {
    /// Manifest file, or - for standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: String,
    /// Namespace for documents that name none.
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
}

#[derive(Debug, Args)]
pub struct MutateArgs {
    #[command(flatten)]
    pub input: InputArgs,
    /// yaml: the mutated documents; patch: a JSON Patch and kubectl command per document; diff: a unified diff.
    #[arg(short = 'o', long, value_enum, default_value = "yaml")]
    pub output: crate::offline::OutputFormat,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    #[command(flatten)]
    pub input: InputArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["pod", "deployment"])))]
pub struct VerifyArgs {
    #[arg(short = 'n', long)]
    pub namespace: String,
    /// The pod to check.
    #[arg(long)]
    pub pod: Option<String>,
    /// Check every pod of this Deployment.
    #[arg(long)]
    pub deployment: Option<String>,
    #[command(flatten)]
    pub config: ConfigArgs,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct LogArgs {
    /// Log format.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "OTEL_INJECTOR_LOG_FORMAT"
    )]
    pub log_format: LogFormat,
    /// Log filter, RUST_LOG syntax (RUST_LOG wins when set).
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
}

#[derive(Debug, Args)]
pub struct ConfigArgs {
    /// YAML config; without it the built-in cxtm profile (manifests/config.yaml) is used.
    #[arg(long, env = "OTEL_INJECTOR_CONFIG")]
    pub config: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TlsArgs {
    /// Serving certificate chain (PEM). Without it a self-signed CA and cert are made at start.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Serving private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require client certificates signed by this CA (PEM), e.g. the API server's.
    #[arg(long)]
    pub client_ca: Option<PathBuf>,
    /// Where the self-signed CA and cert go when no --tls-cert is given.
    #[arg(long, default_value_os_t = std::env::temp_dir().join("otel-injector-certs"))]
    pub self_signed_dir: PathBuf,
    /// How often the cert and key files are checked for changes, in seconds.
    #[arg(long, default_value_t = 5)]
    pub cert_reload_seconds: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum KubernetesMode {
    /// Use the cluster when a kubeconfig or in-cluster service account is found.
    Auto,
    /// Require the cluster; fail to start without it.
    On,
    /// Static config only: no watches, no Events.
    Off,
}

#[derive(Debug, Args)]
pub struct KubeArgs {
    /// Watch Instrumentations, namespaces and owners, and record Events.
    #[arg(
        long,
        value_enum,
        default_value = "auto",
        env = "OTEL_INJECTOR_KUBERNETES"
    )]
    pub kubernetes: KubernetesMode,
    /// At most one Event per owner and reason in this many seconds.
    #[arg(long, default_value_t = 300)]
    pub event_interval_seconds: u64,
    /// Namespace of the fleet reconciler's Lease (default: the pod's own,
    /// from its service account, else `default`).
    #[arg(long, env = "POD_NAMESPACE")]
    pub lease_namespace: Option<String>,
    /// Name of the fleet reconciler's Lease: one replica at a time reconciles.
    #[arg(long, default_value = "otel-injector-fleet")]
    pub lease_name: String,
    /// Check that the API server keeps image volumes (a dry-run pod create)
    /// at start and then every this many seconds (imageVolume delivery).
    #[arg(long, default_value_t = 300)]
    pub image_volume_check_seconds: u64,
    /// The namespace of the image volume check's dry-run pod; default: the
    /// client's (in a cluster, the webhook's own).
    #[arg(long, env = "OTEL_INJECTOR_NAMESPACE")]
    pub own_namespace: Option<String>,
}

/// The self-managed certificate (src/k8s/selfcert.rs, docs/self-managed-tls.md).
#[derive(Debug, Args)]
pub struct SelfCertArgs {
    /// Manage the serving certificate: the replica holding the Lease mints a
    /// CA and certificate into --tls-secret and sets our webhooks' caBundle;
    /// every replica waits for --tls-cert/--tls-key (that Secret, mounted)
    /// and reloads it.
    #[arg(long, env = "OTEL_INJECTOR_SELF_MANAGED_TLS", requires = "tls_cert")]
    pub self_managed_tls: bool,
    /// The Secret (in --pod-namespace) holding tls.crt, tls.key and ca.crt.
    #[arg(long, default_value = "otel-injector-tls")]
    pub tls_secret: String,
    /// Our MutatingWebhookConfiguration: the only one whose caBundle is set.
    #[arg(long, default_value = "otel-injector")]
    pub webhook_configuration: String,
    /// The Service the API server calls (the certificate's DNS names).
    #[arg(long, default_value = "otel-injector")]
    pub service_name: String,
    /// Our namespace (the downward API's metadata.namespace).
    #[arg(long, env = "POD_NAMESPACE", default_value = "otel-injector")]
    pub pod_namespace: String,
    /// The coordination.k8s.io Lease that picks the one replica that writes
    /// the certificate (its own, apart from the fleet's `--lease-name`, so
    /// that each job's holder can change without the other's noticing).
    #[arg(long, default_value = "otel-injector-leader")]
    pub cert_lease_name: String,
    /// Renew the certificate this many days before it expires.
    #[arg(long, default_value_t = 90)]
    pub renew_before_days: u64,
    /// How often the leader checks the Secret and the caBundle, in seconds.
    #[arg(long, default_value_t = 60)]
    pub self_managed_check_seconds: u64,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Webhook address (HTTPS).
    #[arg(long, default_value = "0.0.0.0:8443", env = "OTEL_INJECTOR_LISTEN")]
    pub listen: SocketAddr,
    /// Admin address (plain HTTP: /livez, /readyz, /metrics).
    #[arg(
        long,
        default_value = "0.0.0.0:9090",
        env = "OTEL_INJECTOR_ADMIN_LISTEN"
    )]
    pub admin_listen: SocketAddr,
    #[command(flatten)]
    pub tls: TlsArgs,
    #[command(flatten)]
    pub self_cert: SelfCertArgs,
    #[command(flatten)]
    pub config: ConfigArgs,
    #[command(flatten)]
    pub kube: KubeArgs,
    /// Largest request body accepted, in bytes (larger: HTTP 413).
    #[arg(long, default_value_t = crate::server::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,
    /// After SIGTERM, seconds to keep accepting new connections (reporting
    /// not ready, every answer closing its connection) while the pod leaves
    /// the Service's endpoints and the API server's view of them.
    #[arg(long, default_value_t = 10)]
    pub shutdown_delay_seconds: u64,
    /// After that, at most this many seconds for open connections to end on
    /// their own: after their next answer, or when the client drops them (the
    /// API server: 90 s idle). Below 90, idle connections are closed under
    /// the API server's feet and a review it sends at that moment fails open.
    #[arg(long, default_value_t = 100)]
    pub drain_seconds: u64,
    /// Close a connection after this many requests (0: never), so the API
    /// server opens a new one to a randomly picked replica: without it one
    /// replica takes every call.
    #[arg(long, default_value_t = 100)]
    pub max_requests_per_connection: u64,
}

#[derive(Debug, Args)]
pub struct CertsArgs {
    /// Output directory for ca.crt, tls.crt and tls.key.
    #[arg(long, default_value = "certs")]
    pub out: PathBuf,
    /// Service name of the webhook.
    #[arg(long, default_value = "otel-injector")]
    pub service: String,
    /// Namespace of the webhook Service.
    #[arg(long, default_value = "otel-injector")]
    pub namespace: String,
    /// Extra DNS names or IPs for the certificate.
    #[arg(long = "san")]
    pub extra_sans: Vec<String>,
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    /// clap's own consistency checks (unique argument names across the
    /// flattened groups, valid defaults): a clash panics every `serve` of a
    /// debug build, so it is caught here rather than in the cluster tests.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
