//! Authoritative semantics: from a parsed request and the current snapshot to response
//! bytes. Synchronous, lock-free (one `ArcSwap::load`), with records borrowed from the
//! snapshot; the socket loops in `server.rs` call it directly for every query. It still
//! allocates a little per query (the section vectors, the response OPT): the
//! zero-allocation fast path for plain A/AAAA is future work.

use std::time::Instant;

use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use crate::answer::{Client, Decision, Family};
use crate::plan::Net;
use crate::rng::Rng;
use crate::snapshot::{Node, Shared, Snapshot};

/// What happened to one request, for metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub rcode: ResponseCode,
    pub qtype: Option<RecordType>,
    pub zone: Option<usize>,
    pub truncated: bool,
    /// How a service answer's candidates were decided, if a service answered.
    pub decision: Option<Decision>,
    /// ECS SCOPE PREFIX-LENGTH of the reply (RFC 7871 §7.2.1).
    pub ecs_scope: u8,
}

pub struct Handler {
    state: Shared,
}

impl Handler {
    pub fn new(state: Shared) -> Self {
        Handler { state }
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
        let snap = self.state.load();
        let ecs = match req.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
            Some(EdnsOption::Subnet(c)) => Some(*c),
            _ => None,
        };
        let client = Client::new(req.src().ip(), ecs.map(|c| (c.addr(), c.source_prefix())));
        let mut ans = Answer::new(&snap, client);

        md.response_code = 'decide: {
            if req.edns.as_ref().is_some_and(|e| e.version() > 0) {
                // RFC 6891 §6.1.3: unsupported EDNS version.
                break 'decide ResponseCode::BADVERS;
            }
            if let Some(c) = ecs
                && (Net::new(c.addr(), c.source_prefix()).is_err()
                    || ecs_address_octets(req.as_slice())
                        != Some(usize::from(c.source_prefix().div_ceil(8))))
            {
                // RFC 7871 §6, §7.1.1: address bits beyond SOURCE PREFIX-LENGTH must be
                // zero, and ADDRESS must have exactly the octets the prefix needs;
                // "otherwise [the server] SHOULD return FORMERR". hickory reads only
                // those octets and drops the rest, so the rest is counted on the wire:
                // 10.1.2.3/24 arrives as four octets and must not pass as 10.1.2.0/24.
                break 'decide ResponseCode::FormErr;
            }
            if meta.op_code != OpCode::Query {
                break 'decide ResponseCode::NotImp;
            }
            let queries = req.queries.queries();
            if queries.len() != 1 {
                break 'decide ResponseCode::FormErr;
            }
            let q = &queries[0];
            ans.outcome.qtype = Some(q.query_type());
            if q.query_class() != DNSClass::IN {
                break 'decide ResponseCode::Refused;
            }
            if matches!(q.query_type(), RecordType::AXFR | RecordType::IXFR) {
                // Zone transfers are not offered: the answers are dynamic anyway.
                ans.outcome.zone = snap.zones.zone_of(q.name());
                break 'decide ResponseCode::Refused;
            }
            match ans.lookup(q.name(), q.query_type()) {
                Some(rcode) => {
                    md.authoritative = true;
                    rcode
                }
                None => ResponseCode::Refused,
            }
        };
        ans.outcome.rcode = md.response_code;

        // Our own EDNS payload size, advertised and used as the ceiling for UDP.
        let max_udp_payload = snap.plan.server.max_udp_payload;
        let resp_edns = req
            .edns
            .as_ref()
            .map(|_| response_edns(max_udp_payload, ecs, ans.outcome.ecs_scope));
        let limit = match protocol {
            Protocol::Udp => {
                let client = req.edns.as_ref().map_or(512, |e| e.max_payload().max(512));
                client.min(max_udp_payload)
            }
            _ => u16::MAX,
        };
        ans.outcome.truncated = encode(req, md, resp_edns.as_ref(), &ans, limit, out);
        snap.metrics.request(
            ans.outcome.zone,
            proto_index(protocol),
            ans.outcome.qtype,
            ans.outcome.rcode,
            started.elapsed().as_secs_f64(),
        );
        Some(ans.outcome)
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

/// The number of ADDRESS octets of the first ECS option as sent, from the raw message
/// (which hickory has already parsed, so it is well-formed up to the options).
fn ecs_address_octets(raw: &[u8]) -> Option<usize> {
    let u16_at = |i: usize| Some(u16::from_be_bytes([*raw.get(i)?, *raw.get(i + 1)?]) as usize);
    let skip_name = |mut i: usize| -> Option<usize> {
        loop {
            let len = *raw.get(i)? as usize;
            match len {
                0 => return Some(i + 1),
                l if l & 0xc0 == 0xc0 => return Some(i + 2),
                l => i += 1 + l,
            }
        }
    };
    let mut pos = 12;
    for _ in 0..u16_at(4)? {
        pos = skip_name(pos)? + 4;
    }
    let records = u16_at(6)? + u16_at(8)? + u16_at(10)?;
    for _ in 0..records {
        let rdata = skip_name(pos)? + 10;
        let rdlen = u16_at(rdata - 2)?;
        if u16_at(rdata - 10)? == 41 {
            let mut o = rdata;
            while o + 4 <= rdata + rdlen {
                let olen = u16_at(o + 2)?;
                if u16_at(o)? == 8 {
                    return olen.checked_sub(4);
                }
                o += 4 + olen;
            }
            return None;
        }
        pos = rdata + rdlen;
    }
    None
}

