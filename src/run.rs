//! Wiring for `serve`: config, TLS, listeners, reload, signals.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, AdminState, Readiness};
use crate::admission::Base;
use crate::certs;
use crate::cli::{
    CertsArgs, ExplainArgs, InputArgs, KubeArgs, KubernetesMode, MutateArgs, ServeArgs, StatusArgs,
    VerifyArgs,
};
use crate::config::Config;
use crate::delivery::{ImageVolumeState, ImageVolumeSupport};
use crate::fleet::reconciler::Reconciler;
use crate::inject::Settings;
use crate::k8s::lease::{self, LeaseSettings};
use crate::k8s::probe;
use crate::k8s::selfcert::{SelfCert, SelfCertSettings};
use crate::k8s::{EventSink, KubeView};
use crate::metrics::Metrics;
use crate::policy::ClusterView;
use crate::policy::StaticView;
use crate::review::Reviewer;
use crate::server::{self, AppState};
use crate::tls::{self, CertStore};

pub fn load_config(path: Option<&Path>) -> anyhow::Result<Config> {
    match path {
        Some(path) => Ok(Config::from_file(path)?),
        None => Ok(Config::default()),
    }
}

pub fn write_certs(args: &CertsArgs) -> anyhow::Result<()> {
    let mut names = certs::service_names(&args.service, &args.namespace);
    names.extend(args.extra_sans.iter().cloned());
    let paths = certs::generate(&names)?.write(&args.out)?;
    println!(
        "wrote {} (CA), {} and {} for {}",
        paths.ca.display(),
        paths.cert.display(),
        paths.key.display(),
        names.join(", ")
    );
    Ok(())
}

pub async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    tls::install_crypto_provider();
    // A bad config refuses to start here, naming the key (Config::validate).
    let config = load_config(args.config.config.as_deref())?;
    let metrics = Arc::new(Metrics::new());
    if args.self_cert.self_managed_tls {
        start_self_managed_certificate(&args, metrics.clone()).await?;
    }
    let store = serving_certificate(&args)?;
    let tls_config = tls::server_config(store.clone(), args.tls.client_ca.as_deref())?;

    metrics.cert_expiry.set(not_after_seconds(&store));
    let readiness = Arc::new(Readiness::default());
    readiness.certs_loaded.store(true, Ordering::Release);

    let (cluster, events, client) =
        connect_cluster(&args.kube, &config, readiness.clone(), metrics.clone()).await?;
    if let Some(client) = client {
        start_fleet(
            &args.kube,
            &config,
            client,
            cluster.clone(),
            metrics.clone(),
        );
    }
    let reviewer = Reviewer::new(config, cluster);
    let app = server::close_connections_when_draining(
        server::router(AppState {
            reviewer,
            metrics: metrics.clone(),
            body_limit: args.body_limit,
            events,
        }),
        readiness.clone(),
    );
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding the webhook to {}", args.listen))?;
    let admin_listener = TcpListener::bind(args.admin_listen)
        .await
        .with_context(|| format!("binding the admin port to {}", args.admin_listen))?;
    tracing::info!(
        webhook = %listener.local_addr()?,
        admin = %admin_listener.local_addr()?,
        startup_ms = started.elapsed().as_secs_f64() * 1000.0,
        "serving"
    );

    tokio::spawn(watch_certs(
        store,
        metrics.clone(),
        Duration::from_secs(args.tls.cert_reload_seconds.max(1)),
    ));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let admin = spawn_admin(
        admin_listener,
        AdminState {
            readiness: readiness.clone(),
            metrics,
        },
        stop_rx,
    );
    server::serve_tls_with(
        listener,
        TlsAcceptor::from(Arc::new(tls_config)),
        app,
        drain_on_signal(readiness, Duration::from_secs(args.shutdown_delay_seconds)),
        Duration::from_secs(args.drain_seconds),
        (args.max_requests_per_connection > 0).then_some(args.max_requests_per_connection),
    )
    .await;
    let _ = stop_tx.send(true);
    let _ = admin.await;
    tracing::info!("stopped");
    Ok(())
}

