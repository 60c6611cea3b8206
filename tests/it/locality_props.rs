//! Property test of locality over random configurations: regions with overlapping
//! networks and fallback chains, gateways in a region or none, services with random
//! weights (zeros included), locality, spillover, panic threshold and all-down policy,
//! random probe verdicts, random operator overrides (drain, force up, force down; by
//! gateway or by endpoint), and random clients placed by source address or ECS.
//!
//! Each config is compiled from TOML text (`gslb::config::parse`), turned into a
//! snapshot (`Snapshot::build`), and queried through the real `Handler::respond` on
//! parsed wire bytes; the reply is parsed back. An oracle written here, from the rules
//! alone, says what may and must be in the answer:
//!
//! (a) no answer holds a drained endpoint; an unhealthy one only in panic or when the
//!     service fails open with nothing healthy in reach; a zero-weight one only when it
//!     fails open with nothing enabled in reach. "Reach" is the client's region chain
//!     when locality applies and the chain has an enabled endpoint of the family, and
//!     every endpoint otherwise;
//! (b) without spillover, answers come from the first region of the chain that has a
//!     ready endpoint (the client's own while it has one); with spillover, from regions
//!     of the chain that have one;
//! (c) the ECS scope is the shortest prefix, at least that of the network that placed
//! the client, whose block reaches no network of another region (for a client in no
//! region: no region network at all), for a locality
//!     service, and 0 otherwise; the echo repeats family, source prefix and address.
//!
//! Also: the answer is empty exactly when the oracle says nothing may be answered, and
//! the handler's reported decision (healthy, panic, fail-open, fail-closed, no
//! addresses) is the oracle's.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use proptest::prelude::*;

use gslb::answer::{Client, Decision, Family};
use gslb::dns::Handler;
use gslb::overrides::{AdminState, Overrides, Scope};
use gslb::plan::ServiceId;
use gslb::snapshot::{Snapshot, Zones};

/// Client networks regions may own: nested (10/8 ⊃ 10.1/16 ⊃ 10.1.2/24 ⊃ 10.1.2.128/25),
/// catch-alls, and IPv6.
const NETS: [&str; 11] = [
    "10.0.0.0/8",
    "10.1.0.0/16",
    "10.1.2.0/24",
    "10.1.2.128/25",
    "192.168.0.0/16",
    "172.16.0.0/12",
    "0.0.0.0/0",
    "2001:db8::/32",
    "2001:db8:1::/48",
    "2001:db8:1:2::/64",
    "::/0",
];

const MAX_REGIONS: usize = 3;
const MAX_GATEWAYS: usize = 6;
const MAX_SERVICES: usize = 3;

#[derive(Debug, Clone)]
struct Spec {
    n_regions: usize,
    /// Per NETS entry: the region owning it (>= n_regions: none).
    net_owner: Vec<usize>,
    /// Per region: candidate fallbacks (filtered: in range, not itself, no repeats).
    fallback: Vec<Vec<usize>>,
    /// Per gateway: region (7: none, else taken modulo n_regions), families (0 v4, 1 v6,
    /// 2 both).
    gateways: Vec<(usize, u8)>,
    services: Vec<SvcSpec>,
    /// Probe verdicts, by target index (modulo).
    health: Vec<bool>,
    /// (whole gateway?, service, gateway, state 0 drain / 1 force up / 2 force down)
    overrides: Vec<(bool, usize, usize, u8)>,
    clients: Vec<ClientSpec>,
}

#[derive(Debug, Clone)]
struct SvcSpec {
    /// (gateway, weight); gateways taken modulo, repeats dropped.
    endpoints: Vec<(usize, u32)>,
    /// 0: default, 1: true, 2: false.
    locality: u8,
    /// 0, 3: none, 1: spillover = true, 2: overprovisioning = factor.
    spill: u8,
    factor: f64,
    panic: Option<f64>,
    fail_closed: bool,
    answers: u8,
    checked: bool,
}

#[derive(Debug, Clone)]
struct ClientSpec {
    /// < NETS.len(): an address inside that network; else a random v4 / v6 address.
    base: usize,
    bits: u128,
    /// 0: no EDNS, 1: EDNS without ECS, 2: ECS /0, 3..: ECS with `prefix`.
    ecs: u8,
    prefix: u8,
    /// With ECS, the source address is the client's own (else 127.0.0.1).
    src_is_client: bool,
}

fn svc_strategy() -> impl Strategy<Value = SvcSpec> {
    (
        prop::collection::vec(
            (
                0..MAX_GATEWAYS,
                prop::sample::select(vec![0u32, 1, 1, 2, 3, 5]),
            ),
            1..=6,
        ),
        0..3u8,
        0..4u8,
        1.0f64..3.0,
        prop::option::weighted(0.35, 0.05f64..0.95),
        any::<bool>(),
        1u8..=3,
        prop::bool::weighted(0.85),
    )
        .prop_map(
            |(endpoints, locality, spill, factor, panic, fail_closed, answers, checked)| SvcSpec {
                endpoints,
                locality,
                spill,
                factor,
                panic,
                fail_closed,
                answers,
                checked,
            },
        )
}

