//! The fast path: the common query read straight from the datagram and answered
//! straight into the reply buffer, with no parse into hickory's types and no heap
//! allocation. "Common" is one question of class IN and type A or AAAA, for a name
//! that has addresses to give (a service, or static data of that type), with at most
//! one OPT record whose options are an ECS option and a cookie. The answer is the
//! general path's: the same snapshot lookup, the same draw (`service::draw`, so the same
//! random numbers), the same cookie judgement and rate limiting, and records written
//! the way `wire` writes them (owner as a pointer to the question).
//!
//! Everything else, and anything unusual about such a query (an EDNS version, an
//! option we do not read, ECS that breaks RFC 7871's rules, a malformed cookie, bytes
//! after the message, a name with no answer), is left to the general path before
//! anything has been done: `respond` returns `None` with no effect on metrics, random
//! numbers or rate limiting. The differential test (`fast_tests.rs`) and the
//! `dns_differential` fuzz target check that both paths give the same bytes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, RData, Record, RecordType};
use hickory_server::net::xfer::Protocol;

use super::handler::Handler;
use super::service::draw;
use super::wire::QUESTION_POINTER;
use super::{cookie, rrl};
use crate::answer::{Client, Family, addresses};
use crate::plan::Net;
use crate::snapshot::{Node, WIRE_NAME_MAX};

/// A query the fast path may answer, as borrowed from the datagram.
#[derive(Debug, Clone, Copy)]
pub struct Query<'a> {
    raw: &'a [u8],
    /// Offset just past the question name's zero octet.
    name_end: usize,
    qtype: RecordType,
    family: Family,
    opt: Option<Opt<'a>>,
}

#[derive(Debug, Clone, Copy)]
struct Opt<'a> {
    /// The requestor's UDP payload size, as sent.
    payload: u16,
    ecs: Option<Ecs>,
    /// The COOKIE option's data, unjudged.
    cookie: Option<&'a [u8]>,
}

/// A well-formed ECS option (RFC 7871 §6): address bits past the prefix zero, exactly
/// the octets the prefix needs, SCOPE zero.
#[derive(Debug, Clone, Copy)]
struct Ecs {
    addr: IpAddr,
    prefix: u8,
}

const TYPE_OPT: u16 = 41;
const OPTION_ECS: u16 = 8;
const OPTION_COOKIE: u16 = 10;

fn u16_at(raw: &[u8], i: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?]))
}

/// Reads `raw` as a query for the fast path; `None` for anything else.
pub fn decode(raw: &[u8]) -> Option<Query<'_>> {
    let header = raw.get(..12)?;
    // QR=0 and OPCODE=QUERY; one question and nothing else but an OPT record.
    if header[2] & 0xf8 != 0
        || u16_at(raw, 4)? != 1
        || u16_at(raw, 6)? != 0
        || u16_at(raw, 8)? != 0
        || u16_at(raw, 10)? > 1
    {
        return None;
    }
    let mut at = 12;
    loop {
        let len = usize::from(*raw.get(at)?);
        at += 1;
        match len {
            0 => break,
            1..=63 => at += len,
            _ => return None, // a compression pointer or an extended label type
        }
        if at - 12 >= WIRE_NAME_MAX {
            return None;
        }
    }
    let name_end = at;
    let (qtype, family) = match u16_at(raw, at)? {
        1 => (RecordType::A, Family::V4),
        28 => (RecordType::AAAA, Family::V6),
        _ => return None,
    };
    if u16_at(raw, at + 2)? != 1 {
        return None; // class IN only
    }
    at += 4;
    let opt = if u16_at(raw, 10)? == 1 {
        let (opt, end) = decode_opt(raw, at)?;
        at = end;
        Some(opt)
    } else {
        None
    };
    (at == raw.len()).then_some(Query {
        raw,
        name_end,
        qtype,
        family,
        opt,
    })
}

/// The OPT record at `at`: its options and where it ends.
fn decode_opt(raw: &[u8], at: usize) -> Option<(Opt<'_>, usize)> {
    // Owner: the root. Extended RCODE and VERSION zero; the flags (DO) do not change
    // our reply.
    if *raw.get(at)? != 0 || u16_at(raw, at + 1)? != TYPE_OPT || u16_at(raw, at + 5)? != 0 {
        return None;
    }
    let payload = u16_at(raw, at + 3)?;
    let len = usize::from(u16_at(raw, at + 9)?);
    let rdata = raw.get(at + 11..at + 11 + len)?;
    let mut opt = Opt {
        payload,
        ecs: None,
        cookie: None,
    };
    let mut o = 0;
    while o < rdata.len() {
        let code = u16_at(rdata, o)?;
        let olen = usize::from(u16_at(rdata, o + 2)?);
        let data = rdata.get(o + 4..o + 4 + olen)?;
        match code {
            OPTION_ECS if opt.ecs.is_none() => opt.ecs = Some(decode_ecs(data)?),
            OPTION_COOKIE if opt.cookie.is_none() => opt.cookie = Some(data),
            _ => return None,
        }
        o += 4 + olen;
    }
    Some((opt, at + 11 + len))
}

