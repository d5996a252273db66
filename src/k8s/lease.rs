//! One replica at a time: a `coordination.k8s.io/v1` Lease, as kube-scheduler,
//! kube-controller-manager and kubert hold one. Every replica serves
//! admission; only the holder of the Lease writes to the cluster on its own
//! (the fleet reconciler, the self-managed certificate).
//!
//! The holder renews every `renew_every`; another replica takes the Lease over
//! only after `duration` has passed without a renewal. Writes are optimistic
//! (`resourceVersion`), so two replicas never both win one round. A holder
//! that cannot renew within `duration` steps down on its own, so two holders
//! never act at once for longer than one clock skew.
//!
//! (Not a doctest: the module is crate-private.)
//!
//! ```ignore
//! # async fn doc(client: kube::Client) {
//! use crate::k8s::lease::{self, LeaseSettings};
//! let mut leader = lease::spawn(client, LeaseSettings::new("otel-injector", "otel-injector-leader"));
//! leader.wait_for(|held| *held).await.ok();
//! // ... act, checking `*leader.borrow()` before each write ...
//! # }
//! ```

use std::time::Duration;

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use kube::{Client, Error};
use tokio::sync::watch;

/// Where the Lease lives and how it is held.
#[derive(Clone, Debug)]
pub struct LeaseSettings {
    pub namespace: String,
    pub name: String,
    /// This replica's name in `spec.holderIdentity` (the pod's name).
    pub identity: String,
    /// How long a holder that stopped renewing keeps the Lease.
    pub duration: Duration,
    /// How often the holder renews, and the others look.
    pub renew_every: Duration,
}

impl LeaseSettings {
    /// 15 s leases renewed every 5 s (kube-controller-manager's figures);
    /// the identity is `$POD_NAME`, else the host name and process id.
    pub fn new(namespace: &str, name: &str) -> LeaseSettings {
        let identity = std::env::var("POD_NAME").unwrap_or_else(|_| {
            let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
                .map(|h| h.trim().to_owned())
                .unwrap_or_else(|_| "unknown-host".to_owned());
            format!("{host}-{}", std::process::id())
        });
        LeaseSettings {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            identity,
            duration: Duration::from_secs(15),
            renew_every: Duration::from_secs(5),
        }
    }
}

/// Starts holding (or waiting for) the Lease in the background. The receiver
/// says, at every moment, whether this replica holds it.
pub fn spawn(client: Client, settings: LeaseSettings) -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        let api: Api<Lease> = Api::namespaced(client, &settings.namespace);
        let mut last_renewed: Option<tokio::time::Instant> = None;
        loop {
            // A round that hangs (an API server that accepts and never
            // answers) must not keep us "holding" past the lease: it is cut
            // off after one renewal period and counts as a failed renewal.
            let attempt = tokio::time::timeout(settings.renew_every, round(&api, &settings)).await;
            let held = match attempt {
                Ok(Ok(held)) => {
                    if held {
                        last_renewed = Some(tokio::time::Instant::now());
                    }
                    held
                }
                failed => {
                    // A holder keeps acting only while its last renewal is
                    // younger than the lease, less the one round it may wait
                    // before looking again: nobody else can have it yet.
                    let still = last_renewed
                        .is_some_and(|t| t.elapsed() + settings.renew_every < settings.duration);
                    let error = match failed {
                        Ok(Err(e)) => e.to_string(),
                        _ => format!("no answer within {:?}", settings.renew_every),
                    };
                    tracing::warn!(lease = %settings.name, namespace = %settings.namespace, %error, still_held = still, "cannot read or renew the Lease");
                    still
                }
            };
            tx.send_if_modified(|was| {
                if *was != held {
                    tracing::info!(lease = %settings.name, identity = %settings.identity, held, "leadership changed");
                    *was = held;
                    true
                } else {
                    false
                }
            });
            if tx.is_closed() {
                return;
            }
            tokio::time::sleep(settings.renew_every).await;
        }
    });
    rx
}

/// One look at the Lease: create, renew or take it over when that is ours to
/// do. `Ok(true)` when we hold it afterwards.
async fn round(api: &Api<Lease>, s: &LeaseSettings) -> Result<bool, Error> {
    let now = MicroTime(jiff::Timestamp::now());
    let Some(mut lease) = api.get_opt(&s.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(s.name.clone()),
                namespace: Some(s.namespace.clone()),
                ..ObjectMeta::default()
            },
            spec: Some(spec(s, now.clone(), now, 0)),
        };
        return won(api.create(&PostParams::default(), &lease).await);
    };
    let current = lease.spec.clone().unwrap_or_default();
    let ours = current.holder_identity.as_deref() == Some(s.identity.as_str());
    if !ours && !expired(&current, &now) {
        return Ok(false);
    }
    lease.spec = Some(if ours {
        LeaseSpec {
            renew_time: Some(now),
            lease_duration_seconds: Some(secs(s.duration)),
            ..current
        }
    } else {
        let transitions = current.lease_transitions.unwrap_or(0).saturating_add(1);
        spec(s, now.clone(), now, transitions)
    });
    // `replace` carries the resourceVersion we read: a concurrent writer
    // makes it fail with 409, and the round is lost, not shared.
    won(api.replace(&s.name, &PostParams::default(), &lease).await)
}

