//! What a reload changes that the log must name: settings that only a restart
//! applies, and zones or services that a reload drops in bulk.

use crate::plan::Plan;

/// The settings that differ between `old` and `new` and only apply at a restart (the
/// sockets, the admin listener, the probe pool), by name.
pub(super) fn needs_restart(old: &Plan, new: &Plan) -> Vec<&'static str> {
    let (o, n) = (&old.server, &new.server);
    let mut out = Vec::new();
    let mut differs = |changed: bool, name: &'static str| {
        if changed {
            out.push(name);
        }
    };
    differs(o.listen != n.listen, "[server] listen");
    differs(o.udp_sockets != n.udp_sockets, "[server] udp_sockets");
    differs(
        o.xdp != n.xdp,
        "[server] xdp_interface, xdp_queues, xdp_mode",
    );
    differs(
        o.tcp_idle_timeout != n.tcp_idle_timeout,
        "[server] tcp_idle_timeout",
    );
    differs(
        o.tcp_max_connections != n.tcp_max_connections,
        "[server] tcp_max_connections",
    );
    differs(o.grace_period != n.grace_period, "[server] grace_period");
    differs(old.health != new.health, "[health]");
    differs(old.cluster != new.cluster, "[cluster]");
    match (&old.admin, &new.admin) {
        (Some(a), Some(b)) => {
            differs(a.listen != b.listen, "[admin] listen");
            differs(a.token != b.token, "[admin] token");
            differs(a.hosts != b.hosts, "[admin] hosts");
            differs(a.state_file != b.state_file, "[admin] state_file");
            differs(
                a.ready_deadline != b.ready_deadline,
                "[admin] ready_deadline",
            );
        }
        (a, b) => differs(a.is_some() != b.is_some(), "[admin]"),
    }
    out
}

/// Zones and services a reload drops, when it drops more than half of them.
pub(super) fn shrinkage(old: &Plan, new: &Plan) -> Vec<(&'static str, Vec<String>, usize)> {
    let gone = |before: Vec<String>, after: Vec<String>| -> Vec<String> {
        before.into_iter().filter(|n| !after.contains(n)).collect()
    };
    let zones = gone(
        old.zones.iter().map(|z| z.origin.to_string()).collect(),
        new.zones.iter().map(|z| z.origin.to_string()).collect(),
    );
    let services = gone(
        old.services.iter().map(|s| s.name.to_string()).collect(),
        new.services.iter().map(|s| s.name.to_string()).collect(),
    );
    let mut out = Vec::new();
    if zones.len() * 2 > old.zones.len() {
        out.push(("zones", zones, old.zones.len()));
    }
    if services.len() * 2 > old.services.len() {
        out.push(("services", services, old.services.len()));
    }
    out
}