fn client_strategy() -> impl Strategy<Value = ClientSpec> {
    (
        0..NETS.len() + 2,
        any::<u128>(),
        0..8u8,
        0..=128u8,
        any::<bool>(),
    )
        .prop_map(|(base, bits, ecs, prefix, src_is_client)| ClientSpec {
            base,
            bits,
            ecs,
            prefix,
            src_is_client,
        })
}

fn spec_strategy() -> impl Strategy<Value = Spec> {
    (
        prop::sample::select(vec![0usize, 1, 2, 2, 3, 3]),
        prop::collection::vec(0..MAX_REGIONS + 1, NETS.len()),
        prop::collection::vec(prop::collection::vec(0..MAX_REGIONS, 0..=3), MAX_REGIONS),
        prop::collection::vec(
            (0..8usize, prop::sample::select(vec![0u8, 0, 2, 2, 1])),
            1..=MAX_GATEWAYS,
        ),
        prop::collection::vec(svc_strategy(), 1..=MAX_SERVICES),
        prop::collection::vec(prop::bool::weighted(0.6), MAX_GATEWAYS),
        prop::collection::vec(
            (
                prop::bool::weighted(0.3),
                0..MAX_SERVICES,
                0..MAX_GATEWAYS,
                0..3u8,
            ),
            0..=4,
        ),
        prop::collection::vec(client_strategy(), 1..=6),
    )
        .prop_map(
            |(n_regions, net_owner, fallback, gateways, services, health, overrides, clients)| {
                Spec {
                    n_regions,
                    net_owner,
                    fallback,
                    gateways,
                    services,
                    health,
                    overrides,
                    clients,
                }
            },
        )
}

// ---------------------------------------------------------------- the config, as text

/// The compiled view the oracle works from (indices as written in the TOML).
struct Model {
    text: String,
    /// Per region: networks (addr, prefix) and the chain (itself, then fallbacks).
    nets: Vec<(IpAddr, u8, usize)>,
    chains: Vec<Vec<usize>>,
    /// Per gateway: region, v4 address, v6 address.
    gw_region: Vec<Option<usize>>,
    gw_v4: Vec<Option<Ipv4Addr>>,
    gw_v6: Vec<Option<Ipv6Addr>>,
    services: Vec<SvcModel>,
}

struct SvcModel {
    name: String,
    /// (gateway, weight)
    endpoints: Vec<(usize, u32)>,
    locality: bool,
    spillover: bool,
    /// The overprovisioning factor when spillover is on.
    factor: f64,
    panic: Option<f64>,
    fail_closed: bool,
    answers: usize,
    checked: bool,
}

fn net_parse(s: &str) -> (IpAddr, u8) {
    let (a, p) = s.split_once('/').unwrap();
    (a.parse().unwrap(), p.parse().unwrap())
}

