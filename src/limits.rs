//! File descriptors: DNS sockets, DNS TCP clients, admin connections and health probes
//! all draw on one table (`RLIMIT_NOFILE`). A flood of cheap TCP connections must never
//! take the descriptors a probe needs, or every target fails at once. So the TCP cap is
//! sized from the limit, after the probes' reserve and everything else is set aside.

use crate::plan::Plan;

/// Descriptors outside the budget's named parts: stdio, the runtime's epoll and
/// eventfds, signal handling, config and state-file reads and writes, logs.
pub const OVERHEAD: usize = 64;
/// Admin connections open at once (see admin::slots) plus its listener.
pub const ADMIN: usize = 64 + 1;
/// Below this many TCP connections a public server is easy to lock out: refuse to run.
pub const MIN_TCP: usize = 16;

/// How the descriptor table is shared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Budget {
    /// The soft limit the budget was made for.
    pub limit: usize,
    /// UDP sockets, TCP listeners, the admin side and the overhead.
    pub fixed: usize,
    /// Kept for probes: `max_concurrent_probes`.
    pub probes: usize,
    /// TCP connections allowed: the configured cap, or less when the limit says so.
    pub tcp: usize,
}

impl Budget {
    /// Whether the configured TCP cap had to be lowered.
    pub fn tcp_lowered(&self, plan: &Plan) -> bool {
        self.tcp < plan.server.tcp_max_connections
    }
}

/// The budget for `plan` with `udp_per_addr` UDP sockets per listen address under a
/// descriptor limit of `limit`; an error when the limit cannot hold the fixed part,
/// the probes and `MIN_TCP` connections.
pub fn budget(plan: &Plan, udp_per_addr: usize, limit: u64) -> Result<Budget, String> {
    let limit = usize::try_from(limit).unwrap_or(usize::MAX);
    let listen = plan.server.listen.len();
    let admin = if plan.admin.is_some() { ADMIN } else { 0 };
    let fixed = listen * (udp_per_addr + 1) + admin + OVERHEAD;
    let probes = plan.health.max_concurrent_probes;
    let left = limit.saturating_sub(fixed + probes);
    if left < MIN_TCP {
        return Err(format!(
            "the file descriptor limit ({limit}) cannot hold {fixed} for sockets \
             ({listen} listen addresses × {udp_per_addr} UDP sockets + 1 TCP listener, \
             admin {admin}, overhead {OVERHEAD}), {probes} for probes \
             (max_concurrent_probes) and {MIN_TCP} TCP connections: raise the limit \
             (LimitNOFILE=, ulimit -n) or lower udp_sockets or max_concurrent_probes"
        ));
    }
    Ok(Budget {
        limit,
        fixed,
        probes,
        tcp: plan.server.tcp_max_connections.min(left),
    })
}

/// UDP sockets per listen address: the configured count, or one per CPU for 0.
pub fn udp_per_addr(plan: &Plan) -> usize {
    match plan.server.udp_sockets {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(tcp: usize, probes: usize) -> Plan {
        let text = format!(
            "[server]\nlisten = [\"127.0.0.1:53\"]\ntcp_max_connections = {tcp}\n\
             [health]\nmax_concurrent_probes = {probes}\n[admin]\nlisten = \"127.0.0.1:9\"\n\
             [[zone]]\norigin = \"t\"\nns = [{{ name = \"ns.example.\" }}]\n"
        );
        crate::config::parse(std::path::Path::new("t.toml"), &text).unwrap()
    }

    #[test]
    fn the_tcp_cap_yields_to_the_probes() {
        // 1024: 2 UDP + 1 TCP listener + 65 admin + 64 overhead = 132 fixed, 512 probes.
        let b = budget(&plan(1024, 512), 2, 1024).unwrap();
        assert_eq!((b.fixed, b.probes, b.tcp), (132, 512, 1024 - 132 - 512));
        assert!(b.tcp_lowered(&plan(1024, 512)));
        // A high limit keeps the configured cap.
        let b = budget(&plan(1024, 512), 2, 65536).unwrap();
        assert_eq!(b.tcp, 1024);
        // Too little for the probes and a handful of connections: an error that says why.
        let e = budget(&plan(1024, 900), 2, 1024).unwrap_err();
        assert!(e.contains("max_concurrent_probes"), "{e}");
    }
}
