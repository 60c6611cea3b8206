//! DNS semantics of the real binary, over UDP and TCP both: flags, negative answers,
//! apex data, static records, 0x20 case echo, EDNS (payload, ECS, BADVERS), opcodes,
//! zone transfers, malformed questions, TCP pipelining and the TCP idle timeout.

use std::collections::BTreeSet;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{ClientSubnet, EdnsCode, EdnsOption};
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

const BOTH: [Transport; 2] = [Transport::Udp, Transport::Tcp];

/// Number of gateways behind `big.gslb.test`; each has one IPv4 and two IPv6 addresses.
const BIG: usize = 20;

/// Eight strings of 203 bytes, as a DKIM key is published.
fn dkim_strings() -> Vec<String> {
    (0..8).map(|i| format!("{i}{}", "k".repeat(202))).collect()
}

fn txt_strings(m: &Message) -> Vec<Vec<u8>> {
    assert_eq!(m.answers.len(), 1, "one TXT record: {m:?}");
    match &m.answers[0].data {
        RData::TXT(txt) => txt.txt_data.iter().map(|s| s.to_vec()).collect(),
        other => panic!("not TXT: {other:?}"),
    }
}

fn config() -> String {
    let mut c = String::from(
        r#"
[[zone]]
origin = "gslb.test"
ttl = "1h"
ns = [
  { name = "ns1", addresses = ["192.0.2.53", "2001:db8::53"] },
  { name = "ns.example.net." },
]
soa = { minimum = "15s", serial = 2024010101 }
record = [
  { name = "www", type = "A", value = "192.0.2.10" },
  { name = "www", type = "A", value = "192.0.2.11" },
  { name = "www", type = "AAAA", value = "2001:db8::10" },
  { name = "alias", type = "CNAME", value = "www" },
  { name = "svc-alias", type = "CNAME", value = "app" },
  { name = "ext", type = "CNAME", value = "target.example.net." },
  { name = "dangling", type = "CNAME", value = "nothere" },
  { name = "hop1", type = "CNAME", value = "hop2" },
  { name = "hop2", type = "CNAME", value = "svc-alias" },
  { name = "hop-gone", type = "CNAME", value = "dangling" },
  { name = "txt", type = "TXT", value = "hello world" },
  { name = "@", type = "MX", value = "10 mail" },
  { name = "mail", type = "A", value = "192.0.2.25", ttl = "5m" },
  { name = "a.b", type = "A", value = "192.0.2.30" },
]

# SOA TTL below the SOA minimum: the negative TTL is the TTL.
[[zone]]
origin = "short.test"
ttl = "10s"
ns = [{ name = "ns1.gslb.test." }]
soa = { minimum = "1m" }

[[gateway]]
name = "one"
addresses = ["192.0.2.1"]

[[service]]
name = "app.gslb.test"
endpoints = [{ gateway = "one" }]
"#,
    );
    // A DKIM-sized TXT written as its exact strings, and a long text split on request.
    let dkim = dkim_strings()
        .iter()
        .map(|s| format!("{s:?}"))
        .collect::<Vec<_>>()
        .join(", ");
    let long = format!("{:?}", "s".repeat(300));
    c = c.replace(
        "  { name = \"txt\",",
        &format!(
            "  {{ name = \"dkim\", type = \"TXT\", value = [{dkim}] }},\n  \
             {{ name = \"split\", type = \"TXT\", value = {long}, split = true }},\n  \
             {{ name = \"txt\","
        ),
    );
    // long0 → long1 → … → long9 → www: longer than one answer follows.
    let long_chain: String = (0..10)
        .map(|i| {
            let to = if i == 9 {
                "www".to_string()
            } else {
                format!("long{}", i + 1)
            };
            format!("  {{ name = \"long{i}\", type = \"CNAME\", value = \"{to}\" }},\n")
        })
        .collect();
    c = c.replace(
        "  { name = \"txt\",",
        &format!("{long_chain}  {{ name = \"txt\","),
    );
    for i in 1..=BIG {
        c.push_str(&format!(
            "\n[[gateway]]\nname = \"g{i}\"\naddresses = [\"{}\", \"{}\", \"{}\"]\n",
            big_v4(i),
            big_v6(i, 1),
            big_v6(i, 2)
        ));
    }
    c.push_str(&format!(
        "\n[[service]]\nname = \"big.gslb.test\"\nanswers = {BIG}\nendpoints = [{}]\n",
        (1..=BIG)
            .map(|i| format!("{{ gateway = \"g{i}\" }}"))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    c
}

fn big_v4(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(192, 0, 2, 100 + i as u8)
}

fn big_v6(i: usize, j: u16) -> Ipv6Addr {
    Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, i as u16, j)
}

fn start() -> Gslb {
    Gslb::start(&config())
}

fn ask(addr: SocketAddr, name: &str, qtype: RecordType, t: Transport) -> Message {
    let m = exchange(addr, &query_msg(name, qtype, None), t);
    assert_eq!(m.metadata.message_type, MessageType::Response);
    assert_eq!(m.metadata.op_code, OpCode::Query);
    m
}

/// Raw reply bytes for raw query bytes.
fn raw_exchange(addr: SocketAddr, bytes: &[u8], t: Transport) -> Vec<u8> {
    match t {
        Transport::Udp => udp_raw(addr, bytes, Duration::from_secs(2))
            .or_else(|| udp_raw(addr, bytes, Duration::from_secs(2)))
            .expect("no UDP reply"),
        Transport::Tcp => tcp_raw(addr, bytes),
    }
}

fn show(records: &[Record]) -> Vec<String> {
    records.iter().map(|r| r.to_string()).collect()
}

fn show_sorted(records: &[Record]) -> Vec<String> {
    let mut v = show(records);
    v.sort();
    v
}

const SOA_GSLB: &str =
    "gslb.test. IN SOA ns1.gslb.test. hostmaster.gslb.test. 2024010101 3600 600 604800 15";

/// The zone SOA as it appears in a negative answer: TTL min(3600, 15) = 15.
fn neg_soa_gslb() -> String {
    SOA_GSLB.replacen(" IN ", " 15 IN ", 1)
}

fn assert_nxdomain(m: &Message, soa: &str, ctx: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{ctx}");
    assert!(m.metadata.authoritative, "AA on NXDOMAIN: {ctx}");
    assert!(m.answers.is_empty(), "{ctx}: {:?}", m.answers);
    assert_eq!(show(&m.authorities), vec![soa.to_string()], "{ctx}");
    assert!(m.additionals.is_empty(), "{ctx}");
}

fn assert_nodata(m: &Message, soa: &str, ctx: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{ctx}");
    assert!(m.metadata.authoritative, "AA on NODATA: {ctx}");
    assert!(m.answers.is_empty(), "{ctx}: {:?}", m.answers);
    assert_eq!(show(&m.authorities), vec![soa.to_string()], "{ctx}");
    assert!(m.additionals.is_empty(), "{ctx}");
}

fn assert_answer(m: &Message, expect: &[&str], ctx: &str) {
    assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{ctx}");
    assert!(m.metadata.authoritative, "AA on answer: {ctx}");
    assert!(!m.metadata.truncation, "{ctx}");
    assert_eq!(show(&m.answers), expect, "{ctx}");
    assert!(m.authorities.is_empty(), "{ctx}: {:?}", m.authorities);
}

// ------------------------------------------------------------------------------ answers

#[test]
fn service_answer_is_authoritative() {
    let g = start();
    for t in BOTH {
        let m = ask(g.addr, "app.gslb.test", RecordType::A, t);
        assert_answer(&m, &["app.gslb.test. 30 IN A 192.0.2.1"], &format!("{t:?}"));
        assert!(!m.metadata.recursion_available);
        assert!(m.additionals.is_empty());
        // Case-insensitive match; the answer owner is the configured name.
        let m = ask(g.addr, "APP.gslb.TEST.", RecordType::A, t);
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 1)], "{t:?}");
        assert!(m.metadata.authoritative);
        // ANY at a service: its IPv4 answer.
        let m = ask(g.addr, "app.gslb.test", RecordType::ANY, t);
        assert_answer(&m, &["app.gslb.test. 30 IN A 192.0.2.1"], &format!("{t:?}"));
    }
}