fn model(spec: &Spec) -> Model {
    let nr = spec.n_regions;
    let mut text = String::from(
        r#"[[zone]]
origin = "gslb.test"
ns = [{ name = "ns1", addresses = ["127.0.0.1"] }]

[[check]]
name = "hc"
kind = "http"
"#,
    );
    let mut nets = Vec::new();
    let mut chains = Vec::new();
    for r in 0..nr {
        let mine: Vec<&str> = NETS
            .iter()
            .zip(&spec.net_owner)
            .filter(|(_, o)| **o == r)
            .map(|(n, _)| *n)
            .collect();
        for n in &mine {
            let (a, p) = net_parse(n);
            nets.push((a, p, r));
        }
        let mut fb: Vec<usize> = Vec::new();
        for &f in &spec.fallback[r] {
            if f < nr && f != r && !fb.contains(&f) {
                fb.push(f);
            }
        }
        text.push_str(&format!(
            "\n[[region]]\nname = \"r{r}\"\nnetworks = [{}]\nfallback = [{}]\n",
            mine.iter()
                .map(|n| format!("\"{n}\""))
                .collect::<Vec<_>>()
                .join(", "),
            fb.iter()
                .map(|f| format!("\"r{f}\""))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        chains.push(std::iter::once(r).chain(fb).collect());
    }
    let mut gw_region = Vec::new();
    let mut gw_v4 = Vec::new();
    let mut gw_v6 = Vec::new();
    for (g, &(region, fam)) in spec.gateways.iter().enumerate() {
        let v4 = (fam != 1).then(|| Ipv4Addr::new(192, 0, 2, g as u8 + 1));
        let v6 = (fam != 0).then(|| Ipv6Addr::new(0x2001, 0xdb8, 0xffff, 0, 0, 0, 0, g as u16 + 1));
        let addrs: Vec<String> = v4
            .iter()
            .map(|a| format!("\"{a}\""))
            .chain(v6.iter().map(|a| format!("\"{a}\"")))
            .collect();
        text.push_str(&format!(
            "\n[[gateway]]\nname = \"g{g}\"\naddresses = [{}]\nprobe = \"127.0.11.{}:80\"\n",
            addrs.join(", "),
            g + 1
        ));
        let region = (region < 7 && nr > 0).then(|| region % nr);
        if let Some(r) = region {
            text.push_str(&format!("region = \"r{r}\"\n"));
        }
        gw_region.push(region);
        gw_v4.push(v4);
        gw_v6.push(v6);
    }
    let ng = spec.gateways.len();
    let mut services = Vec::new();
    for (s, sv) in spec.services.iter().enumerate() {
        let mut endpoints: Vec<(usize, u32)> = Vec::new();
        for &(g, w) in &sv.endpoints {
            let g = g % ng;
            if !endpoints.iter().any(|e| e.0 == g) {
                endpoints.push((g, w));
            }
        }
        let locality_key = match (sv.locality, nr) {
            (1, n) if n > 0 => Some(true),
            (2, _) => Some(false),
            _ => None,
        };
        let locality = locality_key.unwrap_or(nr > 0);
        let name = format!("s{s}.gslb.test");
        text.push_str(&format!(
            "\n[[service]]\nname = \"{name}\"\nanswers = {}\nall_down = \"{}\"\n",
            sv.answers,
            if sv.fail_closed {
                "fail_closed"
            } else {
                "fail_open"
            }
        ));
        if sv.checked {
            text.push_str("check = \"hc\"\n");
        }
        if let Some(l) = locality_key {
            text.push_str(&format!("locality = {l}\n"));
        }
        let spillover = locality && (sv.spill == 1 || sv.spill == 2);
        if locality && sv.spill == 1 {
            text.push_str("spillover = true\n");
        }
        if locality && sv.spill == 2 {
            text.push_str(&format!("overprovisioning = {:?}\n", sv.factor));
        }
        if let Some(p) = sv.panic {
            text.push_str(&format!("panic_threshold = {p:?}\n"));
        }
        text.push_str(&format!(
            "endpoints = [{}]\n",
            endpoints
                .iter()
                .map(|(g, w)| format!("{{ gateway = \"g{g}\", weight = {w} }}"))
                .collect::<Vec<_>>()
                .join(", ")
        ));
        services.push(SvcModel {
            name: format!("{name}."),
            endpoints,
            locality,
            spillover,
            factor: if sv.spill == 2 { sv.factor } else { 1.4 },
            panic: sv.panic,
            fail_closed: sv.fail_closed,
            answers: sv.answers as usize,
            checked: sv.checked,
        });
    }
    Model {
        text,
        nets,
        chains,
        gw_region,
        gw_v4,
        gw_v6,
        services,
    }
}

// ------------------------------------------------------------------ the oracle's parts

fn bits(ip: IpAddr) -> (u128, u8) {
    match ip {
        IpAddr::V4(v) => (u32::from(v) as u128, 32),
        IpAddr::V6(v) => (u128::from(v), 128),
    }
}

/// The top `prefix` bits of a `width`-bit value, the rest zero.
fn keep(v: u128, prefix: u8, width: u8) -> u128 {
    if prefix == 0 {
        return 0;
    }
    let low = width - prefix;
    let v = if low >= 128 { 0 } else { v >> low << low };
    if width == 32 { v & 0xffff_ffff } else { v }
}

fn from_bits(v: u128, width: u8) -> IpAddr {
    if width == 32 {
        IpAddr::V4(Ipv4Addr::from(v as u32))
    } else {
        IpAddr::V6(Ipv6Addr::from(v))
    }
}

/// The ECS scope an answer for `ip` placed in region `r` by a network of prefix `p`
/// may carry, found by brute force: the shortest scope ≥ p whose block around `ip`
/// meets no more specific network of another region (so every address in the block
/// is placed the same way, and a resolver caching the answer for the block never hands
/// it to another region's client).
fn oracle_scope(nets: &[(IpAddr, u8, usize)], ip: IpAddr, r: usize, p: u8) -> u8 {
    let (b, w) = bits(ip);
    (p..=w)
        .find(|&scope| {
            nets.iter().all(|&(a, np, nr)| {
                let (nb, nw) = bits(a);
                // The other network intersects the block iff one contains the other.
                let overlaps = nw == w && keep(nb, scope.min(np), w) == keep(b, scope.min(np), w);
                // Networks no more specific than the placing one lose to it anyway.
                nr == r || np <= p || !overlaps
            })
        })
        .unwrap_or(w)
}

/// The scope for a client in no region, by brute force: the shortest scope whose
/// block around `ip` meets no region network of its family (0 when there is none).
fn oracle_scope_outside(nets: &[(IpAddr, u8, usize)], ip: IpAddr) -> u8 {
    let (b, w) = bits(ip);
    (0..=w)
        .find(|&scope| {
            nets.iter().all(|&(a, np, _)| {
                let (nb, nw) = bits(a);
                nw != w || keep(nb, scope.min(np), w) != keep(b, scope.min(np), w)
            })
        })
        .unwrap_or(w)
}

/// Longest-prefix match: (region, prefix).
fn place(nets: &[(IpAddr, u8, usize)], ip: IpAddr) -> Option<(usize, u8)> {
    let (b, w) = bits(ip);
    nets.iter()
        .filter(|(a, p, _)| {
            let (nb, nw) = bits(*a);
            nw == w && keep(b, *p, w) == nb
        })
        .max_by_key(|(_, p, _)| *p)
        .map(|&(_, p, r)| (r, p))
}

/// The client: (source address, ECS (addr, source prefix), with EDNS).
fn client(c: &ClientSpec) -> (IpAddr, Option<(IpAddr, u8)>, bool) {
    let addr = if c.base < NETS.len() {
        let (a, p) = net_parse(NETS[c.base]);
        let (nb, w) = bits(a);
        let host = if p == w {
            0
        } else {
            let mask = if w == 32 { 0xffff_ffffu128 } else { u128::MAX };
            c.bits & (mask >> p)
        };
        from_bits(nb | host, w)
    } else if c.base == NETS.len() {
        from_bits(c.bits & 0xffff_ffff, 32)
    } else {
        from_bits(c.bits, 128)
    };
    let (_, w) = bits(addr);
    match c.ecs {
        0 => (addr, None, false),
        1 => (addr, None, true),
        2 => {
            let zero = if w == 32 {
                IpAddr::V4(Ipv4Addr::UNSPECIFIED)
            } else {
                IpAddr::V6(Ipv6Addr::UNSPECIFIED)
            };
            let src = if c.src_is_client {
                addr
            } else {
                "127.0.0.1".parse().unwrap()
            };
            (src, Some((zero, 0)), true)
        }
        _ => {
            let p = 1 + c.prefix % w; // 1..=w
            let ecs = from_bits(keep(bits(addr).0, p, w), w);
            let src = if c.src_is_client {
                addr
            } else {
                "127.0.0.1".parse().unwrap()
            };
            (src, Some((ecs, p)), true)
        }
    }
}

fn query_bytes(name: &str, qtype: RecordType, ecs: Option<(IpAddr, u8)>, edns: bool) -> Vec<u8> {
    let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
    m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
    if edns {
        let mut e = Edns::new();
        e.set_max_payload(1232);
        if let Some((a, p)) = ecs {
            e.options_mut()
                .insert(EdnsOption::Subnet(ClientSubnet::new(a, p, 0)));
        }
        m.set_edns(e);
    }
    m.to_vec().unwrap()
}

fn admin_state(k: u8) -> AdminState {
    match k {
        0 => AdminState::Drain,
        1 => AdminState::ForceUp,
        _ => AdminState::ForceDown,
    }
}

// ---------------------------------------------------------------------------- the test

fn check(spec: &Spec) -> Result<(), TestCaseError> {
    let m = model(spec);
    let plan = gslb::config::parse(Path::new("prop.toml"), &m.text)
        .map_err(|e| TestCaseError::fail(format!("config does not compile: {e}\n{}", m.text)))?;
    let plan = Arc::new(plan);
    prop_assert_eq!(plan.gateways.len(), m.gw_region.len());
    prop_assert_eq!(plan.services.len(), m.services.len());

    // Probe verdicts by target; overrides by gateway and by endpoint (last one wins).
    let health: Vec<bool> = (0..plan.targets.len())
        .map(|t| spec.health[t % spec.health.len()])
        .collect();
    let mut overrides = Overrides::default();
    let mut by_gw: HashMap<usize, AdminState> = HashMap::new();
    let mut by_ep: HashMap<(usize, usize), AdminState> = HashMap::new();
    for &(whole, s, g, k) in &spec.overrides {
        let (s, g, st) = (s % m.services.len(), g % m.gw_region.len(), admin_state(k));
        if whole {
            overrides.set(&Scope::Gateway(format!("g{g}")), Some(st));
            by_gw.insert(g, st);
        } else {
            overrides.set(
                &Scope::Endpoint {
                    service: m.services[s].name.clone(),
                    gateway: format!("g{g}"),
                },
                Some(st),
            );
            by_ep.insert((s, g), st);
        }
    }

    let metrics = gslb::metrics::Metrics::new();
    let snap = Snapshot::build(
        plan.clone(),
        Arc::new(Zones::build(&plan)),
        Arc::new(metrics.for_plan(&plan)),
        &health,
        &overrides,
    );
    let shared = Arc::new(ArcSwap::from_pointee(snap));
    let handler = Handler::new(shared.clone());
    let snap = shared.load_full();

    // Answer address → gateway.
    let mut by_addr: HashMap<IpAddr, usize> = HashMap::new();
    for g in 0..m.gw_region.len() {
        if let Some(a) = m.gw_v4[g] {
            by_addr.insert(IpAddr::V4(a), g);
        }
        if let Some(a) = m.gw_v6[g] {
            by_addr.insert(IpAddr::V6(a), g);
        }
    }

    let mut out = Vec::new();
    for (s, svc) in m.services.iter().enumerate() {
        let psvc = &plan.services[s];
        prop_assert_eq!(psvc.name.to_string(), svc.name.clone());
        prop_assert_eq!(psvc.locality, svc.locality);
        // Per endpoint (service order): gateway, weight, admin state, probe verdict.
        let eps: Vec<Ep> = svc
            .endpoints
            .iter()
            .enumerate()
            .map(|(i, &(g, w))| {
                let admin = by_ep.get(&(s, g)).or_else(|| by_gw.get(&g)).copied();
                let target = psvc.endpoints[i].target();
                assert_eq!(target.is_some(), svc.checked);
                let probe_up = target.is_none_or(|t| health[t.index()]);
                let healthy = match admin {
                    None => probe_up,
                    Some(AdminState::ForceUp) => true,
                    Some(_) => false,
                };
                let drained = admin == Some(AdminState::Drain);
                let enabled = !drained && w > 0;
                Ep {
                    gw: g,
                    weight: w,
                    region: m.gw_region[g],
                    drained,
                    enabled,
                    ready: enabled && healthy,
                }
            })
            .collect();
        let total: u64 = eps
            .iter()
            .filter(|e| e.enabled)
            .map(|e| e.weight as u64)
            .sum();
        let healthy: u64 = eps
            .iter()
            .filter(|e| e.ready)
            .map(|e| e.weight as u64)
            .sum();
        let panic = svc
            .panic
            .is_some_and(|p| total > 0 && (healthy as f64) < p * total as f64);

        for cs in &spec.clients {
            let (src, ecs, edns) = client(cs);
            // Where the client is: ECS when it carries information, else the source.
            let placed_by = match ecs {
                Some((_, 0)) => None,
                Some((a, _)) => Some(a),
                None => Some(src),
            };
            let placement = placed_by.and_then(|a| place(&m.nets, a));
            let want_scope = match (svc.locality, placement, placed_by) {
                (true, Some((r, p)), Some(ip)) => oracle_scope(&m.nets, ip, r, p),
                (true, None, Some(ip)) => oracle_scope_outside(&m.nets, ip),
                _ => 0,
            };
            for qtype in [RecordType::A, RecordType::AAAA] {
                let has_fam = |e: &Ep| match qtype {
                    RecordType::A => m.gw_v4[e.gw].is_some(),
                    _ => m.gw_v6[e.gw].is_some(),
                };
                let fam: Vec<&Ep> = eps.iter().filter(|e| has_fam(e)).collect();
                let chain: Option<&Vec<usize>> = placement
                    .filter(|_| svc.locality)
                    .map(|(r, _)| &m.chains[r]);
                let in_chain =
                    |e: &Ep| chain.is_some_and(|c| e.region.is_some_and(|r| c.contains(&r)));
                let chain_enabled = fam.iter().any(|e| e.enabled && in_chain(e));
                // Reach: the chain when it holds an enabled endpoint of this family.
                let reach: Vec<&Ep> = if chain_enabled {
                    fam.iter().copied().filter(|e| in_chain(e)).collect()
                } else {
                    fam.clone()
                };
                let ready2 = |e: &Ep| e.ready || (panic && e.enabled);
                let reach_ready = reach.iter().any(|e| ready2(e));
                let reach_enabled = reach.iter().any(|e| e.enabled);
                let fail_open = !svc.fail_closed;
                let want_decision = if fam.is_empty() {
                    Decision::NoAddresses
                } else if reach_ready {
                    if panic {
                        Decision::Panic
                    } else {
                        Decision::Healthy
                    }
                } else if fail_open {
                    Decision::FailOpen
                } else {
                    Decision::FailClosed
                };
                let want_nonempty = reach_ready || (fail_open && fam.iter().any(|e| !e.drained));
                // The region answers must come from, for (b).
                let home: Option<Vec<usize>> = chain.and_then(|c| {
                    let regions_with = |pred: &dyn Fn(&Ep) -> bool| -> Vec<usize> {
                        c.iter()
                            .copied()
                            .filter(|&r| fam.iter().any(|e| e.region == Some(r) && pred(e)))
                            .collect()
                    };
                    let ready_regions = regions_with(&|e| ready2(e));
                    let enabled_regions = regions_with(&|e| e.enabled);
                    let pick = if !ready_regions.is_empty() {
                        ready_regions
                    } else if fail_open {
                        enabled_regions
                    } else {
                        Vec::new()
                    };
                    if pick.is_empty() {
                        None
                    } else if svc.spillover {
                        Some(pick)
                    } else {
                        Some(vec![pick[0]])
                    }
                });

                // With spillover, a region of the chain gets load only while every
                // region before it (with enabled weight) has less than 1/F of it ready
                // (as if all were, in panic or fail-open): the last chain position that
                // may answer.
                let spill_limit: Option<usize> = chain.filter(|_| svc.spillover).and_then(|c| {
                    let counts = |e: &Ep| if reach_ready { ready2(e) } else { e.enabled };
                    c.iter().position(|&r| {
                        let of_r = || fam.iter().filter(|e| e.region == Some(r) && e.enabled);
                        let total: u64 = of_r().map(|e| e.weight as u64).sum();
                        let ready: u64 =
                            of_r().filter(|e| counts(e)).map(|e| e.weight as u64).sum();
                        total > 0 && svc.factor * (ready as f64 / total as f64) >= 1.0
                    })
                });

                let bytes = query_bytes(&svc.name, qtype, ecs, edns);
                let src_addr = SocketAddr::new(src, 5353);
                let ctx = || {
                    format!(
                        "service {} {qtype} src {src} ecs {ecs:?} placement {placement:?} \
                         panic {panic} reach {:?}\nconfig:\n{}",
                        svc.name,
                        reach.iter().map(|e| e.gw).collect::<Vec<_>>(),
                        m.text
                    )
                };
                // (a) and (b) for one endpoint that may answer, or that the decision
                // lists as a candidate.
                let allowed = |e: &Ep| -> Result<(), TestCaseError> {
                    // (a)
                    prop_assert!(!e.drained, "drained g{} may answer: {}", e.gw, ctx());
                    if !e.ready {
                        prop_assert!(
                            (panic && e.enabled) || (fail_open && !reach_ready),
                            "g{} (not ready) may answer: {}",
                            e.gw,
                            ctx()
                        );
                    }
                    if e.weight == 0 {
                        prop_assert!(
                            fail_open && !reach_enabled,
                            "g{} (weight 0) may answer: {}",
                            e.gw,
                            ctx()
                        );
                    }
                    prop_assert!(
                        reach.iter().any(|r| r.gw == e.gw),
                        "g{} is out of reach: {}",
                        e.gw,
                        ctx()
                    );
                    // (b)
                    if chain_enabled && let Some(limit) = spill_limit {
                        let pos = chain
                            .unwrap()
                            .iter()
                            .position(|&r| e.region == Some(r))
                            .unwrap();
                        prop_assert!(
                            pos <= limit,
                            "g{} at chain position {} may answer, but position {} has at \
                             least 1/F ready: {}",
                            e.gw,
                            pos,
                            limit,
                            ctx()
                        );
                    }
                    if chain_enabled && let Some(h) = &home {
                        prop_assert!(
                            e.region.is_some_and(|r| h.contains(&r)),
                            "g{} (region {:?}) may answer, want regions {:?}: {}",
                            e.gw,
                            e.region,
                            h,
                            ctx()
                        );
                    }
                    Ok(())
                };

                // The oracle checks the decision itself, not only the answers drawn
                // from it: scope, decision, and every candidate.
                let decided = snap.decide(ServiceId(s), Client::new(src, ecs));
                prop_assert_eq!(decided.scope, want_scope, "decide: {}", ctx());
                let family = Family::of(qtype).unwrap();
                let pool = decided.pool(family);
                prop_assert_eq!(pool.decision, want_decision, "decide: {}", ctx());
                prop_assert_eq!(
                    pool.candidates.is_empty(),
                    !want_nonempty,
                    "decide: {}",
                    ctx()
                );
                for c in &pool.candidates {
                    let g = plan.services[s].endpoints[c.endpoint].gateway.index();
                    let e = fam.iter().find(|e| e.gw == g);
                    prop_assert!(
                        e.is_some(),
                        "decide: g{} is not in the service: {}",
                        g,
                        ctx()
                    );
                    allowed(e.unwrap())?;
                }
                // A few draws each: the property must hold for every one.
                for _ in 0..3 {
                    let req = Request::from_bytes(bytes.clone(), src_addr, Protocol::Udp)
                        .expect("query parses");
                    let outcome = handler
                        .respond(&req, Protocol::Udp, &mut out)
                        .expect("a reply");
                    let reply = Message::from_vec(&out).expect("reply parses");
                    prop_assert_eq!(reply.metadata.response_code, ResponseCode::NoError);
                    prop_assert_eq!(outcome.decision, Some(want_decision), "{}", ctx());

                    // The answer, mapped back to endpoints of this service.
                    let mut got: Vec<&Ep> = Vec::new();
                    for r in &reply.answers {
                        let a = match (&r.data, qtype) {
                            (RData::A(a), RecordType::A) => IpAddr::V4(a.0),
                            (RData::AAAA(a), RecordType::AAAA) => IpAddr::V6(a.0),
                            _ => return Err(TestCaseError::fail(format!("odd record {r}"))),
                        };
                        let g = by_addr[&a];
                        let e = fam.iter().find(|e| e.gw == g);
                        prop_assert!(e.is_some(), "g{} is not in the service: {}", g, ctx());
                        got.push(e.unwrap());
                    }
                    let distinct: BTreeSet<usize> = got.iter().map(|e| e.gw).collect();
                    prop_assert_eq!(distinct.len(), got.len(), "repeats: {}", ctx());
                    prop_assert!(got.len() <= svc.answers);
                    prop_assert_eq!(!got.is_empty(), want_nonempty, "{}", ctx());

                    for e in &got {
                        allowed(e)?;
                    }

                    // (c)
                    prop_assert_eq!(outcome.ecs_scope, want_scope, "{}", ctx());
                    let echo = reply.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet));
                    match (ecs, echo) {
                        (None, None) => {}
                        (Some((a, p)), Some(EdnsOption::Subnet(c))) => {
                            prop_assert_eq!(c.addr(), a);
                            prop_assert_eq!(c.source_prefix(), p);
                            prop_assert_eq!(c.scope_prefix(), want_scope, "{}", ctx());
                        }
                        (want, got) => {
                            return Err(TestCaseError::fail(format!(
                                "ECS sent {want:?}, echoed {got:?}: {}",
                                ctx()
                            )));
                        }
                    }
                    prop_assert_eq!(reply.edns.is_some(), edns);
                }
            }
        }
    }
    Ok(())
}

