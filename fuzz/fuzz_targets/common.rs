//! The handler the DNS fuzz targets answer with: the config in `fuzz/zone.toml` (static
//! records, CNAME chains, TXT, MX, services with regions for ECS), every target healthy.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use arc_swap::ArcSwap;
use gslb::dns::Handler;
use gslb::overrides::Overrides;
use gslb::snapshot::{Snapshot, Zones};

pub fn handler() -> &'static Handler {
    static HANDLER: OnceLock<Handler> = OnceLock::new();
    HANDLER.get_or_init(|| {
        let text = include_str!("../zone.toml");
        let plan = Arc::new(gslb::config::parse(Path::new("zone.toml"), text).expect("fuzz/zone.toml"));
        let metrics = gslb::metrics::Metrics::new();
        let health = vec![true; plan.targets.len()];
        let snap = Snapshot::build(
            plan.clone(),
            Arc::new(Zones::build(&plan)),
            Arc::new(metrics.for_plan(&plan)),
            &health,
            &Overrides::default(),
        );
        // A fixed cookie clock, so that a reply is the same bytes whenever it is made.
        Handler::new(Arc::new(ArcSwap::from_pointee(snap))).with_cookie_clock(|| 1_700_000_000)
    })
}

/// The source of every fuzzed message: a client in the `eu` region.
pub fn source() -> SocketAddr {
    "198.51.100.7:5300".parse().unwrap()
}