#[test]
fn static_records() {
    let g = start();
    for t in BOTH {
        let ctx = |what: &str| format!("{what} over {t:?}");
        let m = ask(g.addr, "www.gslb.test", RecordType::A, t);
        assert_answer(
            &m,
            &[
                "www.gslb.test. 3600 IN A 192.0.2.10",
                "www.gslb.test. 3600 IN A 192.0.2.11",
            ],
            &ctx("www A"),
        );
        let m = ask(g.addr, "www.gslb.test", RecordType::AAAA, t);
        assert_answer(
            &m,
            &["www.gslb.test. 3600 IN AAAA 2001:db8::10"],
            &ctx("www AAAA"),
        );

        // In-zone CNAME: the alias, then the target's records.
        let m = ask(g.addr, "alias.gslb.test", RecordType::A, t);
        assert_answer(
            &m,
            &[
                "alias.gslb.test. 3600 IN CNAME www.gslb.test.",
                "www.gslb.test. 3600 IN A 192.0.2.10",
                "www.gslb.test. 3600 IN A 192.0.2.11",
            ],
            &ctx("alias A"),
        );
        let m = ask(g.addr, "alias.gslb.test", RecordType::AAAA, t);
        assert_answer(
            &m,
            &[
                "alias.gslb.test. 3600 IN CNAME www.gslb.test.",
                "www.gslb.test. 3600 IN AAAA 2001:db8::10",
            ],
            &ctx("alias AAAA"),
        );
        // Asking for the CNAME itself gives only the CNAME.
        let m = ask(g.addr, "alias.gslb.test", RecordType::CNAME, t);
        assert_answer(
            &m,
            &["alias.gslb.test. 3600 IN CNAME www.gslb.test."],
            &ctx("alias CNAME"),
        );
        // A CNAME to a service follows into the service's answer.
        let m = ask(g.addr, "svc-alias.gslb.test", RecordType::A, t);
        assert_answer(
            &m,
            &[
                "svc-alias.gslb.test. 3600 IN CNAME app.gslb.test.",
                "app.gslb.test. 30 IN A 192.0.2.1",
            ],
            &ctx("svc-alias A"),
        );
        // A CNAME out of our zones: the alias only.
        let m = ask(g.addr, "ext.gslb.test", RecordType::A, t);
        assert_answer(
            &m,
            &["ext.gslb.test. 3600 IN CNAME target.example.net."],
            &ctx("ext A"),
        );

        let m = ask(g.addr, "txt.gslb.test", RecordType::TXT, t);
        assert_eq!(m.answers.len(), 1, "{}", ctx("TXT"));
        let r = &m.answers[0];
        assert_eq!(r.name.to_ascii(), "txt.gslb.test.");
        assert_eq!(r.ttl, 3600);
        match &r.data {
            RData::TXT(txt) => {
                let strings: Vec<&[u8]> = txt.txt_data.iter().map(|s| &s[..]).collect();
                assert_eq!(strings, vec![&b"hello world"[..]], "{}", ctx("TXT"));
            }
            other => panic!("not TXT: {other:?}"),
        }
        assert!(m.metadata.authoritative);

        // The record's strings come back exactly as written (not re-cut every 255 bytes).
        // Over 512 bytes: UDP without EDNS says truncated, TCP carries it.
        let m = ask(g.addr, "dkim.gslb.test", RecordType::TXT, t);
        if t == Transport::Udp {
            assert!(
                m.metadata.truncation,
                "{}",
                ctx("DKIM TXT is over 512 bytes")
            );
        } else {
            let want: Vec<Vec<u8>> = dkim_strings().into_iter().map(String::into_bytes).collect();
            assert_eq!(txt_strings(&m), want, "{}", ctx("DKIM TXT"));
        }
        let m = ask(g.addr, "split.gslb.test", RecordType::TXT, t);
        let lens: Vec<usize> = txt_strings(&m).iter().map(Vec::len).collect();
        assert_eq!(lens, vec![255, 45], "{}", ctx("split TXT"));

        let m = ask(g.addr, "gslb.test", RecordType::MX, t);
        assert_answer(
            &m,
            &["gslb.test. 3600 IN MX 10 mail.gslb.test."],
            &ctx("MX"),
        );
        match &m.answers[0].data {
            RData::MX(mx) => {
                assert_eq!(mx.preference, 10);
                assert_eq!(mx.exchange, Name::from_ascii("mail.gslb.test.").unwrap());
            }
            other => panic!("not MX: {other:?}"),
        }
        // Per-record TTL.
        let m = ask(g.addr, "mail.gslb.test", RecordType::A, t);
        assert_answer(&m, &["mail.gslb.test. 300 IN A 192.0.2.25"], &ctx("mail A"));
        // In-zone glue is data too.
        let m = ask(g.addr, "ns1.gslb.test", RecordType::AAAA, t);
        assert_answer(
            &m,
            &["ns1.gslb.test. 3600 IN AAAA 2001:db8::53"],
            &ctx("ns1 AAAA"),
        );
        let m = ask(g.addr, "a.b.gslb.test", RecordType::A, t);
        assert_answer(&m, &["a.b.gslb.test. 3600 IN A 192.0.2.30"], &ctx("a.b A"));
    }
}

