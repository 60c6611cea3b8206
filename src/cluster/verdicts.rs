//! Verdicts from every vantage point. Each replica writes its per-target verdicts (past
//! its own rise/fall hysteresis) under its own name in the bucket `<bucket>_verdicts`,
//! at every heartbeat and at once when one changes, and watches everyone's.
//!
//! Liveness comes from when a report arrived, not from key expiry (NATS sends no event
//! when a key expires): a report counts while it is younger than three heartbeats. A
//! report read at watch start dates from the store's timestamp of it, so a replica that
//! died long ago does not count for three more heartbeats after a restart.
//!
//! A replica that cannot reach the store, or whose own reports do not come back through
//! the watch within the same three heartbeats, is alone: it judges from its own probes,
//! exactly as a single node does.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_nats::jetstream::kv;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;
use tracing::{info, warn};

use super::Cluster;
use super::quorum::{self, Fence, Own, Votes};
use crate::plan::{Plan, TargetId};

/// Heartbeats after which a report no longer counts.
const LAPSE_BEATS: u32 = 3;

/// What one replica writes under its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Report {
    /// Its view disagrees with everyone else's: the others do not count it.
    fenced: bool,
    /// Verdicts on the targets it has probed, by `Plan::target_key`.
    targets: BTreeMap<String, Verdict>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Verdict {
    up: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reason: Option<String>,
}

/// A report and when it arrived.
struct Heard {
    report: Report,
    at: Instant,
}

/// What this replica knows of everyone's verdicts.
#[derive(Default)]
pub(super) struct Exchange {
    /// This replica's own verdicts as last combined, per target of the plan they were
    /// combined for, and that plan's target keys (`Report` pairs them when sent).
    own_list: Vec<Own>,
    keys: Arc<[String]>,
    /// The plan `keys` were made for (weak: an old plan is not kept alive, and its
    /// allocation cannot be reused by a new plan while this points at it).
    keys_of: std::sync::Weak<Plan>,
    others: HashMap<String, Heard>,
    /// When this replica's own report last came back through the watch.
    echo: Option<Instant>,
    /// When the store last took this replica's report.
    sent: Option<Instant>,
    fence: Fence,
    /// What the last combination counted, to notice when liveness changes it.
    counted: Vec<String>,
    alone: bool,
}

impl Exchange {
    /// This replica's verdicts on the targets it has probed, by target key.
    fn own_report(&self) -> BTreeMap<String, Verdict> {
        self.keys
            .iter()
            .zip(&self.own_list)
            .filter(|(_, o)| o.probed)
            .map(|(k, o)| {
                let v = Verdict {
                    up: o.up,
                    reason: if o.up { None } else { o.reason.clone() },
                };
                (k.clone(), v)
            })
            .collect()
    }

    fn lapse(heartbeat: Duration) -> Duration {
        heartbeat * LAPSE_BEATS
    }

    /// No own report came back within the lapse (as of `now`).
    fn alone(&self, now: Instant, heartbeat: Duration) -> bool {
        self.echo
            .is_none_or(|at| now.saturating_duration_since(at) > Exchange::lapse(heartbeat))
    }

