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
//! ```no_run
//! # async fn doc(client: kube::Client) {
//! use otel_injector::k8s::lease::{self, LeaseSettings};
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
        let mut last_renewed: Option<std::time::Instant> = None;
        loop {
            let held = match round(&api, &settings).await {
                Ok(held) => {
                    if held {
                        last_renewed = Some(std::time::Instant::now());
                    }
                    held
                }
                Err(e) => {
                    // A holder keeps acting only while its last renewal is
                    // younger than the lease: nobody else can have it yet.
                    let still = last_renewed.is_some_and(|t| t.elapsed() < settings.duration);
                    tracing::warn!(lease = %settings.name, namespace = %settings.namespace, error = %e, still_held = still, "cannot read or renew the Lease");
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
