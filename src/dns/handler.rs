//! Authoritative semantics: from a parsed request and the current snapshot to response
//! bytes. Synchronous and allocation-light; the socket loops in `server.rs` call it
//! directly, and `adapter.rs` wraps it as a hickory `RequestHandler`.

use std::time::Instant;

use hickory_proto::op::{Edns, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::BinEncoder;
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;
use hickory_server::zone_handler::MessageResponseBuilder;

use crate::answer::{Decision, Rng};
use crate::snapshot::{Node, Shared, Snapshot};

/// What happened to one request, for metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub rcode: ResponseCode,
    pub qtype: Option<RecordType>,
    pub zone: Option<usize>,
    pub truncated: bool,
    /// Set when a service answer was decided by fail-open.
    pub fail_open: bool,
}

pub struct Handler {
    state: Shared,
}

/// Sections of a response under construction; records borrow from the snapshot.
#[derive(Default)]
struct Sections<'a> {
    answers: Vec<&'a Record>,
    authorities: Vec<&'a Record>,
    additionals: Vec<&'a Record>,
}

impl Handler {
    pub fn new(state: Shared) -> Self {
        Handler { state }
    }

    pub fn state(&self) -> &Shared {
        &self.state
    }

    /// Answers `req` into `out` (cleared first). Returns `None` when nothing should be
    /// sent (the message was itself a response).
    pub fn respond(&self, req: &Request, protocol: Protocol, out: &mut Vec<u8>) -> Option<Outcome> {
        let started = Instant::now();
        let meta = &req.metadata;
        if meta.message_type == hickory_proto::op::MessageType::Response {
            return None; // never answer responses: that way lies reflection loops
        }
        let mut md = Metadata::response_from_request(meta);
        let mut outcome = Outcome {
            rcode: ResponseCode::NoError,
            qtype: None,
            zone: None,
            truncated: false,
            fail_open: false,
        };

        let snap = self.state.load();
        // Our own EDNS payload size, advertised and used as the ceiling for UDP.
        let max_udp_payload = snap.plan.server.max_udp_payload;
        let resp_edns = req.edns.as_ref().map(|e| response_edns(e, max_udp_payload));
        let mut sec = Sections::default();

        md.response_code = 'decide: {
            if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
                // RFC 6891 §6.1.3: unsupported EDNS version.
                break 'decide ResponseCode::BADVERS;
            }
            if meta.op_code != OpCode::Query {
                break 'decide ResponseCode::NotImp;
            }
            let queries = req.queries.queries();
            if queries.len() != 1 {
                break 'decide ResponseCode::FormErr;
            }
            let q = &queries[0];
            outcome.qtype = Some(q.query_type());
            if q.query_class() != DNSClass::IN {
                break 'decide ResponseCode::Refused;
            }
            if matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR) {
                // Zone transfers are not offered: the answers are dynamic anyway.
                outcome.zone = snap.zones.zone_of(q.name());
                break 'decide ResponseCode::Refused;
            }
            match lookup(&snap, q.name(), q.query_type(), &mut sec, &mut outcome) {
                Some(rcode) => {
                    md.authoritative = true;
                    rcode
                }
                None => ResponseCode::Refused,
            }
        };
        outcome.rcode = md.response_code;

        let limit = match protocol {
            Protocol::Udp => {
                let client = req.edns.as_ref().map_or(512, |e| e.max_payload().max(512));
                client.min(max_udp_payload)
            }
            _ => u16::MAX,
        };
        outcome.truncated = encode(req, md, resp_edns.as_ref(), &sec, limit, out);
        snap.metrics.request(
            outcome.zone,
            proto_index(protocol),
            outcome.qtype,
            outcome.rcode,
            started.elapsed().as_secs_f64(),
        );
        Some(outcome)
    }

    /// Counts a message that did not parse (answered with FORMERR or dropped).
    pub fn count_malformed(&self, protocol: Protocol) {
        self.state.load().metrics.request(
            None,
            proto_index(protocol),
            None,
            ResponseCode::FormErr,
            0.0,
        );
    }
}

/// Our OPT record: our payload size, version 0, and the client's ECS echoed.
fn response_edns(req: &Edns, max_udp_payload: u16) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(max_udp_payload);
    e.set_version(0);
    e.set_dnssec_ok(false);
    if let Some(EdnsOption::Subnet(ecs)) = req.option(EdnsCode::Subnet) {
        // RFC 7871 §7.2.1: echo FAMILY, SOURCE PREFIX-LENGTH and ADDRESS. No answer
        // here depends on the client yet, so SCOPE PREFIX-LENGTH is 0 (§7.2.1: "the
        // answer is suitable for all addresses").
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            ecs.addr(),
            ecs.source_prefix(),
            0,
        )));
    }
    e
}

fn proto_index(p: Protocol) -> usize {
    match p {
        Protocol::Udp => 0,
        _ => 1,
    }
}

/// Fills `sec` for `name`/`qtype`. Returns the rcode, or `None` when the name is outside
/// all our zones (REFUSED, not authoritative).
fn lookup<'a>(
    snap: &'a Snapshot,
    name: &LowerName,
    qtype: RecordType,
    sec: &mut Sections<'a>,
    outcome: &mut Outcome,
) -> Option<ResponseCode> {
    let Some((zone, node)) = snap.zones.nodes.get(name) else {
        let zone = snap.zones.zone_of(name)?;
        outcome.zone = Some(zone);
        sec.authorities.push(&snap.zones.negative_soa[zone]);
        return Some(ResponseCode::NXDomain);
    };
    outcome.zone = Some(*zone);
    let found = match node {
        Node::Service(s) => service_answer(snap, *s, qtype, sec, outcome),
        Node::Static(by_type) => static_answer(snap, *zone, by_type, qtype, sec, outcome),
        Node::EmptyNonTerminal => false,
    };
    if !found {
        // NODATA: NOERROR, empty answer, SOA in authority (RFC 2308 §2.2).
        sec.authorities.push(&snap.zones.negative_soa[*zone]);
    }
    Some(ResponseCode::NoError)
}

