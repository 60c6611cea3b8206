//! The publisher's side of `[cluster]`: the shared overrides a watch delivers, this
//! replica's verdicts for the quorum, and the status `/v1/state` shows.

use crate::cluster::{Own, Versioned};
use crate::health::TargetState;

use super::{Publisher, lock};
use tracing::{error, info};

/// This replica's view of the cluster, for `/v1/state`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterStatus {
    pub replica: String,
    pub reachable: bool,
    /// The store revision of the overrides served (0: the local copy, none read yet).
    pub revision: u64,
}

impl Publisher {
    /// With `[cluster]`: which replica this is, whether it reaches the store, and the
    /// revision of the overrides it serves.
    pub fn cluster_status(&self) -> Option<ClusterStatus> {
        let c = self.cluster.as_ref()?;
        Some(ClusterStatus {
            replica: c.name().to_string(),
            reachable: c.reachable(),
            revision: lock(&self.inner).revision,
        })
    }

    /// Serves the shared overrides of store revision `v.revision`, unless a newer one
    /// is served already (a replica's own write and its watch deliver each revision
    /// twice, in either order). The state file keeps a local copy: a failed save is
    /// logged, not fatal, as the store holds the change.
    pub fn apply_shared(&self, v: Versioned) {
        let _one_at_a_time = lock(&self.overriding);
        {
            let inner = lock(&self.inner);
            if v.revision <= inner.revision {
                return;
            }
            if inner.overrides == v.overrides {
                drop(inner);
                lock(&self.inner).revision = v.revision;
                self.metrics
                    .cluster
                    .overrides_revision
                    .set(v.revision as i64);
                return;
            }
        }
        if let Some(path) = &self.state_file
            && let Err(e) = v.overrides.save(path)
        {
            error!(
                "cannot save the local copy of the shared overrides to {}: {e}",
                path.display()
            );
        }
        {
            let mut inner = lock(&self.inner);
            inner.overrides = v.overrides;
            inner.revision = v.revision;
        }
        self.metrics
            .cluster
            .overrides_revision
            .set(v.revision as i64);
        info!(revision = v.revision, "shared overrides applied");
        self.republish();
    }
}

/// This replica's verdict on one target, for the cluster to combine.
pub(super) fn own_verdict(s: &TargetState) -> Own {
    let up = s.is_up();
    let reason = if up {
        None
    } else {
        match s.detail().last {
            Some(Err(e)) => Some(e.to_string()),
            _ => None,
        }
    };
    Own {
        up,
        probed: s.probed(),
        reason,
    }
}