#[test]
fn nxdomain_and_nodata_carry_the_soa() {
    let g = start();
    let soa = neg_soa_gslb();
    let short_soa =
        "short.test. 10 IN SOA ns1.gslb.test. hostmaster.short.test. 1 3600 600 604800 60";
    for t in BOTH {
        let ctx = |what: &str| format!("{what} over {t:?}");
        // NXDOMAIN.
        for name in [
            "nope.gslb.test",
            "NoPe.GsLb.TeSt",
            "x.app.gslb.test",
            "x.www.gslb.test",
            "c.b.gslb.test",
        ] {
            let m = ask(g.addr, name, RecordType::A, t);
            assert_nxdomain(&m, &soa, &ctx(name));
        }
        let m = ask(g.addr, "nope.short.test", RecordType::AAAA, t);
        assert_nxdomain(&m, short_soa, &ctx("nope.short.test"));

        // NODATA: service with a type it does not serve; v4-only service asked AAAA;
        // an empty non-terminal; a static name asked another type.
        for (name, qtype) in [
            ("app.gslb.test", RecordType::TXT),
            ("app.gslb.test", RecordType::AAAA),
            ("app.gslb.test", RecordType::MX),
            ("b.gslb.test", RecordType::A),
            ("b.gslb.test", RecordType::TXT),
            ("www.gslb.test", RecordType::TXT),
            ("gslb.test", RecordType::A),
            ("txt.gslb.test", RecordType::AAAA),
        ] {
            let m = ask(g.addr, name, qtype, t);
            assert_nodata(&m, &soa, &ctx(&format!("{name} {qtype}")));
        }
        let m = ask(g.addr, "short.test", RecordType::A, t);
        assert_nodata(&m, short_soa, &ctx("short.test A"));
    }
}

#[test]
fn apex_ns_with_glue_and_soa() {
    let g = start();
    for t in BOTH {
        let m = ask(g.addr, "gslb.test", RecordType::NS, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.metadata.authoritative, "{t:?}");
        assert_eq!(
            show(&m.answers),
            vec![
                "gslb.test. 3600 IN NS ns1.gslb.test.",
                "gslb.test. 3600 IN NS ns.example.net.",
            ],
            "{t:?}"
        );
        assert!(m.authorities.is_empty());
        assert_eq!(
            show_sorted(&m.additionals),
            vec![
                "ns1.gslb.test. 3600 IN A 192.0.2.53",
                "ns1.gslb.test. 3600 IN AAAA 2001:db8::53",
            ],
            "{t:?}"
        );

        let m = ask(g.addr, "gslb.test", RecordType::SOA, t);
        assert_answer(
            &m,
            &[&SOA_GSLB.replacen(" IN ", " 3600 IN ", 1)],
            &format!("SOA {t:?}"),
        );
        match &m.answers[0].data {
            RData::SOA(soa) => {
                assert_eq!(soa.mname, Name::from_ascii("ns1.gslb.test.").unwrap());
                assert_eq!(
                    soa.rname,
                    Name::from_ascii("hostmaster.gslb.test.").unwrap()
                );
                assert_eq!(
                    (soa.serial, soa.refresh, soa.retry, soa.expire, soa.minimum),
                    (2024010101, 3600, 600, 604800, 15)
                );
            }
            other => panic!("not SOA: {other:?}"),
        }
        assert!(m.additionals.is_empty());

        // The second zone's SOA: mname defaults to its first NS (out of zone).
        let m = ask(g.addr, "short.test", RecordType::SOA, t);
        assert_answer(
            &m,
            &["short.test. 10 IN SOA ns1.gslb.test. hostmaster.short.test. 1 3600 600 604800 60"],
            &format!("short SOA {t:?}"),
        );
        let m = ask(g.addr, "short.test", RecordType::NS, t);
        assert_answer(
            &m,
            &["short.test. 10 IN NS ns1.gslb.test."],
            &format!("short NS {t:?}"),
        );
        assert!(m.additionals.is_empty());
    }
}

