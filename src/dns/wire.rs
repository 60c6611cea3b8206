//! The wire side of a reply: our OPT record, the encoding of the sections with
//! truncation to the client's payload size, and the bare headers of error replies.

use std::net::IpAddr;

use hickory_proto::ProtoError;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsOption};
use hickory_proto::rr::rdata::{A, AAAA};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordData};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::server::Request;

/// One record of an answer section: a record of the zone data, or an address of a
/// service's endpoint, which the snapshot holds as an address only (its record is
/// written straight into the reply).
#[derive(Clone, Copy)]
pub(super) enum Rr<'a> {
    Stored(&'a Record),
    Address {
        owner: &'a Name,
        ttl: u32,
        ip: IpAddr,
    },
}

/// The records of a reply, by section.
#[derive(Clone, Copy)]
pub(super) struct Sections<'a> {
    pub answers: &'a [Rr<'a>],
    pub authorities: &'a [&'a Record],
    pub additionals: &'a [&'a Record],
}

/// The OPT record's RDATA as sent, from the raw message (which hickory has parsed,
/// so it is well-formed up to the additional section); `None` without an OPT record.
fn opt_rdata(raw: &[u8]) -> Option<&[u8]> {
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
            return raw.get(rdata..rdata + rdlen);
        }
        pos = rdata + rdlen;
    }
    None
}

/// Whether the OPT record's options tile its RDATA exactly (RFC 6891 §6.1.2: each is
/// code, length, then that many octets). hickory drops badly framed options, logging
/// every byte it collected; we answer FORMERR instead, before anything reads them.
pub(super) fn opt_framing_ok(raw: &[u8]) -> bool {
    let Some(rdata) = opt_rdata(raw) else {
        return true;
    };
    let mut o = 0;
    while o < rdata.len() {
        let Some(len) = rdata.get(o + 2..o + 4) else {
            return false;
        };
        o += 4 + usize::from(u16::from_be_bytes([len[0], len[1]]));
    }
    o == rdata.len()
}

/// The number of ADDRESS octets of the first ECS option as sent, from the raw message
/// (which hickory has already parsed, so it is well-formed up to the options).
pub(super) fn ecs_address_octets(raw: &[u8]) -> Option<usize> {
    let rdata = opt_rdata(raw)?;
    let u16_at = |i: usize| Some(u16::from_be_bytes([*rdata.get(i)?, *rdata.get(i + 1)?]) as usize);
    let mut o = 0;
    while o + 4 <= rdata.len() {
        let olen = u16_at(o + 2)?;
        if u16_at(o)? == 8 {
            return olen.checked_sub(4);
        }
        o += 4 + olen;
    }
    None
}

/// Our OPT record: our payload size, version 0, and the client's ECS echoed with the
/// scope the answer depended on.
pub(super) fn response_edns(max_udp_payload: u16, ecs: Option<ClientSubnet>, scope: u8) -> Edns {
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

/// Encodes the response. When it does not fit in `limit`, sends the header, question and
/// OPT only, with TC set, so that the client retries over TCP (RFC 1035 §4.2.1,
/// RFC 6891 §7). Returns whether the response was truncated.
pub(super) fn encode(
    req: &Request,
    md: Metadata,
    edns: Option<&Edns>,
    sections: Sections<'_>,
    limit: u16,
    out: &mut Vec<u8>,
) -> bool {
    if emit(req, md, edns, sections, limit, true, out).is_ok() {
        return false;
    }
    let mut md = md;
    md.truncation = true;
    if emit(req, md, edns, sections, limit, false, out).is_err() {
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
    sections: Sections<'_>,
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
    let (a, n, d): (&[Rr<'_>], &[&Record], &[&Record]) = if with_records {
        (sections.answers, sections.authorities, sections.additionals)
    } else {
        (&[], &[], &[])
    };
    let qname = (qcount == 1 && question.len() > 4).then(|| &question[..question.len() - 4]);
    let at_question = |name: &Name| qname.is_some_and(|q| names_equal(name, q));
    for rr in a {
        match *rr {
            Rr::Stored(r) => emit_record(&mut enc, r, at_question(&r.name))?,
            Rr::Address { owner, ttl, ip } => {
                let data = match ip {
                    IpAddr::V4(a) => RData::A(A(a)),
                    IpAddr::V6(a) => RData::AAAA(AAAA(a)),
                };
                if at_question(owner) {
                    emit_rdata_at_question(&mut enc, DNSClass::IN, ttl, &data)?;
                } else {
                    Record::from_rdata(owner.clone(), ttl, data).emit(&mut enc)?;
                }
            }
        }
    }
    for r in n.iter().chain(d) {
        emit_record(&mut enc, r, at_question(&r.name))?;
    }
    let mut additionals = d.len();
    if let Some(e) = edns {
        // The caller set the high 8 bits of an extended RCODE (RFC 6891 §6.1.3).
        debug_assert_eq!(e.rcode_high(), md.response_code.high());
        Record::from(e).emit(&mut enc)?;
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

/// Whether `name` is the name whose wire form is `wire`, ignoring ASCII case.
fn names_equal(name: &Name, wire: &[u8]) -> bool {
    let mut at = 0;
    for label in name.iter() {
        let Some(&len) = wire.get(at) else {
            return false;
        };
        let end = at + 1 + usize::from(len);
        match wire.get(at + 1..end) {
            Some(got) if got.eq_ignore_ascii_case(label) => at = end,
            _ => return false,
        }
    }
    wire.get(at..) == Some(&[0][..])
}

/// Writes `r`; when its owner is the question name (`at_question`), with its owner as
/// a pointer to the question (offset 12), whatever the letter case of the query, and
/// as `Record::emit` writes it otherwise. (hickory's encoder matches earlier names
/// byte for byte, so a 0x20-cased question would make it write the name out again.)
/// The fast path writes its answers the same way, which the differential test checks.
fn emit_record(enc: &mut BinEncoder<'_>, r: &Record, at_question: bool) -> Result<(), ProtoError> {
    if at_question {
        emit_rdata_at_question(enc, r.dns_class, r.ttl, &r.data)
    } else {
        r.emit(enc)
    }
}

/// A record whose owner is the question's name: the owner as a pointer to it.
fn emit_rdata_at_question(
    enc: &mut BinEncoder<'_>,
    class: DNSClass,
    ttl: u32,
    data: &RData,
) -> Result<(), ProtoError> {
    enc.emit_u16(QUESTION_POINTER)?;
    data.record_type().emit(enc)?;
    class.emit(enc)?;
    enc.emit_u32(ttl)?;
    let place = enc.place::<u16>()?;
    if !data.is_update() {
        data.emit(enc)?;
    }
    let len = enc.len_since_place(&place);
    place.replace(enc, len as u16)?;
    Ok(())
}

/// A compression pointer (RFC 1035 §4.1.4) to the question name, right after the
/// 12-byte header.
pub(super) const QUESTION_POINTER: u16 = 0xC000 | 12;

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
