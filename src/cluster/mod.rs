//! Replicas that act as one: the operator overrides live in a NATS JetStream key-value
//! bucket that every replica watches. The store is the authority; a replica's state
//! file is its local copy, served from while the store is out of reach.
//!
//! The overrides are one JSON document under one key, written with compare-and-set on
//! its revision (`update` with the revision read), so two replicas draining at once
//! cannot lose either change, and every replica applies the same sequence of states.
//! The bucket is created with direct get off: a read right after a write, on a
//! replicated stream, then comes from the stream leader and is never the older value.
//!
//! A bucket is created as a plain stream (`KV_<bucket>`) because async-nats 0.51's
//! `create_key_value` first reads account information that nats-server 2.9 (Debian's)
//! answers in a shape the client rejects; `get_key_value` opens it like any bucket.
//! The bucket has no `max_age`: an expiry would silently drop every override.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use async_nats::jetstream::{self, kv, stream};
use futures_util::StreamExt;
use tokio::sync::Notify;
use tracing::{error, info, warn};

use crate::metrics::ClusterMetrics;
use crate::overrides::{OverrideError, Overrides};
use crate::plan::ClusterSettings;

mod quorum;
mod verdicts;
pub use quorum::{Own, TargetVotes, Votes, up_down};

/// The key of the overrides document.
const OVERRIDES: &str = "overrides";

/// A replica's handle on the shared store.
pub struct Cluster {
    settings: ClusterSettings,
    client: async_nats::Client,
    /// The open bucket; `None` until it has been opened (or created).
    bucket: ArcSwapOption<kv::Store>,
    /// The bucket of the replicas' verdicts, likewise.
    verdicts: ArcSwapOption<kv::Store>,
    exchange: Mutex<verdicts::Exchange>,
    /// This replica's verdicts changed: send them now, not at the next heartbeat.
    own_changed: Notify,
    metrics: ClusterMetrics,
}

/// A stored overrides document and its store revision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Versioned {
    pub overrides: Overrides,
    pub revision: u64,
}

/// What a write did.
#[derive(Debug)]
pub enum Written {
    /// Stored as this revision.
    Stored(Versioned),
    /// The change was already in force at this revision; nothing written.
    Unchanged(Versioned),
}

impl Cluster {
    /// Starts connecting (in the background: a store that is down at start must not
    /// stop the server from serving its local copy). Needs a tokio runtime.
    pub async fn connect(
        settings: ClusterSettings,
        metrics: ClusterMetrics,
    ) -> Result<Arc<Cluster>, String> {
        let mut opts = async_nats::ConnectOptions::new()
            .name(format!("gslb {}", settings.name))
            .retry_on_initial_connect()
            .connection_timeout(settings.timeout)
            .request_timeout(Some(settings.timeout))
            // Reconnect at once, then every 250 ms at most: a store back from a restart
            // is used again within a fraction of a second.
            .reconnect_delay_callback(|attempts| Duration::from_millis(50 * attempts.min(5) as u64))
            .max_reconnects(None);
        if let Some(path) = &settings.credentials_file {
            opts = opts
                .credentials_file(path)
                .await
                .map_err(|e| format!("cannot read credentials_file {}: {e}", path.display()))?;
        }
        if let Some(ca) = &settings.tls_ca_file {
            opts = opts.add_root_certificates(ca.clone()).require_tls(true);
        }
        if let Some((cert, key)) = &settings.tls_client {
            opts = opts
                .add_client_certificate(cert.clone(), key.clone())
                .require_tls(true);
        }
        let client = opts
            .connect(settings.servers.clone())
            .await
            .map_err(|e| format!("cannot connect to the cluster store: {e}"))?;
        Ok(Arc::new(Cluster {
            settings,
            client,
            bucket: ArcSwapOption::empty(),
            verdicts: ArcSwapOption::empty(),
            exchange: Mutex::default(),
            own_changed: Notify::new(),
            metrics,
        }))
    }

    /// `connect`, and the metric of reachability refreshed every second.
    pub async fn start(
        settings: ClusterSettings,
        metrics: ClusterMetrics,
    ) -> Result<Arc<Cluster>, String> {
        let (name, servers) = (settings.name.clone(), settings.servers.join(", "));
        let c = Cluster::connect(settings, metrics).await?;
        info!(replica = %name, %servers, "cluster: sharing overrides through the store");
        tokio::spawn(c.clone().report(Duration::from_secs(1)));
        Ok(c)
    }

    pub fn name(&self) -> &str {
        &self.settings.name
    }