#[test]
fn refused_outside_every_zone() {
    let g = start();
    for t in BOTH {
        for name in [
            "example.com",
            "test",
            ".",
            "gslb.test.example.com",
            "xgslb.test",
        ] {
            let m = ask(g.addr, name, RecordType::A, t);
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::Refused,
                "{name} {t:?}"
            );
            assert!(!m.metadata.authoritative, "no AA on REFUSED: {name} {t:?}");
            assert!(m.answers.is_empty() && m.authorities.is_empty() && m.additionals.is_empty());
        }
        // Another class at one of our names.
        let mut q = query_msg("app.gslb.test", RecordType::A, None);
        q.queries[0].set_query_class(DNSClass::CH);
        let m = exchange(g.addr, &q, t);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{t:?}");
        assert!(!m.metadata.authoritative);
        assert!(m.answers.is_empty());
    }
}

#[test]
fn question_case_is_echoed() {
    let g = start();
    for t in BOTH {
        for (name, rcode) in [
            ("aPp.GsLb.TeSt", ResponseCode::NoError),
            ("NoPe.gSlB.tEsT.", ResponseCode::NXDomain),
            ("WwW.GSLB.test", ResponseCode::NoError),
        ] {
            let q = query_msg(name, RecordType::A, None);
            let bytes = q.to_vec().unwrap();
            let question = &bytes[12..]; // no EDNS: the question runs to the end
            let reply = raw_exchange(g.addr, &bytes, t);
            assert_eq!(&reply[0..2], &bytes[0..2], "ID");
            assert_eq!(
                &reply[12..12 + question.len()],
                question,
                "question bytes of {name} over {t:?}"
            );
            let m = Message::from_vec(&reply).unwrap();
            assert_eq!(m.metadata.response_code, rcode);
            assert_eq!(m.queries.len(), 1);
            let expect = if name.ends_with('.') {
                name.to_string()
            } else {
                format!("{name}.")
            };
            assert_eq!(m.queries[0].name().to_ascii(), expect);
            assert_eq!(m.queries[0].query_type(), RecordType::A);
            assert_eq!(m.queries[0].query_class(), DNSClass::IN);
        }
        let m = Message::from_vec(&raw_exchange(
            g.addr,
            &query_msg("aPp.GsLb.TeSt", RecordType::A, None)
                .to_vec()
                .unwrap(),
            t,
        ))
        .unwrap();
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    }
}

// --------------------------------------------------------------------------------- EDNS

fn edns(payload: u16) -> Edns {
    let mut e = Edns::new();
    e.set_max_payload(payload);
    e
}

#[test]
fn edns_reply_carries_opt() {
    let g = start();
    for t in BOTH {
        let m = exchange(
            g.addr,
            &query_msg("app.gslb.test", RecordType::A, Some(edns(1232))),
            t,
        );
        let e = m.edns.as_ref().expect("OPT in reply to an EDNS query");
        assert_eq!(e.version(), 0);
        assert_eq!(e.max_payload(), 1232, "our advertised payload size");
        assert!(e.options().as_ref().is_empty(), "{e:?}");
        assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert!(m.metadata.authoritative);
        // The OPT is not an additional record.
        assert!(m.additionals.is_empty());

        // Negative answers and REFUSED carry it too.
        let m = exchange(
            g.addr,
            &query_msg("nope.gslb.test", RecordType::A, Some(edns(4096))),
            t,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.edns.is_some());
        let m = exchange(
            g.addr,
            &query_msg("example.com", RecordType::A, Some(edns(4096))),
            t,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
        assert!(m.edns.is_some());

        // No EDNS in the query: none in the reply.
        let m = exchange(g.addr, &query_msg("app.gslb.test", RecordType::A, None), t);
        assert!(m.edns.is_none(), "{t:?}");
    }
}

fn big_aaaa() -> BTreeSet<Ipv6Addr> {
    (1..=BIG)
        .flat_map(|i| [big_v6(i, 1), big_v6(i, 2)])
        .collect()
}

fn big_a() -> BTreeSet<Ipv4Addr> {
    (1..=BIG).map(big_v4).collect()
}

#[test]
fn udp_payload_size_is_honoured() {
    let g = start();
    let name = "big.gslb.test";

    // The full AAAA answer: 40 records, well over 512 bytes, under our 1232 cap.
    let full_q = query_msg(name, RecordType::AAAA, None);
    let full = tcp_raw(g.addr, &full_q.to_vec().unwrap());
    assert!(
        full.len() > 512 && full.len() < 1232 - 11,
        "fixture size {}",
        full.len()
    );

    for t in BOTH {
        // No EDNS.
        let q = query_msg(name, RecordType::AAAA, None);
        let raw = raw_exchange(g.addr, &q.to_vec().unwrap(), t);
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.metadata.id, q.metadata.id);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        match t {
            Transport::Udp => {
                assert!(m.metadata.truncation, "TC without EDNS over UDP");
                assert!(raw.len() <= 512, "reply is {} bytes", raw.len());
                assert!(m.answers.is_empty(), "TC reply holds no partial RRset");
                assert_eq!(m.queries.len(), 1, "question kept in a TC reply");
                assert!(m.metadata.authoritative);
            }
            Transport::Tcp => {
                assert!(!m.metadata.truncation);
                assert_eq!(
                    aaaa_records(&m).into_iter().collect::<BTreeSet<_>>(),
                    big_aaaa()
                );
                assert_eq!(m.answers.len(), 2 * BIG);
            }
        }

        // EDNS 4096: everything, no TC, over either transport.
        let q = query_msg(name, RecordType::AAAA, Some(edns(4096)));
        let raw = raw_exchange(g.addr, &q.to_vec().unwrap(), t);
        let m = Message::from_vec(&raw).unwrap();
        assert!(!m.metadata.truncation, "{t:?}");
        assert!(raw.len() > 512);
        assert_eq!(m.answers.len(), 2 * BIG, "{t:?}");
        assert_eq!(
            aaaa_records(&m).into_iter().collect::<BTreeSet<_>>(),
            big_aaaa()
        );
        assert!(m.edns.is_some());

        // EDNS payload below 512 counts as 512: a ~370-byte answer is sent whole...
        let q = query_msg(name, RecordType::A, Some(edns(100)));
        let raw = raw_exchange(g.addr, &q.to_vec().unwrap(), t);
        let m = Message::from_vec(&raw).unwrap();
        assert!(raw.len() > 100 && raw.len() <= 512, "{} bytes", raw.len());
        assert!(!m.metadata.truncation, "{t:?}");
        assert_eq!(a_records(&m).into_iter().collect::<BTreeSet<_>>(), big_a());
        assert_eq!(m.answers.len(), BIG);
        // ...and the 1100-byte one is truncated to at most 512 over UDP.
        let q = query_msg(name, RecordType::AAAA, Some(edns(100)));
        let raw = raw_exchange(g.addr, &q.to_vec().unwrap(), t);
        let m = Message::from_vec(&raw).unwrap();
        match t {
            Transport::Udp => {
                assert!(m.metadata.truncation);
                assert!(raw.len() <= 512);
                assert!(m.answers.is_empty());
                assert!(m.edns.is_some(), "OPT kept in a TC reply");
            }
            Transport::Tcp => {
                assert!(!m.metadata.truncation);
                assert_eq!(m.answers.len(), 2 * BIG);
            }
        }

        // EDNS 512 exactly: same as none.
        let q = query_msg(name, RecordType::AAAA, Some(edns(512)));
        let raw = raw_exchange(g.addr, &q.to_vec().unwrap(), t);
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.metadata.truncation, t == Transport::Udp);
    }
}

