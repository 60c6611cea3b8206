//! The draw of a service's answer, shared by the general path (`handler`) and the
//! fast path (`fast`): one function, so both count, key and consume random numbers
//! alike.

use std::net::IpAddr;

use crate::answer::{Affinity, Candidate, Decision, Pool};
use crate::plan::{Selection, ServiceId};
use crate::rng::Rng;
use crate::snapshot::Snapshot;

/// The resolver's address and the query's ECS prefix, which a consistent draw keys on.
pub(super) type KeyedBy = (IpAddr, Option<(IpAddr, u8)>);

/// The draw of service `s`'s answer from `pool` (the client's pool of the family
/// asked), with its metrics, calling `take` with each chosen candidate in order. Both
/// the general path and the fast path answer with this, so they consume the thread's
/// random numbers alike. Returns the ECS scope the draw itself needs: a consistent
/// answer depends on the client's prefix, so the reply's scope must cover it and a
/// resolver caches it for that prefix only; 0 for a random draw.
pub(super) fn draw<'s>(
    snap: &'s Snapshot,
    s: ServiceId,
    pool: &'s Pool,
    keyed_by: KeyedBy,
    mut take: impl FnMut(&'s Candidate),
) -> u8 {
    match pool.decision {
        Decision::FailOpen => snap.metrics.fail_open(s),
        Decision::Panic => snap.metrics.panic(s),
        _ => {}
    }
    let mut chosen = |i: usize| {
        let c = &pool.candidates[i];
        snap.metrics.answered(s, c.endpoint);
        take(c);
    };
    let svc = &snap.plan.services[s];
    match svc.selection {
        Selection::Random => {
            Rng::with_thread(|rng| pool.draw(svc.answers, rng, chosen));
            0
        }
        Selection::Consistent => {
            let (source, ecs) = keyed_by;
            let affinity = Affinity::of(source, ecs);
            pool.draw_keyed(svc.answers, affinity.key, &mut chosen);
            affinity.scope_over(pool)
        }
    }
}