/// `--self-managed-tls`: starts the certificate worker (it acts only while
/// this replica holds the Lease), then waits until the kubelet has mounted
/// the Secret's files, which on a fresh install the leader writes first.
async fn start_self_managed_certificate(
    args: &ServeArgs,
    metrics: Arc<Metrics>,
) -> anyhow::Result<()> {
    let s = &args.self_cert;
    let client = kube::Client::try_default()
        .await
        .context("--self-managed-tls needs the cluster: cannot configure a Kubernetes client")?;
    let leader = lease::spawn(
        client.clone(),
        LeaseSettings::new(&s.pod_namespace, &s.cert_lease_name),
    );
    let settings = SelfCertSettings {
        namespace: s.pod_namespace.clone(),
        secret: s.tls_secret.clone(),
        webhook: s.webhook_configuration.clone(),
        service: s.service_name.clone(),
        renew_before: Duration::from_secs(s.renew_before_days.saturating_mul(86_400)),
        check_every: Duration::from_secs(s.self_managed_check_seconds.max(1)),
    };
    tokio::spawn(SelfCert::new(client, settings, metrics).run(leader));
    let (Some(cert), Some(key)) = (&args.tls.tls_cert, &args.tls.tls_key) else {
        anyhow::bail!("--self-managed-tls needs --tls-cert and --tls-key (the mounted Secret)");
    };
    let mut waited = 0u64;
    while !(cert.exists() && key.exists()) {
        if waited.is_multiple_of(30) {
            tracing::info!(cert = %cert.display(), secret = %s.tls_secret, waited_s = waited, "self-managed certificate: waiting for the Secret to be mounted");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        waited += 1;
    }
    Ok(())
}

/// The serving certificate: `--tls-cert`/`--tls-key`, else a CA and
/// certificate made now into `--self-signed-dir`.
fn serving_certificate(args: &ServeArgs) -> anyhow::Result<Arc<CertStore>> {
    let (cert_path, key_path) = match (&args.tls.tls_cert, &args.tls.tls_key) {
        (Some(cert), Some(key)) => (cert.clone(), key.clone()),
        _ => {
            let names = certs::service_names("otel-injector", "otel-injector");
            let paths = certs::generate(&names)?.write(&args.tls.self_signed_dir)?;
            tracing::info!(
                ca = %paths.ca.display(),
                cert = %paths.cert.display(),
                "no --tls-cert given: serving a self-signed certificate; its CA is at {}",
                paths.ca.display()
            );
            (paths.cert, paths.key)
        }
    };
    let store = CertStore::load(cert_path, key_path).context("loading the serving certificate")?;
    Ok(Arc::new(store))
}

/// The admin port (`/livez`, `/readyz`, `/metrics`) until `stop` turns true.
fn spawn_admin(
    listener: TcpListener,
    state: AdminState,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let app = admin::router(state);
    tokio::spawn(async move {
        let stopped = async move {
            let _ = stop.wait_for(|s| *s).await;
        };
        if let Err(e) = axum::serve(listener, app)
            .with_graceful_shutdown(stopped)
            .await
        {
            tracing::error!(error = %e, "admin server failed");
        }
    })
}

/// Resolves when the webhook should stop accepting: `delay` after a signal.
/// From the signal on `/readyz` says not ready and every answer closes its
/// connection (`close_connections_when_draining`). The delay covers the time
/// the pod takes to leave the Service's endpoints and the API server's view
/// of them: until then the API server may still dial this pod, and a closed
/// listener would fail that review (open, with `failurePolicy: Ignore`).
/// docs/operations.md has the whole sequence. A second signal exits at once.
async fn drain_on_signal(readiness: Arc<Readiness>, delay: Duration) {
    wait_for_signal().await;
    readiness.draining.store(true, Ordering::Release);
    tracing::info!(
        delay_seconds = delay.as_secs(),
        "signal received: not ready, answers close their connections; accepting until the delay ends"
    );
    // Listening again at once, so a second Ctrl-C during the delay or the
    // drain (up to minutes: see `--drain-seconds`) still exits.
    tokio::spawn(async {
        wait_for_signal().await;
        tracing::warn!("second signal: exiting now");
        std::process::exit(1);
    });
    tokio::time::sleep(delay).await;
}

/// The fleet reconciler, on the replica holding the fleet Lease (every
/// replica serves admission either way).
fn start_fleet(
    args: &KubeArgs,
    config: &Config,
    client: kube::Client,
    cluster: Arc<dyn ClusterView>,
    metrics: Arc<Metrics>,
) {
    if !config.fleet.enabled {
        tracing::info!("fleet.enabled is false: no coverage gauge, catch-up or rollback");
        return;
    }
    let namespace = args.lease_namespace.clone().unwrap_or_else(own_namespace);
    let settings = LeaseSettings::new(&namespace, &args.lease_name);
    tracing::info!(
        lease = %format!("{namespace}/{}", args.lease_name),
        identity = %settings.identity,
        catch_up = config.fleet.catch_up.enabled,
        rollback = config.fleet.rollback.enabled,
        "fleet reconciler: runs while this replica holds the Lease"
    );
    let leader = lease::spawn(client.clone(), settings);
    let base = Arc::new(Base::new(config.clone()));
    let reconciler = Reconciler::new(client, base, cluster, metrics);
    tokio::spawn(reconciler.run(leader));
}

/// The namespace this pod runs in (its service account's), else `default`.
fn own_namespace() -> String {
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|ns| ns.trim().to_owned())
        .ok()
        .filter(|ns| !ns.is_empty())
        .unwrap_or_else(|| "default".to_owned())
}

