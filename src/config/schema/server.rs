//! The `[server]` and `[admin]` tables.

use serde::Deserialize;
use toml::Spanned;

use super::super::duration::Dur;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerDef {
    /// Addresses to serve DNS on, UDP and TCP both.
    #[serde(default = "default_listen")]
    pub listen: Vec<Spanned<String>>,
    /// UDP sockets per listen address (SO_REUSEPORT); 0 = one per CPU.
    #[serde(default = "default_udp_sockets")]
    pub udp_sockets: Spanned<usize>,
    /// Largest UDP response we send, whatever the client advertises (RFC 9715 suggests 1232).
    #[serde(default = "default_udp_payload")]
    pub max_udp_payload: Spanned<u16>,
    /// A TCP connection that sends nothing for this long between messages is closed.
    #[serde(default = "default_tcp_idle")]
    pub tcp_idle_timeout: Spanned<Dur>,
    /// Once the first byte of a TCP message arrived, the whole message must arrive
    /// within this (Knot's tcp-io-timeout); a trickling client is cut off.
    #[serde(default = "default_tcp_message")]
    pub tcp_message_timeout: Spanned<Dur>,
    /// TCP connections open at once; when full, the one idle longest makes room. Lowered
    /// at start if the file descriptor limit cannot hold it beside the probes.
    #[serde(default = "default_tcp_max")]
    pub tcp_max_connections: Spanned<usize>,
    /// TCP connections one source (IPv4 address, IPv6 /64) may hold; its own
    /// connection idle longest makes room for its next one.
    #[serde(default = "default_tcp_per_source")]
    pub tcp_max_connections_per_source: Spanned<usize>,
    /// On SIGTERM, how long open TCP connections get to finish before we exit.
    #[serde(default = "default_grace")]
    pub grace_period: Dur,
    /// DNS Cookies (RFC 7873, RFC 9018 server cookies).
    #[serde(default = "yes")]
    pub cookies: bool,
    /// The cookie secret: 32 hex digits per line, the first makes cookies, a second is
    /// still accepted (rotation). Replicas behind one address need the same file.
    /// Without it, a random secret per start.
    pub cookie_secret_file: Option<Spanned<String>>,
    /// This replica's name: the NSID option (RFC 5001) and CH TXT id.server. and
    /// hostname.bind.; none when absent.
    pub nsid: Option<Spanned<String>>,
    /// CH TXT version.bind. and version.server.; "" hides it.
    pub version: Option<String>,
    /// Serve the IPv4 listen addresses over AF_XDP on this interface (its name, say
    /// "eth0" or "lo"): an XDP program hands their queries to gslb before the kernel's
    /// IP and UDP layers. Needs CAP_NET_ADMIN and CAP_BPF (or root). Unset: sockets only.
    pub xdp_interface: Option<Spanned<String>>,
    /// Receive queues of `xdp_interface` to serve, 0 to n-1: one AF_XDP socket and one
    /// thread each. Queues beyond these reach the ordinary sockets.
    /// Default 1.
    pub xdp_queues: Option<Spanned<u32>>,
    /// Where the XDP program runs: "generic" (any interface) or "native" (in the
    /// driver: one copy less per query; needs a driver with XDP support, not `lo`).
    /// Default "generic".
    pub xdp_mode: Option<Spanned<XdpModeDef>>,
}

#[derive(Debug, Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum XdpModeDef {
    Generic,
    Native,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminDef {
    /// `ip:port` of the admin HTTP listener (metrics, state, overrides).
    pub listen: Spanned<String>,
    /// Bearer token for every call but /livez and /readyz; required when `listen` is
    /// not loopback. At least 16 bytes.
    pub token: Option<Spanned<String>>,
    /// A file holding the token (its first line), instead of `token`; relative paths
    /// are relative to the config file's directory.
    pub token_file: Option<Spanned<String>>,
    /// Host names (besides IP addresses and `localhost`) the `Host` header may give.
    #[serde(default)]
    pub hosts: Vec<String>,
    /// Where overrides are kept across restarts; relative paths are relative to the
    /// config file's directory.
    pub state_file: Option<String>,
    /// `/readyz` reports ready after the first probe round, or after this long.
    #[serde(default = "default_ready_deadline")]
    pub ready_deadline: Dur,
}

fn default_grace() -> Dur {
    Dur::secs(5)
}
fn default_ready_deadline() -> Dur {
    Dur::secs(30)
}

impl Default for ServerDef {
    fn default() -> Self {
        ServerDef {
            listen: default_listen(),
            udp_sockets: default_udp_sockets(),
            max_udp_payload: default_udp_payload(),
            tcp_idle_timeout: default_tcp_idle(),
            tcp_message_timeout: default_tcp_message(),
            tcp_max_connections: default_tcp_max(),
            tcp_max_connections_per_source: default_tcp_per_source(),
            grace_period: default_grace(),
            cookies: true,
            cookie_secret_file: None,
            nsid: None,
            version: None,
            xdp_interface: None,
            xdp_queues: None,
            xdp_mode: None,
        }
    }
}

fn default_listen() -> Vec<Spanned<String>> {
    vec![Spanned::new(0..0, "127.0.0.1:8053".to_string())]
}
fn default_udp_payload() -> Spanned<u16> {
    Spanned::new(0..0, 1232)
}
fn default_udp_sockets() -> Spanned<usize> {
    Spanned::new(0..0, 0)
}
fn default_tcp_idle() -> Spanned<Dur> {
    Spanned::new(0..0, Dur::secs(10))
}
fn default_tcp_message() -> Spanned<Dur> {
    Spanned::new(0..0, Dur::secs(2))
}
fn default_tcp_max() -> Spanned<usize> {
    Spanned::new(0..0, 1024)
}
fn default_tcp_per_source() -> Spanned<usize> {
    Spanned::new(0..0, 64)
}
