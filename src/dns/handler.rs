//! Authoritative semantics: from a parsed request and the current snapshot to response
//! bytes. Synchronous, lock-free (one `ArcSwap::load`), with records borrowed from the
//! snapshot; the socket loops in `server.rs` call it for every query the fast path
//! (`fast.rs`: plain A/AAAA with an answer, no allocation) leaves to it. This general
//! path still allocates a little per query (the parsed request, the section vectors,
//! the response OPT).

use std::time::Instant;

use hickory_proto::op::{Metadata, OpCode, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::Request;

use crate::answer::{self, Client, Decision, Family};
use crate::metrics::{Dropped, Transport};
use crate::plan::{Net, ServiceId, ZoneId};
use crate::snapshot::{Node, Shared, Snapshot};

use super::service::{KeyedBy, draw};
use super::wire::{Rr, Sections, ecs_address_octets, encode, response_edns};
use super::{cookie, rrl};

/// What happened to one request, for metrics and logs.
#[derive(Debug, Clone, Copy)]
pub struct Outcome {
    pub rcode: ResponseCode,
    pub qtype: Option<RecordType>,
    pub zone: Option<ZoneId>,
    pub truncated: bool,
    /// How a service answer's candidates were decided, if a service answered.
    pub decision: Option<Decision>,
    /// ECS SCOPE PREFIX-LENGTH of the reply (RFC 7871 §7.2.1).
    pub ecs_scope: u8,
    /// What the query's DNS cookie said, when it had a well-formed one.
    pub cookie: Option<cookie::Verdict>,
}

pub struct Handler {
    pub(super) state: Shared,
    /// The cookie secret when the config gives none: random, for this process.
    own_secret: [[u8; 16]; 1],
    pub(super) rrl: rrl::Limiter,
    /// Unix seconds mod 2^32, for cookie timestamps.
    pub(super) cookie_clock: fn() -> u32,
}

impl Handler {
    pub fn new(state: Shared) -> Self {
        Handler {
            state,
            own_secret: [cookie::random_secret()],
            rrl: rrl::Limiter::new(),
            cookie_clock: cookie::unix_now,
        }
    }

    /// This handler with cookie timestamps from `clock` instead of the system clock:
    /// for tests that compare replies byte for byte.
    pub fn with_cookie_clock(mut self, clock: fn() -> u32) -> Self {
        self.cookie_clock = clock;
        self
    }

    /// The cookie secrets: the configured ones, or this process's own.
    pub(super) fn secrets<'a>(
        &'a self,
        server: &'a crate::plan::ServerSettings,
    ) -> cookie::Secrets<'a> {
        cookie::Secrets(if server.cookie_secrets.is_empty() {
            &self.own_secret
        } else {
            &server.cookie_secrets
        })
    }

    /// Answers `req` into `out` (cleared first). Returns `None` when nothing should be
    /// sent (the message was itself a response, or rate limiting dropped the reply).
    pub fn respond(&self, req: &Request, protocol: Protocol, out: &mut Vec<u8>) -> Option<Outcome> {
        let started = Instant::now();
        let meta = &req.metadata;
        if meta.message_type == hickory_proto::op::MessageType::Response {
            // Never answer responses: that way lies reflection loops.
            self.state.load().metrics.dropped(Dropped::Response);
            return None;
        }
        let mut md = Metadata::response_from_request(meta);
        let snap = self.state.load();
        let ecs = match req.edns.as_ref().and_then(|e| e.option(EdnsCode::Subnet)) {
            Some(EdnsOption::Subnet(c)) => Some(*c),
            _ => None,
        };
        let ecs_prefix = ecs.map(|c| (c.addr(), c.source_prefix()));
        let client = Client::new(req.src().ip(), ecs_prefix);
        let mut ans = Answer::new(&snap, client, (req.src().ip(), ecs_prefix));

        // DNS Cookies (RFC 7873): judged here, echoed with a fresh server cookie below.
        let server = &snap.plan.server;
        let cookie = match req.edns.as_ref().and_then(|e| e.option(EdnsCode::Cookie)) {
            Some(EdnsOption::Unknown(_, data)) if server.cookies => Some(cookie::split(data)),
            _ => None,
        };
        let secrets = self.secrets(server);
        // The clock only for a query that carries a cookie.
        let now = if matches!(cookie, Some(Some(_))) {
            (self.cookie_clock)()
        } else {
            0
        };
        let verdict = match cookie {
            Some(Some((client, srv))) => Some(secrets.verdict(client, srv, req.src().ip(), now)),
            _ => None,
        };
        ans.outcome.cookie = verdict;

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
            if cookie == Some(None) {
                // RFC 7873 §5.2.2: a COOKIE option of a length no cookie has.
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
            if q.query_class() == DNSClass::CH {
                // id.server. and friends: which replica answered (RFC 4892).
                let Some(r) = snap.zones.chaos.get(q.name()) else {
                    break 'decide ResponseCode::Refused;
                };
                md.authoritative = true;
                if matches!(q.query_type(), RecordType::TXT | RecordType::ANY) {
                    ans.answers.push(Rr::Stored(r));
                }
                break 'decide ResponseCode::NoError;
            }
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

        // Response rate limiting: UDP only (TCP proves the address), and not for a
        // client whose cookie proves it.
        if let (Protocol::Udp, Some(limits)) = (protocol, &snap.plan.rrl)
            && ans.outcome.cookie != Some(cookie::Verdict::Valid)
        {
            let kind = match md.response_code {
                ResponseCode::NoError => rrl::Kind::Answer,
                ResponseCode::NXDomain => rrl::Kind::NxDomain,
                _ => rrl::Kind::Error,
            };
            match self.rrl.check(req.src().ip(), kind, limits) {
                rrl::Action::Send => {}
                rrl::Action::Drop => {
                    snap.metrics.rrl.dropped();
                    return None;
                }
                rrl::Action::Slip => {
                    snap.metrics.rrl.slipped();
                    md.truncation = true;
                    ans.answers.clear();
                    ans.authorities.clear();
                    ans.additionals.clear();
                }
            }
        }

        // Our own EDNS payload size, advertised and used as the ceiling for UDP.
        let max_udp_payload = snap.plan.server.max_udp_payload;
        let resp_edns = req.edns.as_ref().map(|e| {
            let mut out = response_edns(max_udp_payload, ecs, ans.outcome.ecs_scope);
            // The high 8 bits of an extended RCODE travel in the OPT record (RFC 6891
            // §6.1.3).
            out.set_rcode_high(md.response_code.high());
            if let Some(Some((client, _))) = cookie {
                let reply = secrets.reply(client, req.src().ip(), now);
                out.options_mut()
                    .insert(EdnsOption::Unknown(u16::from(EdnsCode::Cookie), reply));
            }
            // RFC 5001: the NSID only to a query that asked for it.
            if let Some(id) = &server.nsid
                && e.option(EdnsCode::NSID).is_some()
                && let Ok(p) = NSIDPayload::new(id.as_bytes())
            {
                out.options_mut().insert(EdnsOption::NSID(p));
            }
            out
        });
        let limit = match protocol {
            Protocol::Udp => {
                let client = req.edns.as_ref().map_or(512, |e| e.max_payload().max(512));
                client.min(max_udp_payload)
            }
            _ => u16::MAX,
        };
        let sections = Sections {
            answers: &ans.answers,
            authorities: &ans.authorities,
            additionals: &ans.additionals,
        };
        ans.outcome.truncated = encode(req, md, resp_edns.as_ref(), sections, limit, out);
        snap.metrics.request(
            ans.outcome.zone,
            transport(protocol),
            ans.outcome.qtype,
            ans.outcome.rcode,
            started.elapsed().as_secs_f64(),
        );
        Some(ans.outcome)
    }

    /// Counts a message that did not parse (answered with FORMERR or dropped).
    /// Counts a message that gets no reply at all: shorter than a header, or a
    /// response that did not parse.
    pub fn count_dropped(&self, raw: &[u8]) {
        let why = if raw.len() < 12 {
            Dropped::Runt
        } else {
            Dropped::Response
        };
        self.state.load().metrics.dropped(why);
    }

    pub fn count_malformed(&self, protocol: Protocol) {
        self.state.load().metrics.request(
            None,
            transport(protocol),
            None,
            ResponseCode::FormErr,
            0.0,
        );
    }
}