fn decode_ecs(data: &[u8]) -> Option<Ecs> {
    let family = u16_at(data, 0)?;
    let prefix = *data.get(2)?;
    if *data.get(3)? != 0 {
        return None;
    }
    let address = data.get(4..)?;
    if address.len() != usize::from(prefix.div_ceil(8)) {
        return None;
    }
    let addr = match family {
        1 if prefix <= 32 => {
            let mut o = [0u8; 4];
            o[..address.len()].copy_from_slice(address);
            IpAddr::V4(Ipv4Addr::from(o))
        }
        2 if prefix <= 128 => {
            let mut o = [0u8; 16];
            o[..address.len()].copy_from_slice(address);
            IpAddr::V6(Ipv6Addr::from(o))
        }
        _ => return None,
    };
    Net::new(addr, prefix).ok()?;
    Some(Ecs { addr, prefix })
}

/// What the answer holds, decided before anything is written or counted.
enum Source<'s> {
    Service {
        service: crate::plan::ServiceId,
        pool: &'s crate::answer::Pool,
        scope: u8,
    },
    Static(&'s [Record]),
}

/// Answers `q` (from `src`) into `out`. `None`: not for the fast path, and nothing was
/// done; the caller answers with the general path. `Some(false)`: no reply (rate
/// limiting dropped it).
pub fn respond(
    handler: &Handler,
    q: &Query<'_>,
    src: SocketAddr,
    protocol: Protocol,
    out: &mut Vec<u8>,
) -> Option<bool> {
    let started = Instant::now();
    let snap = handler.state.load();
    let raw = q.raw;
    let name = &raw[12..q.name_end];
    let mut key = [0u8; WIRE_NAME_MAX];
    for (k, b) in key.iter_mut().zip(name) {
        *k = b.to_ascii_lowercase();
    }
    let (zone, node) = snap.zones.node_wire(&key[..name.len()])?;
    let server = &snap.plan.server;
    let ecs = q.opt.and_then(|o| o.ecs);
    let ecs_prefix = ecs.map(|e| (e.addr, e.prefix));
    let client = Client::new(src.ip(), ecs_prefix);
    let cookie = match q.opt.and_then(|o| o.cookie) {
        Some(c) if server.cookies => Some(cookie::split(c)?),
        _ => None,
    };
    let source = match node {
        Node::Service(s) => {
            let decided = snap.decide(s, client);
            let pool = decided.pool(q.family);
            if pool.candidates.is_empty() {
                return None; // NODATA: the general path adds the SOA
            }
            Source::Service {
                service: s,
                pool,
                scope: decided.scope,
            }
        }
        Node::Static(by_type) => {
            let (_, records) = by_type.iter().find(|(t, _)| *t == q.qtype)?;
            Source::Static(records)
        }
        Node::EmptyNonTerminal => return None,
    };

    // Header: QR, AA, the query's RD and CD; NOERROR; one question.
    out.clear();
    out.extend_from_slice(&raw[..2]);
    out.push(0x84 | (raw[2] & 0x01));
    out.push(raw[3] & 0x10);
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&raw[12..q.name_end + 4]);
    let question_end = out.len();
    let mut answers = 0u16;
    let mut ecs_scope = 0;
    match source {
        Source::Service {
            service,
            pool,
            scope,
        } => {
            let svc = &snap.plan.services[service];
            let drawn = draw(&snap, service, pool, (src.ip(), ecs_prefix), |c| {
                for ip in addresses(&snap.plan, svc, c.endpoint, q.family) {
                    put_ip(out, DNSClass::IN, svc.ttl, ip);
                    answers += 1;
                }
            });
            ecs_scope = scope.max(drawn);
        }
        Source::Static(records) => {
            for r in records {
                answers += put_address(out, r);
            }
        }
    }

    // The clock only for a query that carries a cookie, as on the general path.
    let now = if cookie.is_some() {
        (handler.cookie_clock)()
    } else {
        0
    };
    let secrets = handler.secrets(server);
    let verdict = cookie.map(|(client, srv)| secrets.verdict(client, srv, src.ip(), now));
    let mut slip = false;
    if let (Protocol::Udp, Some(limits)) = (protocol, &snap.plan.rrl)
        && verdict != Some(cookie::Verdict::Valid)
    {
        match handler.rrl.check(src.ip(), rrl::Kind::Answer, limits) {
            rrl::Action::Send => {}
            rrl::Action::Drop => {
                snap.metrics.rrl.dropped();
                return Some(false);
            }
            rrl::Action::Slip => {
                snap.metrics.rrl.slipped();
                slip = true;
            }
        }
    }

    let max_udp_payload = server.max_udp_payload;
    let limit = match protocol {
        Protocol::Udp => q
            .opt
            .map_or(512, |o| o.payload.max(512))
            .min(max_udp_payload),
        _ => u16::MAX,
    };
    let ecs_len = ecs.map_or(0, |e| 8 + usize::from(e.prefix.div_ceil(8)));
    let cookie_len = if cookie.is_some() { 4 + 24 } else { 0 };
    let opt_len = q.opt.map_or(0, |_| 11 + ecs_len + cookie_len);
    if slip || out.len() + opt_len > usize::from(limit) {
        // TC=1 and no records (RFC 1035 §4.2.1, RFC 6891 §7): retry over TCP.
        out.truncate(question_end);
        out[2] |= 0x02;
        answers = 0;
    }
    out[6..8].copy_from_slice(&answers.to_be_bytes());
    if q.opt.is_some() {
        out[11] = 1;
        out.extend_from_slice(&[0, 0, 41]);
        out.extend_from_slice(&max_udp_payload.to_be_bytes());
        out.extend_from_slice(&[0, 0, 0, 0]);
        out.extend_from_slice(&((ecs_len + cookie_len) as u16).to_be_bytes());
        if let Some(e) = ecs {
            // RFC 7871 §7.2.1: FAMILY, SOURCE PREFIX-LENGTH and ADDRESS echoed, SCOPE
            // the prefix the answer depended on.
            let octets = usize::from(e.prefix.div_ceil(8));
            out.extend_from_slice(&OPTION_ECS.to_be_bytes());
            out.extend_from_slice(&((4 + octets) as u16).to_be_bytes());
            let mut address = [0u8; 16];
            let family: u16 = match e.addr {
                IpAddr::V4(a) => {
                    address[..4].copy_from_slice(&a.octets());
                    1
                }
                IpAddr::V6(a) => {
                    address = a.octets();
                    2
                }
            };
            out.extend_from_slice(&family.to_be_bytes());
            out.extend_from_slice(&[e.prefix, ecs_scope]);
            out.extend_from_slice(&address[..octets]);
        }
        if let Some((client, _)) = cookie {
            out.extend_from_slice(&OPTION_COOKIE.to_be_bytes());
            out.extend_from_slice(&24u16.to_be_bytes());
            out.extend_from_slice(client);
            out.extend_from_slice(&cookie::server_cookie(&secrets.0[0], client, src.ip(), now));
        }
    }
    snap.metrics.request(
        Some(zone),
        super::handler::transport(protocol),
        Some(q.qtype),
        ResponseCode::NoError,
        started.elapsed().as_secs_f64(),
    );
    Some(true)
}

/// Writes an address record whose owner is the question name, as `wire` does: the
/// owner a pointer to the question, then type, class, TTL and RDATA. Returns the
/// records written: 1, or 0 for a record that is no address (a family's pool and a
/// static name's A or AAAA set hold addresses only).
fn put_address(out: &mut Vec<u8>, r: &Record) -> u16 {
    let ip = match &r.data {
        RData::A(a) => IpAddr::V4(a.0),
        RData::AAAA(a) => IpAddr::V6(a.0),
        _ => return 0,
    };
    put_ip(out, r.dns_class, r.ttl, ip);
    1
}

/// An A or AAAA record for `ip` whose owner is the question's name.
fn put_ip(out: &mut Vec<u8>, class: DNSClass, ttl: u32, ip: IpAddr) {
    let mut rdata = [0u8; 16];
    let (rtype, len): (u16, usize) = match ip {
        IpAddr::V4(a) => {
            rdata[..4].copy_from_slice(&a.octets());
            (1, 4)
        }
        IpAddr::V6(a) => {
            rdata = a.octets();
            (28, 16)
        }
    };
    out.extend_from_slice(&QUESTION_POINTER.to_be_bytes());
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&u16::from(class).to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(&rdata[..len]);
}