fn service_answer<'a>(
    snap: &'a Snapshot,
    s: usize,
    qtype: RecordType,
    sec: &mut Sections<'a>,
    outcome: &mut Outcome,
) -> bool {
    let table = &snap.services[s];
    let pool = match qtype {
        RecordType::A | RecordType::ANY => &table.v4,
        RecordType::AAAA => &table.v6,
        _ => return false,
    };
    outcome.fail_open = pool.decision == Decision::FailOpen;
    let n = snap.plan.services[s].answers;
    let before = sec.answers.len();
    Rng::with_thread(|rng| {
        pool.draw(n, rng, |i| {
            sec.answers.extend(pool.candidates[i].records.iter())
        });
    });
    sec.answers.len() > before
}

fn static_answer<'a>(
    snap: &'a Snapshot,
    zone: usize,
    by_type: &'a [(RecordType, Vec<Record>)],
    qtype: RecordType,
    sec: &mut Sections<'a>,
    outcome: &mut Outcome,
) -> bool {
    let of_type = |t: RecordType| by_type.iter().find(|(rt, _)| *rt == t).map(|(_, v)| v);
    if qtype == RecordType::ANY {
        // RFC 8482: a minimal answer is fine; give one RRset rather than everything.
        if let Some((_, v)) = by_type.first() {
            sec.answers.extend(v.iter());
            return true;
        }
        return false;
    }
    if let Some(v) = of_type(qtype) {
        sec.answers.extend(v.iter());
        if qtype == RecordType::NS {
            sec.additionals.extend(snap.plan.zones[zone].glue.iter());
        }
        return true;
    }
    if let Some(cname) = of_type(RecordType::CNAME).and_then(|v| v.first()) {
        sec.answers.push(cname);
        // Follow the alias one step when the target is ours, so a resolver gets the
        // final address in one round trip (RFC 1034 §4.3.2 step 3a).
        if let RData::CNAME(target) = &cname.data
            && let Some((_, node)) = snap.zones.nodes.get(&LowerName::new(&target.0))
        {
            match node {
                Node::Service(s) => {
                    service_answer(snap, *s, qtype, sec, outcome);
                }
                Node::Static(t) => {
                    if let Some((_, v)) = t.iter().find(|(rt, _)| *rt == qtype) {
                        sec.answers.extend(v.iter());
                    }
                }
                Node::EmptyNonTerminal => {}
            }
        }
        return true;
    }
    false
}

/// Encodes the response. When it does not fit in `limit`, sends the header, question and
/// OPT only, with TC set, so that the client retries over TCP (RFC 1035 §4.2.1,
/// RFC 6891 §7). Returns whether the response was truncated.
fn encode(
    req: &Request,
    md: Metadata,
    edns: Option<&Edns>,
    sec: &Sections<'_>,
    limit: u16,
    out: &mut Vec<u8>,
) -> bool {
    let emit = |out: &mut Vec<u8>, md: Metadata, full: bool| {
        out.clear();
        let mut enc = BinEncoder::new(out);
        enc.set_max_size(limit);
        let mut builder = MessageResponseBuilder::new(&req.queries, None);
        if let Some(e) = edns {
            builder.edns(e);
        }
        let (a, n, d): (&[&Record], &[&Record], &[&Record]) = if full {
            (&sec.answers, &sec.authorities, &sec.additionals)
        } else {
            (&[], &[], &[])
        };
        builder
            .build(
                md,
                a.iter().copied(),
                n.iter().copied(),
                std::iter::empty(),
                d.iter().copied(),
            )
            .destructive_emit(&mut enc)
    };
    match emit(out, md, true) {
        Ok(info) if !info.truncation => false,
        _ => {
            let mut md = md;
            md.truncation = true;
            if emit(out, md, false).is_err() {
                // Even the question does not fit (cannot happen with a 512-byte floor and
                // a parsed name, but never send garbage): header only.
                out.clear();
                out.extend_from_slice(&error_header(req.metadata.id, md, ResponseCode::ServFail));
            }
            true
        }
    }
}

/// A bare 12-byte response header (counts zero) for `md` with `rcode`.
fn error_header(id: u16, md: Metadata, rcode: ResponseCode) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0..2].copy_from_slice(&id.to_be_bytes());
    h[2] = 0x80
        | (u8::from(md.op_code) << 3)
        | (u8::from(md.truncation) << 1)
        | u8::from(md.recursion_desired);
    h[3] = (u8::from(md.checking_disabled) << 4) | (u16::from(rcode) as u8 & 0x0f);
    h
}

/// The reply to a message that did not parse: FORMERR with the client's ID and opcode
/// (RFC 1035 §4.1.1), or `None` when it should be dropped: shorter than a header, or
/// itself a response (answering those invites reflection loops).
pub fn formerr_reply(raw: &[u8]) -> Option<[u8; 12]> {
    if raw.len() < 12 || raw[2] & 0x80 != 0 {
        return None;
    }
    let mut h = [0u8; 12];
    h[0..2].copy_from_slice(&raw[0..2]);
    // QR=1, the client's opcode and RD; RCODE=FORMERR(1).
    h[2] = 0x80 | (raw[2] & 0x79);
    h[3] = u16::from(ResponseCode::FormErr) as u8;
    Some(h)
}