pub(super) fn transport(p: Protocol) -> Transport {
    match p {
        Protocol::Udp => Transport::Udp,
        _ => Transport::Tcp,
    }
}

/// The most aliases one answer gives for an in-zone CNAME chain.
const MAX_CHAIN: usize = 8;

/// A response under construction; records borrow from the snapshot.
struct Answer<'a> {
    snap: &'a Snapshot,
    client: Client,
    /// The resolver and the ECS prefix, for services with consistent selection.
    keyed_by: KeyedBy,
    answers: Vec<Rr<'a>>,
    authorities: Vec<&'a Record>,
    additionals: Vec<&'a Record>,
    outcome: Outcome,
    /// The rcode at the end of an in-zone CNAME chain, when it is not NOERROR.
    chain_rcode: Option<ResponseCode>,
}

impl<'a> Answer<'a> {
    fn new(snap: &'a Snapshot, client: Client, keyed_by: KeyedBy) -> Self {
        Answer {
            snap,
            client,
            keyed_by,
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
                cookie: None,
            },
        }
    }

    /// Fills the sections for `name`/`qtype`. Returns the rcode, or `None` when the
    /// name is outside all our zones (REFUSED, not authoritative).
    fn lookup(&mut self, name: &LowerName, qtype: RecordType) -> Option<ResponseCode> {
        let snap = self.snap;
        let Some((zone, node)) = snap.zones.node(name) else {
            let zone = snap.zones.zone_of(name)?;
            self.outcome.zone = Some(zone);
            self.authorities.push(snap.zones.negative_soa(zone));
            return Some(ResponseCode::NXDomain);
        };
        self.outcome.zone = Some(zone);
        let found = match node {
            Node::Service(s) => self.service(s, qtype),
            Node::Static(by_type) => self.static_data(zone, by_type, qtype),
            Node::EmptyNonTerminal => false,
        };
        if !found {
            // NODATA: NOERROR, empty answer, SOA in authority (RFC 2308 §2.2).
            self.authorities.push(snap.zones.negative_soa(zone));
        }
        Some(self.chain_rcode.unwrap_or(ResponseCode::NoError))
    }

    fn service(&mut self, s: ServiceId, qtype: RecordType) -> bool {
        let snap = self.snap;
        let decided = snap.decide(s, self.client);
        self.outcome.ecs_scope = decided.scope;
        let Some(family) = Family::of(qtype) else {
            return false;
        };
        let pool = decided.pool(family);
        self.outcome.decision = Some(pool.decision);
        let before = self.answers.len();
        let answers = &mut self.answers;
        let svc = &snap.plan.services[s];
        let scope = draw(snap, s, pool, self.keyed_by, |c| {
            answers.extend(
                answer::addresses(&snap.plan, svc, c.endpoint, family).map(|ip| Rr::Address {
                    owner: &svc.name,
                    ttl: svc.ttl,
                    ip,
                }),
            )
        });
        self.outcome.ecs_scope = self.outcome.ecs_scope.max(scope);
        self.answers.len() > before
    }

    fn static_data(
        &mut self,
        zone: ZoneId,
        by_type: &'a [(RecordType, Vec<Record>)],
        qtype: RecordType,
    ) -> bool {
        let snap = self.snap;
        let of_type = |t: RecordType| by_type.iter().find(|(rt, _)| *rt == t).map(|(_, v)| v);
        if qtype == RecordType::ANY {
            // RFC 8482: a minimal answer is fine; give one RRset rather than everything.
            if let Some((_, v)) = by_type.first() {
                self.answers.extend(v.iter().map(Rr::Stored));
                return true;
            }
            return false;
        }
        if let Some(v) = of_type(qtype) {
            self.answers.extend(v.iter().map(Rr::Stored));
            if qtype == RecordType::NS {
                self.additionals.extend(snap.plan.zones[zone].glue.iter());
            }
            return true;
        }
        if let Some(cname) = of_type(RecordType::CNAME).and_then(|v| v.first()) {
            self.follow(cname, qtype);
            return true;
        }
        false
    }

    /// Answers an alias and follows its in-zone chain, up to [`MAX_CHAIN`] aliases, so
    /// a resolver gets the final address in one round trip (RFC 1034 §4.3.2 step 3a).
    /// The rcode and negative data then describe the end of the chain (RFC 6604 §2.1,
    /// RFC 2308 §2.1/§2.2): NXDOMAIN when the last target does not exist, and its
    /// zone's SOA when it has no data of this type. A chain that leaves our zones, is
    /// longer than the limit or loops (`gslb check` rejects loops) ends at the last
    /// alias given, with no negative data: the resolver continues from there, and we
    /// never assert anything about a name we did not look at.
    fn follow(&mut self, first: &'a Record, qtype: RecordType) {
        let snap = self.snap;
        let mut cname = first;
        for _ in 0..MAX_CHAIN {
            self.answers.push(Rr::Stored(cname));
            let RData::CNAME(target) = &cname.data else {
                return;
            };
            let target = LowerName::new(&target.0);
            let Some((tz, node)) = snap.zones.node(&target) else {
                if let Some(tz) = snap.zones.zone_of(&target) {
                    self.chain_rcode = Some(ResponseCode::NXDomain);
                    self.authorities.push(snap.zones.negative_soa(tz));
                }
                return;
            };
            let found = match node {
                Node::Service(s) => self.service(s, qtype),
                Node::Static(by_type) => {
                    let of_type =
                        |t: RecordType| by_type.iter().find(|(rt, _)| *rt == t).map(|(_, v)| v);
                    if let Some(v) = of_type(qtype) {
                        self.answers.extend(v.iter().map(Rr::Stored));
                        true
                    } else if let Some(next) = of_type(RecordType::CNAME).and_then(|v| v.first()) {
                        if self
                            .answers
                            .iter()
                            .any(|r| matches!(r, Rr::Stored(r) if std::ptr::eq(*r, next)))
                        {
                            return;
                        }
                        cname = next;
                        continue;
                    } else {
                        false
                    }
                }
                Node::EmptyNonTerminal => false,
            };
            if !found {
                self.authorities.push(snap.zones.negative_soa(tz));
            }
            return;
        }
    }
}
