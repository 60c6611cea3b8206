//! The one integration test binary (one link instead of one per file; nextest still runs
//! every test in its own process). `common` is the shared harness: it starts the real
//! `gslb` binary on loopback, talks DNS to it with a real client, and runs real TCP, TLS
//! and HTTP servers as health targets. In-process tests (`locality_props`, the check
//! cases) call the library directly.

mod common;

mod check;
mod cluster;
mod deploy;
mod differential;
mod dns;
mod faults;
mod hardening;
mod health;
mod hostile;
mod identity;
mod locality;
mod locality_props;
mod ops;
mod prometheus;
mod quorum;
mod robustness;
mod rrl;
mod smoke;
mod tls;
mod xdp;