#[test]
fn server_udp_cap_applies_whatever_the_client_says() {
    // max_udp_payload = 600 caps a 4096-byte client; TCP is not capped.
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\nmax_udp_payload = 600\n{}",
        config()
    );
    let g = Gslb::start(&cfg);
    for t in BOTH {
        let q = query_msg("big.gslb.test", RecordType::AAAA, Some(edns(4096)));
        let raw = raw_exchange(g.addr, &q.to_vec().unwrap(), t);
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.edns.as_ref().unwrap().max_payload(), 600);
        match t {
            Transport::Udp => {
                assert!(m.metadata.truncation);
                assert!(raw.len() <= 600);
            }
            Transport::Tcp => {
                assert!(!m.metadata.truncation);
                assert_eq!(m.answers.len(), 2 * BIG);
            }
        }
    }
}

#[test]
fn client_subnet_is_echoed_with_scope_zero() {
    let g = start();
    let subnets = [
        ClientSubnet::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 0)), 24, 0),
        ClientSubnet::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 7)), 32, 0),
        ClientSubnet::new(IpAddr::V4(Ipv4Addr::new(0, 0, 0, 0)), 0, 0),
        ClientSubnet::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x1234, 0, 0, 0, 0, 0)),
            48,
            0,
        ),
        ClientSubnet::new(
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0x1234, 0x5600, 0, 0, 0, 0)),
            56,
            0,
        ),
    ];
    for t in BOTH {
        for ecs in subnets {
            for name in ["app.gslb.test", "nope.gslb.test"] {
                let mut e = edns(1232);
                e.options_mut().insert(EdnsOption::Subnet(ecs));
                let q = query_msg(name, RecordType::A, Some(e));
                let m = exchange(g.addr, &q, t);
                let opt = m.edns.as_ref().expect("OPT");
                match opt.option(EdnsCode::Subnet) {
                    Some(EdnsOption::Subnet(got)) => {
                        assert_eq!(got.addr(), ecs.addr(), "{t:?}");
                        assert_eq!(got.addr().is_ipv4(), ecs.addr().is_ipv4(), "same family");
                        assert_eq!(got.source_prefix(), ecs.source_prefix());
                        assert_eq!(got.scope_prefix(), 0);
                    }
                    other => panic!("no ECS echoed for {ecs:?} over {t:?}: {other:?}"),
                }
                assert_eq!(opt.options().as_ref().len(), 1);
            }
        }
        // A query without ECS gets none.
        let m = exchange(
            g.addr,
            &query_msg("app.gslb.test", RecordType::A, Some(edns(1232))),
            t,
        );
        assert!(m.edns.as_ref().unwrap().option(EdnsCode::Subnet).is_none());
    }
}

#[test]
fn edns_version_1_is_badvers() {
    let g = start();
    for t in BOTH {
        let mut e = edns(1232);
        e.set_version(1);
        let q = query_msg("app.gslb.test", RecordType::A, Some(e));
        let bytes = q.to_vec().unwrap();
        let raw = raw_exchange(g.addr, &bytes, t);
        let m = Message::from_vec(&raw).unwrap();
        assert_eq!(m.metadata.id, q.metadata.id);
        // 16 is BADVERS in an OPT context (hickory decodes it under its BADSIG alias).
        assert_eq!(u16::from(m.metadata.response_code), 16, "{t:?}");
        assert_eq!(u16::from(ResponseCode::BADVERS), 16);
        // The header holds the low 4 bits (0), the OPT the high 8 bits (1).
        assert_eq!(raw[3] & 0x0f, 0);
        let opt = m.edns.as_ref().expect("BADVERS needs an OPT");
        assert_eq!(opt.rcode_high(), 1);
        assert_eq!(opt.version(), 0, "we answer with the version we support");
        assert!(m.answers.is_empty());
        assert!(!m.metadata.authoritative);
    }
}

// ------------------------------------------------------------------ refusals and errors