    /// The other replicas that count now, by name, with their verdicts on each of
    /// `keys`.
    fn live(&self, now: Instant, heartbeat: Duration) -> Vec<(String, Vec<Option<bool>>)> {
        let mut out: Vec<(String, Vec<Option<bool>>)> = self
            .others
            .iter()
            .filter(|(_, h)| {
                !h.report.fenced
                    && now.saturating_duration_since(h.at) <= Exchange::lapse(heartbeat)
            })
            .map(|(name, h)| {
                let v = self
                    .keys
                    .iter()
                    .map(|k| h.report.targets.get(k).map(|v| v.up))
                    .collect();
                (name.clone(), v)
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

impl Cluster {
    fn exchange(&self) -> MutexGuard<'_, Exchange> {
        self.exchange.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Combines this replica's `own` verdicts on `plan`'s targets with the live
    /// replicas' by the quorum rule. Remembers them for the next heartbeat, and sends
    /// them at once when they changed.
    pub fn combine(&self, plan: &Arc<Plan>, own: Vec<Own>) -> Votes {
        let heartbeat = self.settings.heartbeat;
        let mut ex = self.exchange();
        let rekeyed = !std::ptr::eq(ex.keys_of.as_ptr(), Arc::as_ptr(plan));
        if rekeyed {
            ex.keys = TargetId::all(plan.targets.len())
                .map(|t| plan.target_key(t))
                .collect();
            ex.keys_of = Arc::downgrade(plan);
        }
        if rekeyed || own != ex.own_list {
            self.own_changed.notify_one();
        }
        let now = Instant::now();
        let alone = ex.alone(now, heartbeat);
        let live = if alone {
            Vec::new()
        } else {
            ex.live(now, heartbeat)
        };
        let fenced = ex.fence.fenced();
        let targets = quorum::judge(self.settings.quorum, &own, fenced, &live);
        ex.own_list = own;
        ex.counted = live.iter().map(|(n, _)| n.clone()).collect();
        ex.alone = alone;
        let m = &self.metrics;
        m.live_replicas.set(live.len() as i64);
        m.verdict_disagreements
            .set(targets.iter().filter(|t| t.overruled()).count() as i64);
        m.fenced.set(i64::from(fenced));
        m.alone.set(i64::from(alone));
        Votes {
            replica: self.settings.name.clone(),
            quorum: self.settings.quorum,
            alone,
            fenced,
            live: ex.counted.clone(),
            targets,
        }
    }

    /// One heartbeat's judgement: whether this replica is alone, whether its view
    /// disagrees with everyone else's (the fence), and whether the replicas that count
    /// changed since the last combination. True when the answers must be rebuilt.
    fn evaluate(&self) -> bool {
        let heartbeat = self.settings.heartbeat;
        let mut ex = self.exchange();
        let now = Instant::now();
        let alone = ex.alone(now, heartbeat);
        let mut rebuild = alone != ex.alone;
        if alone != ex.alone {
            if alone {
                warn!(
                    "cluster: alone (the store is unreachable or this replica's verdicts do not come back): judging health from its own probes only"
                );
            } else {
                info!("cluster: the store carries verdicts again; combining the replicas' views");
            }
        }
        if alone {
            if ex.fence.reset() {
                rebuild = true;
            }
            return rebuild;
        }
        let live = ex.live(now, heartbeat);
        let disagrees = quorum::disagrees_mostly(&ex.own_list, &live);
        match ex.fence.observe(disagrees) {
            Some(true) => {
                warn!(
                    "cluster: this replica's probes see most targets down that the other replicas see up; fencing itself: its verdicts do not count until its view agrees again (check this host's network)"
                );
                self.own_changed.notify_one();
                rebuild = true;
            }
            Some(false) => {
                info!(
                    "cluster: this replica's view agrees with the others again; its verdicts count"
                );
                self.own_changed.notify_one();
                rebuild = true;
            }
            None => {}
        }
        let names: Vec<&String> = live.iter().map(|(n, _)| n).collect();
        rebuild || names != ex.counted.iter().collect::<Vec<_>>()
    }

    /// An entry of the verdicts bucket. True when the answers must be rebuilt.
    fn heard(&self, entry: kv::Entry) -> bool {
        let mut ex = self.exchange();
        let report = match entry.operation {
            kv::Operation::Put => match serde_json::from_slice::<Report>(&entry.value) {
                Ok(r) => Some(r),
                Err(e) => {
                    warn!(replica = %entry.key, "ignoring verdicts this version cannot read: {e}");
                    None
                }
            },
            kv::Operation::Delete | kv::Operation::Purge => None,
        };
        // How old the report is by the store's clock, for reports read at watch start.
        let created = entry.created.unix_timestamp_nanos();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let age = Duration::from_nanos((now - created).clamp(0, u64::MAX as i128) as u64);
        let Some(at) = Instant::now().checked_sub(age) else {
            return false;
        };
        if entry.key == self.settings.name {
            ex.echo = Some(at);
            return false;
        }
        let lapse = Exchange::lapse(self.settings.heartbeat);
        match report {
            Some(report) => {
                let now_live = at.elapsed() <= lapse;
                let changed = match ex.others.get(&entry.key) {
                    None => now_live,
                    Some(b) => b.report != report || (b.at.elapsed() <= lapse) != now_live,
                };
                ex.others.insert(entry.key, Heard { report, at });
                changed
            }
            None => ex.others.remove(&entry.key).is_some(),
        }
    }

    /// Whether the verdicts watch opened at `opened_at` has delivered nothing of this
    /// replica's own for two heartbeats, although the store took them.
    fn watch_is_deaf(&self, opened_at: Instant) -> bool {
        let two = self.settings.heartbeat * 2;
        let ex = self.exchange();
        let sent_recently = ex.sent.is_some_and(|t| t.elapsed() < two);
        let heard = ex.echo.map_or(opened_at, |e| e.max(opened_at));
        sent_recently && heard.elapsed() > two
    }

    /// Sends this replica's verdicts every heartbeat and whenever they change, and
    /// watches everyone's; `changed` is told whenever the answers must be rebuilt.
    pub async fn exchange_verdicts(self: Arc<Self>, changed: Arc<Notify>) {
        tokio::spawn(self.clone().listen(changed.clone()));
        let heartbeat = self.settings.heartbeat;
        let mut next = tokio::time::Instant::now();
        let mut failing = false;
        loop {
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {
                    next = tokio::time::Instant::now() + heartbeat;
                    if self.evaluate() {
                        changed.notify_one();
                    }
                }
                _ = self.own_changed.notified() => {}
            }
            let body = {
                let ex = self.exchange();
                let report = Report {
                    fenced: ex.fence.fenced(),
                    targets: ex.own_report(),
                };
                serde_json::to_vec(&report).expect("verdicts serialize")
            };
            let sent = async {
                let bucket = self.verdict_bucket().await?;
                bucket
                    .put(&self.settings.name, body.into())
                    .await
                    .map_err(|e| e.to_string())
            };
            let failed = match tokio::time::timeout(self.settings.timeout, sent).await {
                Ok(Ok(_)) => {
                    self.exchange().sent = Some(Instant::now());
                    failing = false;
                    None
                }
                Ok(Err(e)) => Some(format!(
                    "cannot send this replica's verdicts to the store: {e}"
                )),
                Err(_) => Some(format!(
                    "the store did not take this replica's verdicts within {:?}",
                    self.settings.timeout
                )),
            };
            if let Some(why) = failed {
                // Open the bucket afresh next time (its stream may be gone).
                self.verdicts.store(None);
                if !failing {
                    warn!("{why}");
                    failing = true;
                }
            }
        }
    }

    /// Watches every replica's verdicts, reopening the watch whenever it ends.
    async fn listen(self: Arc<Self>, changed: Arc<Notify>) {
        loop {
            let opened = async {
                let bucket = self.verdict_bucket().await?;
                // Every replica's latest report first (dated by the store), then each
                // new one.
                bucket
                    .watch_with_history(">")
                    .await
                    .map_err(|e| format!("cannot watch the verdicts: {e}"))
            };
            if let Ok(mut watch) = opened.await {
                // This replica's own reports come back through the watch every
                // heartbeat. When they stop while the store still takes them, the
                // watch is dead (its consumer lived on a store member that is gone,
                // which the client notices only after 10 s): open it afresh.
                let mut check = tokio::time::interval(self.settings.heartbeat);
                check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                let opened_at = Instant::now();
                loop {
                    tokio::select! {
                        entry = watch.next() => match entry {
                            Some(Ok(e)) => {
                                if self.heard(e) {
                                    changed.notify_one();
                                }
                            }
                            Some(Err(e)) => {
                                warn!("the watch of the verdicts failed: {e}");
                                break;
                            }
                            None => break,
                        },
                        _ = check.tick() => {
                            if self.watch_is_deaf(opened_at) {
                                warn!("the watch of the verdicts stopped delivering this replica's own; watching afresh");
                                break;
                            }
                        }
                    }
                }
            }
            // Cut off: nothing heard counts as fresh any more than its age says, and
            // this replica's own echo stops, so it turns alone within the lapse.
            self.verdicts.store(None);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }
}

#[cfg(test)]
mod tests;