/// Explain cannot disagree with the answers: for every service, client and family,
/// `gslb::explain` (what `gslb explain` and `/v1/explain` print) is compared with what the
/// handler answers to the same client: the ECS scope and decision exactly; every
/// answered gateway is a candidate of explain's, every answer holds one region's
/// endpoints when explain's candidates span several; and each candidate's share of first
/// answers is explain's share, within five standard deviations of `DRAWS` draws.
fn check_explain(spec: &Spec) -> Result<(), TestCaseError> {
    const DRAWS: usize = 400;
    let m = model(spec);
    let plan = gslb::config::parse(Path::new("prop.toml"), &m.text)
        .map_err(|e| TestCaseError::fail(format!("config does not compile: {e}\n{}", m.text)))?;
    let plan = Arc::new(plan);
    let health: Vec<bool> = (0..plan.targets.len())
        .map(|t| spec.health[t % spec.health.len()])
        .collect();
    let mut overrides = Overrides::default();
    for &(whole, s, g, k) in &spec.overrides {
        let scope = if whole {
            Scope::Gateway(format!("g{}", g % m.gw_region.len()))
        } else {
            Scope::Endpoint {
                service: m.services[s % m.services.len()].name.clone(),
                gateway: format!("g{}", g % m.gw_region.len()),
            }
        };
        overrides.set(&scope, Some(admin_state(k)));
    }
    let metrics = gslb::metrics::Metrics::new();
    let shared = Arc::new(ArcSwap::from_pointee(Snapshot::build(
        plan.clone(),
        Arc::new(Zones::build(&plan)),
        Arc::new(metrics.for_plan(&plan)),
        &health,
        &overrides,
    )));
    let handler = Handler::new(shared.clone());
    let snap = shared.load_full();
    let mut by_addr: HashMap<IpAddr, String> = HashMap::new();
    for g in 0..m.gw_region.len() {
        for a in [m.gw_v4[g].map(IpAddr::V4), m.gw_v6[g].map(IpAddr::V6)]
            .into_iter()
            .flatten()
        {
            by_addr.insert(a, format!("g{g}"));
        }
    }
    let mut out = Vec::new();
    for svc in &m.services {
        for cs in &spec.clients {
            let (src, ecs, edns) = client(cs);
            let ecs_text = ecs.map(|(a, p)| format!("{a}/{p}"));
            let ex = gslb::explain::explain(&snap, &svc.name, src, ecs_text.as_deref())
                .map_err(|e| TestCaseError::fail(format!("explain: {e}")))?
                .to_json();
            for (qtype, fam) in [(RecordType::A, 0), (RecordType::AAAA, 1)] {
                let f = &ex["verdict"]["families"][fam];
                let ctx = || {
                    format!(
                        "{} {qtype} src {src} ecs {ecs:?}\nexplain: {f}\nconfig:\n{}",
                        svc.name, m.text
                    )
                };
                // gateway -> (share, region) as explain states them.
                let mut shares: HashMap<String, (f64, Option<String>)> = HashMap::new();
                for c in f["candidates"].as_array().unwrap() {
                    shares.insert(
                        c["gateway"].as_str().unwrap().to_string(),
                        (
                            c["share"].as_f64().unwrap(),
                            c["region"].as_str().map(String::from),
                        ),
                    );
                }
                // gateway -> the group explain says its answers are drawn within.
                let mut group_of: HashMap<String, usize> = HashMap::new();
                for (i, grp) in f["answer_groups"].as_array().unwrap().iter().enumerate() {
                    for g in grp.as_array().unwrap() {
                        group_of.insert(g.as_str().unwrap().to_string(), i);
                    }
                }
                prop_assert_eq!(group_of.len(), shares.len(), "{}", ctx());
                let bytes = query_bytes(&svc.name, qtype, ecs, edns);
                let mut first: HashMap<String, usize> = HashMap::new();
                for _ in 0..DRAWS {
                    let req = Request::from_bytes(
                        bytes.clone(),
                        SocketAddr::new(src, 5353),
                        Protocol::Udp,
                    )
                    .expect("query parses");
                    let outcome = handler
                        .respond(&req, Protocol::Udp, &mut out)
                        .expect("a reply");
                    prop_assert_eq!(
                        outcome.ecs_scope as u64,
                        ex["ecs_scope"].as_u64().unwrap(),
                        "{}",
                        ctx()
                    );
                    prop_assert_eq!(
                        format!("{:?}", outcome.decision.unwrap()),
                        f["decision"].as_str().unwrap(),
                        "{}",
                        ctx()
                    );
                    let reply = Message::from_vec(&out).expect("reply parses");
                    let gws: Vec<String> = reply
                        .answers
                        .iter()
                        .map(|r| match &r.data {
                            RData::A(a) => by_addr[&IpAddr::V4(a.0)].clone(),
                            RData::AAAA(a) => by_addr[&IpAddr::V6(a.0)].clone(),
                            other => panic!("odd record {other:?}"),
                        })
                        .collect();
                    prop_assert_eq!(gws.is_empty(), shares.is_empty(), "{}", ctx());
                    for g in &gws {
                        prop_assert!(
                            shares.contains_key(g),
                            "{} answered, not a candidate: {}",
                            g,
                            ctx()
                        );
                    }
                    let groups: BTreeSet<usize> = gws.iter().map(|g| group_of[g]).collect();
                    prop_assert!(
                        groups.len() <= 1,
                        "answer {:?} mixes groups: {}",
                        gws,
                        ctx()
                    );
                    if let Some(&grp) = groups.first()
                        && svc.answers > 1
                    {
                        // As many as the group holds, up to `answers`.
                        let size = group_of.values().filter(|&&x| x == grp).count();
                        prop_assert_eq!(gws.len(), size.min(svc.answers), "{}", ctx());
                    }
                    if let Some(g) = gws.first() {
                        *first.entry(g.clone()).or_default() += 1;
                    }
                }
                for (g, (share, _)) in &shares {
                    let got = first.get(g).copied().unwrap_or(0) as f64 / DRAWS as f64;
                    let sigma = (share * (1.0 - share) / DRAWS as f64).sqrt();
                    prop_assert!(
                        (got - share).abs() <= 5.0 * sigma + 1.0 / DRAWS as f64,
                        "{} is first in {:.3} of answers, explain says {:.3}: {}",
                        g,
                        got,
                        share,
                        ctx()
                    );
                }
            }
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy)]
struct Ep {
    gw: usize,
    weight: u32,
    region: Option<usize>,
    drained: bool,
    enabled: bool,
    ready: bool,
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 256,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn locality_answers_obey_health_reach_and_scope(spec in spec_strategy()) {
        check(&spec)?;
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 32,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn explain_agrees_with_the_answers(spec in spec_strategy()) {
        check_explain(&spec)?;
    }
}

/// The same properties on hand-picked corners, so they run whatever the generator draws.
#[test]
fn corners() {
    let c = |base, ecs, prefix, src_is_client| ClientSpec {
        base,
        bits: 0x0123_4567_89ab_cdef_0011_2233_4455_6677,
        ecs,
        prefix,
        src_is_client,
    };
    let clients = vec![
        c(0, 0, 0, true),                // 10.x by source
        c(2, 3, 24, false),              // 10.1.2.x by ECS /24 (the /24 wins)
        c(3, 3, 32, false),              // inside the /25
        c(4, 2, 0, true),                // ECS /0
        c(NETS.len(), 0, 0, true),       // a random v4
        c(NETS.len() + 1, 3, 48, false), // a random v6 by ECS
        c(8, 3, 56, true),               // 2001:db8:1::/48 by ECS
    ];
    let svc = |endpoints: Vec<(usize, u32)>, spill, panic, fail_closed| SvcSpec {
        endpoints,
        locality: 0,
        spill,
        factor: 1.4,
        panic,
        fail_closed,
        answers: 3,
        checked: true,
    };
    // Two regions; 10/8 and 0/0 to r0, 10.1/16 and 2001:db8:1::/48 to r1.
    let mut owner = vec![9; NETS.len()];
    owner[0] = 0;
    owner[6] = 0;
    owner[1] = 1;
    owner[8] = 1;
    let base = Spec {
        n_regions: 2,
        net_owner: owner,
        // r0 has no fallback: service 2 has nothing in r0's chain.
        fallback: vec![vec![], vec![0], vec![]],
        gateways: vec![(0, 2), (0, 0), (1, 2), (1, 1), (9, 0), (9, 2)],
        services: vec![
            svc(vec![(0, 1), (1, 1), (2, 1), (3, 1), (4, 1)], 0, None, false),
            svc(vec![(0, 1), (1, 1), (2, 1), (3, 2)], 1, Some(0.5), true),
            svc(vec![(2, 1), (3, 1), (4, 3), (5, 0)], 0, None, false),
        ],
        health: vec![true; MAX_GATEWAYS],
        overrides: vec![],
        clients,
    };
    let healths: [[bool; MAX_GATEWAYS]; 5] = [
        [true; MAX_GATEWAYS],
        [false, true, true, true, true, true],
        [false, false, true, true, true, true],
        [false, false, false, false, true, true],
        [false; MAX_GATEWAYS],
    ];
    for h in healths {
        for ov in [
            vec![],
            vec![(true, 0, 1, 0)],
            vec![(false, 1, 2, 0), (true, 0, 0, 1)],
        ] {
            let mut s = base.clone();
            s.health = h.to_vec();
            s.overrides = ov;
            check(&s).unwrap_or_else(|e| panic!("{e}"));
        }
    }
}