type Cluster = (
    Arc<dyn ClusterView>,
    Option<Arc<EventSink>>,
    Option<kube::Client>,
);

/// The cluster view, Event sink and client, or the static config alone when
/// there is no cluster (`--kubernetes auto` without a kubeconfig, or `off`).
async fn connect_cluster(
    args: &KubeArgs,
    config: &Config,
    readiness: Arc<Readiness>,
    metrics: Arc<Metrics>,
) -> anyhow::Result<Cluster> {
    let static_only = |readiness: &Readiness| {
        readiness.watches_synced.store(true, Ordering::Release);
        let view: Arc<dyn ClusterView> = Arc::new(StaticView);
        (view, None, None)
    };
    if args.kubernetes == KubernetesMode::Off {
        return Ok(static_only(&readiness));
    }
    let client = match kube::Client::try_default().await {
        Ok(client) => client,
        Err(e) if args.kubernetes == KubernetesMode::Auto => {
            tracing::info!(error = %e, "no Kubernetes configuration found: serving with the static config only (no Instrumentation resources, no Events)");
            return Ok(static_only(&readiness));
        }
        Err(e) => {
            return Err(anyhow::Error::from(e)
                .context("--kubernetes on: cannot configure a Kubernetes client"));
        }
    };
    let view = KubeView::start(client.clone()).await;
    let image_volumes = start_image_volume_check(args, config, &client, &readiness, &metrics);
    let synced = view.clone();
    tokio::spawn(async move {
        synced.wait_synced().await;
        readiness.watches_synced.store(true, Ordering::Release);
        tracing::info!(
            instrumentations = synced.instrumentation_count(),
            "Kubernetes watches synced"
        );
        loop {
            metrics
                .instrumentations
                .set(synced.instrumentation_count() as i64);
            metrics
                .instrumentations_invalid
                .set(synced.invalid_instrumentation_count() as i64);
            tokio::time::sleep(Duration::from_secs(5)).await;
        }
    });
    let events = Arc::new(EventSink::new(
        client.clone(),
        Duration::from_secs(args.event_interval_seconds),
    ));
    let view = probe::Checked {
        inner: view,
        state: image_volumes,
    };
    Ok((Arc::new(view), Some(events), Some(client)))
}