/// Our OPT record: our payload size, version 0, and the client's ECS echoed with the
/// scope the answer depended on.
fn response_edns(max_udp_payload: u16, ecs: Option<ClientSubnet>, scope: u8) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(max_udp_payload);
    e.set_version(0);
    e.set_dnssec_ok(false);
    if let Some(c) = ecs {
        // RFC 7871 §7.2.1: echo FAMILY, SOURCE PREFIX-LENGTH and ADDRESS; SCOPE is the
        // prefix length the answer is valid for (0: valid for every client).
        e.options_mut().insert(EdnsOption::Subnet(ClientSubnet::new(
            c.addr(),
            c.source_prefix(),
            scope,
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

/// A response under construction; records borrow from the snapshot.
struct Answer<'a> {
    snap: &'a Snapshot,
    client: Client,
    answers: Vec<&'a Record>,
    authorities: Vec<&'a Record>,
    additionals: Vec<&'a Record>,
    outcome: Outcome,
    /// The rcode at the end of an in-zone CNAME chain, when it is not NOERROR.
    chain_rcode: Option<ResponseCode>,
}

impl<'a> Answer<'a> {
    fn new(snap: &'a Snapshot, client: Client) -> Self {
        Answer {
            snap,
            client,
            answers: Vec::new(),
            authorities: Vec::new(),
            additionals: Vec::new(),
            chain_rcode: None,
            outcome: Outcome {
                rcode: ResponseCode::NoError,
                qtype: None,
                zone: None,
                truncated: false,
                decision: None,
                ecs_scope: 0,
            },
        }
    }

    /// Fills the sections for `name`/`qtype`. Returns the rcode, or `None` when the
    /// name is outside all our zones (REFUSED, not authoritative).
    fn lookup(&mut self, name: &LowerName, qtype: RecordType) -> Option<ResponseCode> {
        let snap = self.snap;
        let Some((zone, node)) = snap.zones.nodes.get(name) else {
            let zone = snap.zones.zone_of(name)?;
            self.outcome.zone = Some(zone);
            self.authorities.push(&snap.zones.negative_soa[zone]);
            return Some(ResponseCode::NXDomain);
        };
        self.outcome.zone = Some(*zone);
        let found = match node {
            Node::Service(s) => self.service(*s, qtype),
            Node::Static(by_type) => self.static_data(*zone, by_type, qtype),
            Node::EmptyNonTerminal => false,
        };
        if !found {
            // NODATA: NOERROR, empty answer, SOA in authority (RFC 2308 §2.2).
            self.authorities.push(&snap.zones.negative_soa[*zone]);
        }
        Some(self.chain_rcode.unwrap_or(ResponseCode::NoError))
    }

    fn service(&mut self, s: usize, qtype: RecordType) -> bool {
        let snap = self.snap;
        let svc = &snap.plan.services[s];
        let decided = snap.decide(s, self.client);
        self.outcome.ecs_scope = decided.scope;
        let Some(family) = Family::of(qtype) else {
            return false;
        };
        let pool = decided.pool(family);
        self.outcome.decision = Some(pool.decision);
        match pool.decision {
            Decision::FailOpen => snap.metrics.fail_open(s),
            Decision::Panic => snap.metrics.panic(s),
            _ => {}
        }
        let before = self.answers.len();
        let answers = &mut self.answers;
        Rng::with_thread(|rng| {
            pool.draw(svc.answers, rng, |i| {
                let c = &pool.candidates[i];
                snap.metrics.answered(s, c.endpoint);
                answers.extend(c.records.iter());
            });
        });
        self.answers.len() > before
    }

    fn static_data(
        &mut self,
        zone: usize,
        by_type: &'a [(RecordType, Vec<Record>)],
        qtype: RecordType,
    ) -> bool {
        let snap = self.snap;
        let of_type = |t: RecordType| by_type.iter().find(|(rt, _)| *rt == t).map(|(_, v)| v);
        if qtype == RecordType::ANY {
            // RFC 8482: a minimal answer is fine; give one RRset rather than everything.
            if let Some((_, v)) = by_type.first() {
                self.answers.extend(v.iter());
                return true;
            }
            return false;
        }
        if let Some(v) = of_type(qtype) {
            self.answers.extend(v.iter());
            if qtype == RecordType::NS {
                self.additionals.extend(snap.plan.zones[zone].glue.iter());
            }
            return true;
        }
        if let Some(cname) = of_type(RecordType::CNAME).and_then(|v| v.first()) {
            self.answers.push(cname);
            // Follow the alias one step when the target is ours, so a resolver gets the
            // final address in one round trip (RFC 1034 §4.3.2 step 3a).
            // The rcode and negative data then describe the end of the chain (RFC 6604
            // §2.1, RFC 2308 §2.1/§2.2): NXDOMAIN when the target does not exist, and
            // the target zone's SOA when it has no data of this type.
            if let RData::CNAME(target) = &cname.data {
                let target = LowerName::new(&target.0);
                match snap.zones.nodes.get(&target) {
                    Some((tz, node)) => {
                        let found = match node {
                            Node::Service(s) => self.service(*s, qtype),
                            Node::Static(t) => match t.iter().find(|(rt, _)| *rt == qtype) {
                                Some((_, v)) => {
                                    self.answers.extend(v.iter());
                                    true
                                }
                                None => false,
                            },
                            Node::EmptyNonTerminal => false,
                        };
                        if !found {
                            self.authorities.push(&snap.zones.negative_soa[*tz]);
                        }
                    }
                    None => {
                        if let Some(tz) = snap.zones.zone_of(&target) {
                            self.chain_rcode = Some(ResponseCode::NXDomain);
                            self.authorities.push(&snap.zones.negative_soa[tz]);
                        }
                        // Outside our zones: the resolver follows the alias itself.
                    }
                }
            }
            return true;
        }
        false
    }
}

/// Encodes the response. When it does not fit in `limit`, sends the header, question and
/// OPT only, with TC set, so that the client retries over TCP (RFC 1035 §4.2.1,
/// RFC 6891 §7). Returns whether the response was truncated.
fn encode(
    req: &Request,
    md: Metadata,
    edns: Option<&Edns>,
    ans: &Answer<'_>,
    limit: u16,
    out: &mut Vec<u8>,
) -> bool {
    if emit(req, md, edns, ans, limit, true, out).is_ok() {
        return false;
    }
    let mut md = md;
    md.truncation = true;
    if emit(req, md, edns, ans, limit, false, out).is_err() {
        // Even the question does not fit (cannot happen with a 512-byte floor and a
        // parsed name, but never send garbage): header only.
        out.clear();
        out.extend_from_slice(&error_header(req.metadata.id, md, ResponseCode::ServFail));
    }
    true
}

/// Writes one message. The question is copied as it came (its letter case included:
/// resolvers that randomise case, draft-vixie-dnsext-dns0x20, compare it), and its name
/// is registered for compression so that answer owner names become 2-byte pointers.
fn emit(
    req: &Request,
    md: Metadata,
    edns: Option<&Edns>,
    ans: &Answer<'_>,
    limit: u16,
    with_records: bool,
    out: &mut Vec<u8>,
) -> Result<(), ProtoError> {
    out.clear();
    let mut enc = BinEncoder::new(out);
    enc.set_max_size(limit);
    let place = enc.place::<Header>()?;
    let question = req.queries.as_bytes();
    enc.emit_vec(question)?;
    let qcount = req.queries.len();
    if qcount == 1 && question.len() > 4 {
        register_name(&mut enc, 12, question);
    }
    let (a, n, d): (&[&Record], &[&Record], &[&Record]) = if with_records {
        (&ans.answers, &ans.authorities, &ans.additionals)
    } else {
        (&[], &[], &[])
    };
    for r in a.iter().chain(n).chain(d) {
        r.emit(&mut enc)?;
    }
    let mut additionals = d.len();
    if let Some(e) = edns {
        let mut e = e.clone();
        // The high 8 bits of an extended RCODE travel in the OPT record (RFC 6891 §6.1.3).
        e.set_rcode_high(md.response_code.high());
        Record::from(&e).emit(&mut enc)?;
        additionals += 1;
    }
    let header = Header {
        metadata: md,
        counts: HeaderCounts {
            queries: qcount as u16,
            answers: a.len() as u16,
            authorities: n.len() as u16,
            additionals: additionals as u16,
        },
    };
    place.replace(&mut enc, header)?;
    Ok(())
}

/// Registers each label suffix of the question name (which starts at `start` in the
/// message, and is `question` minus its 4 bytes of type and class) as a compression
/// target, the way hickory's encoder does for names it writes itself.
fn register_name(enc: &mut BinEncoder<'_>, start: usize, question: &[u8]) {
    let name_end = question.len() - 4; // includes the root label's zero byte
    let mut i = 0;
    while i < name_end {
        let len = question[i] as usize;
        if len == 0 || len > 63 {
            break;
        }
        // Stored without the trailing zero, as `Name::emit` compares them.
        enc.store_label_pointer(start + i, start + name_end - 1);
        i += 1 + len;
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