fn won(result: Result<Lease, Error>) -> Result<bool, Error> {
    match result {
        Ok(_) => Ok(true),
        Err(Error::Api(status)) if status.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

fn spec(s: &LeaseSettings, acquired: MicroTime, renewed: MicroTime, transitions: i32) -> LeaseSpec {
    LeaseSpec {
        holder_identity: Some(s.identity.clone()),
        lease_duration_seconds: Some(secs(s.duration)),
        acquire_time: Some(acquired),
        renew_time: Some(renewed),
        lease_transitions: Some(transitions),
        ..LeaseSpec::default()
    }
}

fn secs(d: Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX).max(1)
}

/// A Lease with no holder, no renewal, or a renewal older than its duration.
fn expired(spec: &LeaseSpec, now: &MicroTime) -> bool {
    let (Some(_), Some(renewed)) = (&spec.holder_identity, &spec.renew_time) else {
        return true;
    };
    let duration =
        jiff::SignedDuration::from_secs(i64::from(spec.lease_duration_seconds.unwrap_or(15)));
    renewed
        .0
        .checked_add(duration)
        .is_ok_and(|until| until < now.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use axum::http::{Request, Response, StatusCode};

    /// A fake API server: the Lease is absent, its create succeeds, and
    /// every request after `hang` turns true is accepted and never answered.
    fn fake_api(hang: Arc<AtomicBool>) -> Client {
        let service = tower::service_fn(move |request: Request<kube::client::Body>| {
            let hang = hang.clone();
            async move {
                if hang.load(Ordering::SeqCst) {
                    std::future::pending::<()>().await;
                }
                let (status, body) = if request.method() == "POST" {
                    (
                        201,
                        r#"{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"l","namespace":"ns","resourceVersion":"1"},"spec":{}}"#,
                    )
                } else {
                    (
                        404,
                        r#"{"apiVersion":"v1","kind":"Status","status":"Failure","code":404,"reason":"NotFound","message":"not found"}"#,
                    )
                };
                let mut response =
                    Response::new(kube::client::Body::from(body.as_bytes().to_vec()));
                *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                Ok::<_, Infallible>(response)
            }
        });
        Client::new(service, "ns")
    }

    // Paused clock: tokio moves time on whenever every task waits, so "steps
    // down before anyone else may take over" is decided exactly, not timed.
    #[tokio::test(start_paused = true)]
    async fn a_holder_whose_renewal_hangs_steps_down_before_the_lease_expires() {
        let hang = Arc::new(AtomicBool::new(false));
        let mut settings = LeaseSettings::new("ns", "l");
        settings.identity = "me".into();
        let mut held = spawn(fake_api(hang.clone()), settings.clone());
        held.wait_for(|h| *h).await.expect("takes the absent Lease");
        hang.store(true, Ordering::SeqCst);
        // From the last renewal, another replica may take the Lease over
        // after `duration`: this one must have stepped down by then.
        let stepped = tokio::time::timeout(settings.duration, held.wait_for(|h| !*h)).await;
        assert!(
            matches!(stepped, Ok(Ok(_))),
            "still holding a {:?} Lease it could not renew for that long",
            settings.duration
        );
    }

    fn at(secs: i64) -> MicroTime {
        MicroTime(jiff::Timestamp::from_second(secs).expect("timestamp"))
    }

    #[test]
    fn a_lease_is_free_when_unheld_unrenewed_or_stale() {
        let held = LeaseSpec {
            holder_identity: Some("a".into()),
            renew_time: Some(at(1_000)),
            lease_duration_seconds: Some(15),
            ..LeaseSpec::default()
        };
        assert!(!expired(&held, &at(1_010)), "renewed 10 s ago, 15 s lease");
        assert!(expired(&held, &at(1_016)), "renewed 16 s ago, 15 s lease");
        assert!(expired(
            &LeaseSpec {
                holder_identity: None,
                ..held.clone()
            },
            &at(1_001)
        ));
        assert!(expired(
            &LeaseSpec {
                renew_time: None,
                ..held
            },
            &at(1_001)
        ));
    }
}