    /// Whether the store is reachable now, as far as this replica knows.
    pub fn reachable(&self) -> bool {
        self.bucket.load().is_some()
            && self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// The overrides bucket, opened (and created if missing) on first success.
    async fn bucket(&self) -> Result<Arc<kv::Store>, String> {
        // A few past revisions, for `nats kv history` after an incident; no max_age.
        self.open(
            &self.bucket,
            self.settings.bucket.clone(),
            16,
            Duration::ZERO,
        )
        .await
    }

    /// The verdicts bucket (`<bucket>_verdicts`). Its keys expire after an hour, which
    /// only tidies away replicas that are gone: liveness is judged from report times.
    async fn verdict_bucket(&self) -> Result<Arc<kv::Store>, String> {
        let name = format!("{}_verdicts", self.settings.bucket);
        self.open(&self.verdicts, name, 1, Duration::from_secs(3600))
            .await
    }

    /// Opens bucket `name` into `slot`, creating its stream if missing.
    async fn open(
        &self,
        slot: &ArcSwapOption<kv::Store>,
        name: String,
        history: i64,
        max_age: Duration,
    ) -> Result<Arc<kv::Store>, String> {
        if let Some(b) = slot.load_full() {
            return Ok(b);
        }
        let js = jetstream::new(self.client.clone());
        let store = match js.get_key_value(name.clone()).await {
            Ok(s) => s,
            Err(first) => {
                let config = stream::Config {
                    name: format!("KV_{name}"),
                    subjects: vec![format!("$KV.{name}.>")],
                    max_messages_per_subject: history,
                    max_age,
                    storage: stream::StorageType::File,
                    num_replicas: self.settings.replicas,
                    allow_rollup: true,
                    deny_delete: true,
                    allow_direct: false,
                    discard: stream::DiscardPolicy::New,
                    ..Default::default()
                };
                match js.create_stream(config).await {
                    Ok(_) => info!(bucket = %name, "created a cluster bucket"),
                    // Another replica may have created it meanwhile: open it below.
                    Err(e) => {
                        warn!(bucket = %name, "cannot create a cluster bucket ({e}) after opening it failed ({first})")
                    }
                }
                js.get_key_value(name.clone())
                    .await
                    .map_err(|e| format!("cannot open bucket {name}: {e}"))?
            }
        };
        let store = Arc::new(store);
        slot.store(Some(store.clone()));
        Ok(store)
    }

    /// The overrides in the store now (read from the stream leader), if any.
    async fn read(&self, bucket: &kv::Store) -> Result<Option<Versioned>, String> {
        let entry = bucket
            .entry(OVERRIDES)
            .await
            .map_err(|e| format!("cannot read the shared overrides: {e}"))?;
        match entry {
            None => Ok(None),
            Some(e) => decode(&e).map(Some),
        }
    }

    /// Applies `change` to the stored overrides and writes the result with
    /// compare-and-set, retrying when another replica wrote in between. Returns only
    /// once the store accepted the write (or refused it: then nothing changed).
    /// `change` returns whether it changed anything, or why the change is refused.
    ///
    /// When the store holds no overrides at all (a new bucket, or a store that lost its
    /// data), the change applies to `local`, the overrides this replica serves: a
    /// store that forgot them must not silently undo the drains in force.
    pub async fn write(
        &self,
        local: &Overrides,
        mut change: impl FnMut(&mut Overrides) -> Result<bool, OverrideError>,
    ) -> Result<Written, OverrideError> {
        let unreachable = |why: String| OverrideError::Store { why };
        let attempt = async {
            let bucket = self.bucket().await.map_err(unreachable)?;
            for _ in 0..8 {
                let current = self.read(&bucket).await.map_err(unreachable)?;
                let (mut next, revision) = match current {
                    Some(v) => (v.overrides, v.revision),
                    None => (local.clone(), 0),
                };
                if !change(&mut next)? {
                    return Ok(Written::Unchanged(Versioned {
                        overrides: next,
                        revision,
                    }));
                }
                let body = serde_json::to_vec(&next).expect("overrides serialize");
                match bucket.update(OVERRIDES, body.into(), revision).await {
                    Ok(revision) => {
                        return Ok(Written::Stored(Versioned {
                            overrides: next,
                            revision,
                        }));
                    }
                    Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => continue,
                    Err(e) => {
                        // Open the bucket afresh next time (its stream may be gone).
                        self.bucket.store(None);
                        return Err(unreachable(format!(
                            "the store did not accept the write: {e}"
                        )));
                    }
                }
            }
            Err(unreachable(
                "the shared overrides kept changing under the write; try again".into(),
            ))
        };
        let out = match tokio::time::timeout(self.settings.timeout, attempt).await {
            Ok(r) => r,
            Err(_) => Err(OverrideError::Store {
                why: format!(
                    "the cluster store did not answer within {:?}",
                    self.settings.timeout
                ),
            }),
        };
        match &out {
            Ok(Written::Stored(_)) => self.metrics.write(true),
            Err(OverrideError::Store { .. }) => self.metrics.write(false),
            _ => {}
        }
        out
    }

    /// Watches the shared overrides for as long as `apply` wants them (it returns
    /// `false` when its receiver is gone), reconnecting whenever the watch ends. When
    /// the store holds none, `local()` (the overrides served) is written, so a single
    /// node's drains survive the move to a cluster, and a store's loss of data.
    pub async fn watch<F>(
        self: Arc<Self>,
        local: impl Fn() -> Overrides + Send,
        apply: impl Fn(Versioned) -> F + Send,
    ) where
        F: std::future::Future<Output = bool> + Send,
    {
        let mut said_down = false;
        loop {
            let opened = async {
                let bucket = self.bucket().await?;
                // At every (re)open: a store that holds no overrides (new, or it lost
                // its data) gets this replica's copy; `create` leaves one that exists.
                let seed = local();
                if self.read(&bucket).await?.is_none() && seed != Overrides::default() {
                    let body = serde_json::to_vec(&seed).expect("overrides serialize");
                    match bucket.create(OVERRIDES, body.into()).await {
                        Ok(_) => {
                            info!("the store had no overrides: wrote this replica's copy")
                        }
                        Err(e) => warn!("cannot seed the store with the local overrides: {e}"),
                    }
                }
                // The current value first, then every change: `watch` alone starts at
                // the stream's end and would miss a change made while this replica was
                // away from the store (or between its read and the watch).
                let watch = bucket
                    .watch_with_history(OVERRIDES)
                    .await
                    .map_err(|e| format!("cannot watch the shared overrides: {e}"))?;
                Ok::<_, String>((bucket, watch))
            };
            match opened.await {
                Ok((bucket, mut watch)) => {
                    self.metrics.store_up.set(1);
                    if said_down {
                        info!("cluster store reachable again; watching the shared overrides");
                        said_down = false;
                    }
                    // A watch whose consumer lived on a store member that died is
                    // noticed by the client only after 10 s without heartbeats; a read
                    // every heartbeat notices a missed change at once.
                    let mut backstop = tokio::time::interval(self.settings.heartbeat);
                    backstop.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                    backstop.tick().await;
                    let mut seen = 0u64;
                    loop {
                        let entry = tokio::select! {
                            entry = watch.next() => entry,
                            _ = backstop.tick() => {
                                match self.read(&bucket).await {
                                    // The read may just have overtaken the watch: give
                                    // the watch a moment before calling it deaf.
                                    Ok(Some(v)) if v.revision > seen => {
                                        match tokio::time::timeout(Duration::from_millis(200), watch.next()).await {
                                            Ok(entry) => entry,
                                            Err(_) => {
                                                warn!(revision = v.revision, "the watch of the shared overrides missed a change: applying it and watching afresh");
                                                if !apply(v).await {
                                                    return;
                                                }
                                                break;
                                            }
                                        }
                                    }
                                    _ => continue,
                                }
                            }
                        };
                        let entry = match entry {
                            Some(Ok(e)) => e,
                            Some(Err(e)) => {
                                warn!("the watch of the shared overrides failed: {e}");
                                break;
                            }
                            None => break,
                        };
                        seen = seen.max(entry.revision);
                        match decode(&entry) {
                            Ok(v) => {
                                if !apply(v).await {
                                    return;
                                }
                            }
                            Err(e) => error!(
                                revision = entry.revision,
                                "ignoring shared overrides this version cannot read: {e}"
                            ),
                        }
                    }
                }
                Err(e) => {
                    if !said_down {
                        warn!("cluster store unreachable, serving the last shared overrides: {e}");
                        said_down = true;
                    }
                }
            }
            self.metrics.store_up.set(0);
            // A failed open leaves no bucket handle: the next try opens it afresh.
            self.bucket.store(None);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// Refreshes `gslb_cluster_store_up` from the connection state, every `every`.
    pub async fn report(self: Arc<Self>, every: Duration) {
        loop {
            self.metrics.store_up.set(i64::from(self.reachable()));
            tokio::time::sleep(every).await;
        }
    }
}

/// The overrides an entry holds (a delete or purge holds none).
fn decode(entry: &kv::Entry) -> Result<Versioned, String> {
    let overrides = match entry.operation {
        kv::Operation::Put => serde_json::from_slice(&entry.value).map_err(|e| e.to_string())?,
        kv::Operation::Delete | kv::Operation::Purge => Overrides::default(),
    };
    Ok(Versioned {
        overrides,
        revision: entry.revision,
    })
}