#[test]
fn zone_transfers_are_refused() {
    let g = start();
    for t in BOTH {
        for qtype in [RecordType::AXFR, RecordType::IXFR] {
            for name in ["gslb.test", "short.test"] {
                let m = ask(g.addr, name, qtype, t);
                assert_eq!(
                    m.metadata.response_code,
                    ResponseCode::Refused,
                    "{name} {qtype} {t:?}"
                );
                assert!(!m.metadata.authoritative);
                assert!(m.answers.is_empty() && m.authorities.is_empty());
                assert_eq!(m.queries[0].query_type(), qtype);
            }
        }
    }
}

/// `bytes` with the opcode field replaced.
fn with_opcode(bytes: &[u8], op: u8) -> Vec<u8> {
    let mut b = bytes.to_vec();
    b[2] = (b[2] & 0x87) | (op << 3);
    b
}

#[test]
fn unknown_opcodes_are_notimp() {
    let g = start();
    for t in BOTH {
        // Built by hickory: UPDATE, NOTIFY, STATUS.
        for op in [OpCode::Update, OpCode::Notify, OpCode::Status] {
            let mut q = Message::new(0x4242, MessageType::Query, op);
            q.add_query(Query::query(
                Name::from_ascii("gslb.test.").unwrap(),
                RecordType::SOA,
            ));
            let m = exchange(g.addr, &q, t);
            assert_eq!(m.metadata.response_code, ResponseCode::NotImp, "{op} {t:?}");
            assert_eq!(m.metadata.op_code, op);
            assert!(!m.metadata.authoritative);
            assert!(m.answers.is_empty());
        }
        // By hand: opcodes 1 (IQUERY), 3, 6 and 15.
        let base = query_msg("app.gslb.test", RecordType::A, None);
        let bytes = base.to_vec().unwrap();
        for op in [1u8, 3, 6, 15] {
            let raw = raw_exchange(g.addr, &with_opcode(&bytes, op), t);
            assert_eq!(&raw[0..2], &bytes[0..2], "ID");
            assert_eq!(raw[2] & 0x80, 0x80, "QR");
            assert_eq!((raw[2] >> 3) & 0x0f, op, "opcode echoed");
            assert_eq!(raw[3] & 0x0f, 4, "NOTIMP for opcode {op} over {t:?}");
            let m = Message::from_vec(&raw).unwrap();
            assert_eq!(m.metadata.response_code, ResponseCode::NotImp);
            assert!(m.answers.is_empty());
        }
    }
}

/// A query for app.gslb.test whose OPT RDATA is `options` verbatim.
fn query_with_opt_rdata(id: u16, options: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&id.to_be_bytes());
    b.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 1]); // RD; QD=1, AR=1
    for label in ["app", "gslb", "test"] {
        b.push(label.len() as u8);
        b.extend_from_slice(label.as_bytes());
    }
    b.extend_from_slice(&[0, 0, 1, 0, 1]); // root, A, IN
    b.extend_from_slice(&[0, 0, 41, 0x04, 0xd0, 0, 0, 0, 0]); // ".", OPT, 1232, ttl 0
    b.extend_from_slice(&(options.len() as u16).to_be_bytes());
    b.extend_from_slice(options);
    b
}

/// Issue 9, defect 1: option framing that runs past the OPT RDATA (an ECS option that
/// claims 2000 bytes and carries 1300, or an RDATA of just `00 08`) is FORMERR, and the
/// packet costs the log next to nothing (hickory-proto logged every collected byte at
/// WARN: kilobytes per packet). A well-framed OPT still answers NOERROR.
#[test]
fn broken_opt_option_framing_is_formerr_and_barely_logged() {
    let g = start();
    let mut long = vec![0, 8, 0x07, 0xd0, 0, 1, 24, 0];
    long.resize(8 + 1300, 0);
    // An unknown option code: hickory collects its bytes before finding them short.
    let mut unknown = vec![0xfd, 0xe9, 0x07, 0xd0];
    unknown.resize(4 + 1300, 0);
    let cases: [(&str, Vec<u8>); 4] = [
        ("ECS option longer than the RDATA", long),
        ("unknown option longer than the RDATA", unknown),
        ("two bytes of an option header", vec![0, 8]),
        ("ECS header cut short", vec![0, 8, 0, 4, 0]),
    ];
    let before = g.logs().len();
    let mut rcodes = Vec::new();
    for (what, opt) in &cases {
        for t in BOTH {
            let reply = raw_exchange(g.addr, &query_with_opt_rdata(0x4242, opt), t);
            assert_eq!(&reply[..2], &[0x42, 0x42], "{what} {t:?}");
            rcodes.push((*what, t, reply[3] & 0x0f));
        }
    }
    // Fine framing: a zero-length unknown option.
    let ok = raw_exchange(
        g.addr,
        &query_with_opt_rdata(7, &[0xff, 0x01, 0, 0]),
        Transport::Udp,
    );
    assert_eq!(ok[3] & 0x0f, 0, "{ok:?}");
    std::thread::sleep(Duration::from_millis(200));
    let logs = g.logs()[before..].to_string();
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    assert!(
        longest < 400 && !logs.contains("collected") && !logs.contains("hickory_proto"),
        "the log after eight malformed queries (longest line {longest} bytes):\n{}",
        logs.chars().take(3000).collect::<String>()
    );
    for (what, t, rcode) in rcodes {
        assert_eq!(rcode, 1, "{what} over {t:?}: want FORMERR");
    }

    // A thousand of them (the harness logs gslb at debug): at most a line a second.
    let before = g.logs().len();
    let started = Instant::now();
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    for i in 0..1000 {
        let (_, opt) = &cases[i % cases.len()];
        s.send_to(&query_with_opt_rdata(i as u16, opt), g.addr)
            .unwrap();
    }
    // The last one is answered once all were read.
    let last = raw_exchange(
        g.addr,
        &query_with_opt_rdata(9, &cases[2].1),
        Transport::Udp,
    );
    assert_eq!(last[3] & 0x0f, 1);
    std::thread::sleep(Duration::from_millis(200));
    let logs = g.logs()[before..].to_string();
    let lines = logs
        .lines()
        .filter(|l| l.contains("malformed query"))
        .count();
    let seconds = started.elapsed().as_secs() as usize;
    assert!(
        lines <= seconds + 2 && logs.len() < 400 * (seconds + 2),
        "1,000 malformed queries wrote {lines} lines, {} bytes in {seconds} s:\n{}",
        logs.len(),
        logs.chars().take(2000).collect::<String>()
    );
}