/// Starts the periodic check that the API server keeps image volumes; until
/// its first answer, imageVolume pods get the init container.
fn start_image_volume_check(
    args: &KubeArgs,
    config: &Config,
    client: &kube::Client,
    readiness: &Readiness,
    metrics: &Arc<Metrics>,
) -> Arc<ImageVolumeState> {
    let state = readiness.image_volumes.clone();
    state.set(ImageVolumeSupport::Pending);
    let namespace = args
        .own_namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_owned());
    tracing::debug!(namespace = %namespace, "checking image volume support with dry-run pods");
    tokio::spawn(probe::run(
        kube::Api::namespaced(client.clone(), &namespace),
        Arc::new(Settings::from_config(config)),
        state.clone(),
        metrics.clone(),
        Duration::from_secs(args.image_volume_check_seconds.max(1)),
    ));
    state
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Re-reads the cert and key when their bytes change. Polling the contents
/// also sees a Secret volume's `..data` symlink swap, which no write to the
/// file itself announces. A bad pair keeps the last good one.
pub async fn watch_certs(store: Arc<CertStore>, metrics: Arc<Metrics>, every: Duration) {
    let read = |store: &CertStore| {
        let (cert, key) = store.paths();
        (std::fs::read(cert).ok(), std::fs::read(key).ok())
    };
    let mut last = read(&store);
    let mut interval = tokio::time::interval(every);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        interval.tick().await;
        let now = read(&store);
        if now == last {
            continue;
        }
        match store.reload() {
            Ok(()) => {
                metrics.cert_reload(true);
                metrics.cert_expiry.set(not_after_seconds(&store));
                tracing::info!(cert = %store.paths().0.display(), "serving certificate reloaded");
                last = now;
            }
            Err(e) => {
                // Retried at the next tick only if the files change again.
                metrics.cert_reload(false);
                tracing::error!(error = %e, "certificate reload failed; keeping the last good certificate");
                last = now;
            }
        }
    }
}

/// notAfter of the leaf certificate, Unix seconds (0 when unreadable).
pub fn not_after_seconds(store: &CertStore) -> f64 {
    let current = store.current();
    current
        .cert
        .first()
        .and_then(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, cert)| cert.validity().not_after.timestamp() as f64)
        .unwrap_or(0.0)
}

fn read_input(input: &InputArgs) -> anyhow::Result<String> {
    if input.file == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin(), &mut text)
            .context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(&input.file).with_context(|| format!("reading {}", input.file))
    }
}

pub fn mutate(args: &MutateArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.config.as_deref())?;
    let text = read_input(&args.input)?;
    print!(
        "{}",
        crate::offline::mutate(&text, &config, &args.input.namespace, args.output)?
    );
    Ok(())
}

pub fn explain(args: &ExplainArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.config.as_deref())?;
    let text = read_input(&args.input)?;
    print!(
        "{}",
        crate::offline::explain(&text, &config, &args.input.namespace)?
    );
    Ok(())
}

/// Prints the checklist; `Ok(false)` when something is wrong.
pub async fn verify(args: &VerifyArgs) -> anyhow::Result<bool> {
    let config = load_config(args.config.config.as_deref())?;
    let target = match (&args.pod, &args.deployment) {
        (Some(pod), _) => crate::verify::Target::Pod(pod.clone()),
        (None, Some(deployment)) => crate::verify::Target::Deployment(deployment.clone()),
        (None, None) => anyhow::bail!("give --pod or --deployment"),
    };
    let (report, ok) = crate::verify::verify(&args.namespace, &target, &config).await?;
    print!("{report}");
    Ok(ok)
}

/// `otel-injector status`: the coverage of the live cluster, per workload.
pub async fn status(args: &StatusArgs) -> anyhow::Result<()> {
    let config = load_config(args.config.config.as_deref())?;
    let client = kube::Client::try_default()
        .await
        .context("status reads the live cluster: no kubeconfig or in-cluster service account")?;
    let view = KubeView::start(client.clone()).await;
    view.wait_synced().await;
    let api: kube::Api<k8s_openapi::api::core::v1::Pod> = match &args.namespace {
        Some(ns) => kube::Api::namespaced(client, ns),
        None => kube::Api::all(client),
    };
    let pods = api
        .list(&kube::api::ListParams::default())
        .await
        .context("listing pods")?;
    let base = Base::new(config);
    let ctx = crate::admission::Context {
        base: &base,
        cluster: &view,
    };
    let survey = crate::fleet::status::survey(
        pods.items.iter(),
        ctx,
        &base.config().fleet.rollback,
        k8s_openapi::jiff::Timestamp::now(),
    );
    print!(
        "{}",
        crate::fleet::status::render(&survey, args.namespace.as_deref())
    );
    Ok(())
}