#[test]
fn two_questions_are_formerr() {
    let g = start();
    for t in BOTH {
        let mut q = query_msg("app.gslb.test", RecordType::A, None);
        q.add_query(Query::query(
            Name::from_ascii("www.gslb.test.").unwrap(),
            RecordType::A,
        ));
        let m = exchange(g.addr, &q, t);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{t:?}");
        assert!(!m.metadata.authoritative);
        assert!(m.answers.is_empty());

        // And none at all.
        let q = Message::new(0x1234, MessageType::Query, OpCode::Query);
        let m = exchange(g.addr, &q, t);
        assert_eq!(m.metadata.response_code, ResponseCode::FormErr, "{t:?}");
        assert!(m.answers.is_empty());
    }
}

#[test]
fn responses_are_not_answered() {
    let g = start();
    let mut q = query_msg("app.gslb.test", RecordType::A, None);
    q.metadata.message_type = MessageType::Response;
    let bytes = q.to_vec().unwrap();
    assert!(udp_raw(g.addr, &bytes, Duration::from_millis(500)).is_none());
    // Over TCP the connection stays usable: the next query is answered.
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    tcp_send(&mut s, &bytes);
    let good = query_msg("app.gslb.test", RecordType::A, None);
    tcp_send(&mut s, &good.to_vec().unwrap());
    let m = Message::from_vec(&tcp_recv(&mut s).unwrap()).unwrap();
    assert_eq!(m.metadata.id, good.metadata.id);
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
}

// ---------------------------------------------------------------------------------- TCP

#[test]
fn tcp_pipelining_answers_in_order() {
    let g = start();
    let queries = [
        query_msg("app.gslb.test", RecordType::A, None),
        query_msg("www.gslb.test", RecordType::AAAA, Some(edns(1232))),
        query_msg("nope.gslb.test", RecordType::A, None),
    ];
    let queries: Vec<Message> = queries
        .into_iter()
        .enumerate()
        .map(|(i, mut q)| {
            q.metadata.id = 0x1000 + i as u16; // distinct
            q
        })
        .collect();
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    // All three in one write, before reading anything.
    let mut frames = Vec::new();
    for q in &queries {
        let b = q.to_vec().unwrap();
        frames.extend_from_slice(&(b.len() as u16).to_be_bytes());
        frames.extend_from_slice(&b);
    }
    s.write_all(&frames).unwrap();
    let replies: Vec<Message> = (0..3)
        .map(|_| Message::from_vec(&tcp_recv(&mut s).expect("reply")).unwrap())
        .collect();
    let got: Vec<u16> = replies.iter().map(|m| m.metadata.id).collect();
    assert_eq!(got, vec![0x1000, 0x1001, 0x1002]);
    assert_eq!(a_records(&replies[0]), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    assert_eq!(
        aaaa_records(&replies[1]),
        vec!["2001:db8::10".parse::<Ipv6Addr>().unwrap()]
    );
    assert!(replies[1].edns.is_some());
    assert_eq!(replies[2].metadata.response_code, ResponseCode::NXDomain);

    // Three more, one byte at a time, on the same connection.
    for (i, q) in queries.iter().enumerate() {
        let b = q.to_vec().unwrap();
        let mut frame = (b.len() as u16).to_be_bytes().to_vec();
        frame.extend_from_slice(&b);
        for byte in frame {
            s.write_all(&[byte]).unwrap();
        }
        let m = Message::from_vec(&tcp_recv(&mut s).unwrap()).unwrap();
        assert_eq!(m.metadata.id, 0x1000 + i as u16);
    }
}

#[test]
fn tcp_idle_timeout_closes_silent_connections() {
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\ntcp_idle_timeout = \"1s\"\n{}",
        config()
    );
    let g = Gslb::start(&cfg);

    // Silent from the start.
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let t0 = Instant::now();
    let mut buf = [0u8; 16];
    let n = s.read(&mut buf).map_err(|e| e.kind());
    let waited = t0.elapsed();
    assert!(
        matches!(n, Ok(0)) || matches!(n, Err(std::io::ErrorKind::ConnectionReset)),
        "expected the server to close: {n:?}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );

    // Silent after a query: answered, then closed about a second later.
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    let q = query_msg("app.gslb.test", RecordType::A, None);
    tcp_send(&mut s, &q.to_vec().unwrap());
    let m = Message::from_vec(&tcp_recv(&mut s).unwrap()).unwrap();
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    let t0 = Instant::now();
    let n = s.read(&mut buf).map_err(|e| e.kind());
    let waited = t0.elapsed();
    assert!(
        matches!(n, Ok(0)) || matches!(n, Err(std::io::ErrorKind::ConnectionReset)),
        "{n:?}"
    );
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(4),
        "closed after {waited:?}"
    );

    // Half a message and then silence: closed too.
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    s.write_all(&[0, 40, 1, 2, 3]).unwrap();
    let t0 = Instant::now();
    let n = s.read(&mut buf).map_err(|e| e.kind());
    assert!(
        matches!(n, Ok(0)) || matches!(n, Err(std::io::ErrorKind::ConnectionReset)),
        "{n:?}"
    );
    assert!(t0.elapsed() < Duration::from_secs(4));

    // An active connection that keeps asking within the timeout stays open.
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    for _ in 0..4 {
        std::thread::sleep(Duration::from_millis(500));
        let q = query_msg("app.gslb.test", RecordType::A, None);
        tcp_send(&mut s, &q.to_vec().unwrap());
        let m = Message::from_vec(&tcp_recv(&mut s).expect("still open")).unwrap();
        assert_eq!(m.metadata.id, q.metadata.id);
    }
}

#[test]
fn tcp_client_that_never_reads_is_closed() {
    // One TCP connection allowed. A client pipelines queries without ever reading the
    // replies, so the server's writes stall; after the idle timeout the server must give
    // up on it, or it holds the only slot (and its task) forever.
    let cfg = format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\ntcp_idle_timeout = \"1s\"\ntcp_max_connections = 1\n{}",
        config()
    );
    let g = Gslb::start(&cfg);
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.set_recv_buffer_size(4096).unwrap();
    sock.connect(&g.addr.into()).unwrap();
    let mut stuck: TcpStream = sock.into();
    stuck
        .set_write_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    let q = query_msg("big.gslb.test", RecordType::AAAA, Some(edns(4096)))
        .to_vec()
        .unwrap();
    let mut chunk = Vec::new();
    while chunk.len() < 60_000 {
        chunk.extend_from_slice(&(q.len() as u16).to_be_bytes());
        chunk.extend_from_slice(&q);
    }
    let t0 = Instant::now();
    let mut sent = 0usize;
    // Until a write times out: the server has stopped reading.
    while let Ok(n) = stuck.write(&chunk) {
        sent += n;
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "server kept reading {sent} bytes"
        );
    }
    // The stalled write outlives the idle timeout; then the slot must be free again.
    std::thread::sleep(Duration::from_millis(2500));
    let mut s = TcpStream::connect(g.addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let q = query_msg("app.gslb.test", RecordType::A, None);
    tcp_send(&mut s, &q.to_vec().unwrap());
    let reply = tcp_recv(&mut s).unwrap_or_else(|| {
        panic!(
            "a new connection is not served (stuck one still holds the slot after {sent} bytes); logs:\n{}",
            g.logs()
                .lines()
                .filter(|l| l.contains("tcp"))
                .collect::<Vec<_>>()
                .join("\n")
        )
    });
    let m = Message::from_vec(&reply).unwrap();
    assert_eq!(a_records(&m), vec![Ipv4Addr::new(192, 0, 2, 1)]);
    drop(stuck);
}

/// In-zone chains are followed to their end (up to 8 aliases): the answer holds every
/// alias and the final data, and the end decides the rcode. A chain longer than that
/// ends at the 8th alias with no negative data, so the resolver continues from there.
#[test]
fn cname_chains_are_followed_to_the_end() {
    let g = start();
    for t in BOTH {
        let m = ask(g.addr, "hop1.gslb.test", RecordType::A, t);
        assert_answer(
            &m,
            &[
                "hop1.gslb.test. 3600 IN CNAME hop2.gslb.test.",
                "hop2.gslb.test. 3600 IN CNAME svc-alias.gslb.test.",
                "svc-alias.gslb.test. 3600 IN CNAME app.gslb.test.",
                "app.gslb.test. 30 IN A 192.0.2.1",
            ],
            &format!("hop1 A over {t:?}"),
        );

        let m = ask(g.addr, "hop1.gslb.test", RecordType::MX, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert_eq!(m.answers.len(), 3, "three aliases, no MX: {t:?}");
        assert_eq!(show(&m.authorities), vec![neg_soa_gslb()], "{t:?}");

        let m = ask(g.addr, "hop-gone.gslb.test", RecordType::A, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{t:?}");
        assert_eq!(
            show(&m.answers),
            vec![
                "hop-gone.gslb.test. 3600 IN CNAME dangling.gslb.test.",
                "dangling.gslb.test. 3600 IN CNAME nothere.gslb.test.",
            ],
            "{t:?}"
        );
        assert_eq!(show(&m.authorities), vec![neg_soa_gslb()], "{t:?}");

        let m = ask(g.addr, "long0.gslb.test", RecordType::A, t);
        let want: Vec<String> = (0..8)
            .map(|i| format!("long{i}.gslb.test. 3600 IN CNAME long{}.gslb.test.", i + 1))
            .collect();
        let want: Vec<&str> = want.iter().map(String::as_str).collect();
        assert_answer(&m, &want, &format!("long0 A over {t:?}"));
    }
}

/// The end of an in-zone CNAME chain decides the rcode and the negative data (RFC 6604
/// §2.1, RFC 2308 §2.1/§2.2): a target that does not exist gives NXDOMAIN with the SOA
/// (the CNAME still in the answer); a target without the type gives NOERROR with the
/// SOA; a target outside our zones leaves the rest to the resolver.
#[test]
fn cname_chain_ends_decide_negative_answers() {
    let g = start();
    for t in BOTH {
        let m = ask(g.addr, "dangling.gslb.test", RecordType::A, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain, "{t:?}");
        assert!(m.metadata.authoritative);
        assert_eq!(
            show(&m.answers),
            vec!["dangling.gslb.test. 3600 IN CNAME nothere.gslb.test."],
            "{t:?}"
        );
        assert_eq!(show(&m.authorities), vec![neg_soa_gslb()], "{t:?}");

        let m = ask(g.addr, "alias.gslb.test", RecordType::MX, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert_eq!(
            show(&m.answers),
            vec!["alias.gslb.test. 3600 IN CNAME www.gslb.test."],
            "{t:?}"
        );
        assert_eq!(show(&m.authorities), vec![neg_soa_gslb()], "{t:?}");

        let m = ask(g.addr, "ext.gslb.test", RecordType::A, t);
        assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{t:?}");
        assert_eq!(
            show(&m.answers),
            vec!["ext.gslb.test. 3600 IN CNAME target.example.net."],
            "{t:?}"
        );
        assert!(m.authorities.is_empty(), "{t:?}");
    }
}
