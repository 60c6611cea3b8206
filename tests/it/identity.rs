//! Which replica answered, and proof of a client's address: NSID (RFC 5001), CH TXT
//! id.server. / hostname.bind. / version.bind., and DNS Cookies (RFC 7873 with RFC 9018
//! server cookies), over UDP and TCP. The cookie's hash is recomputed here with the
//! SipHash crate from the secret file the server was given, byte for byte.

use crate::common::*;

use std::hash::Hasher;
use std::net::IpAddr;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption, NSIDPayload};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};

const BOTH: [Transport; 2] = [Transport::Udp, Transport::Tcp];
/// RFC 9018 Appendix A's secret.
const SECRET: &str = "e5e973e5a6b2a43f48e7dc849e37bfcf";

fn start(server_extra: &str) -> (Gslb, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("cookie.secret");
    std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
    let g = Gslb::start(&format!(
        "[server]\nlisten = [\"127.0.0.1:0\"]\nudp_sockets = 1\ncookie_secret_file = \"{}\"\n{server_extra}\n{ZONE}\n\
         [[gateway]]\nname = \"a\"\naddresses = [\"192.0.2.1\"]\n\
         [[service]]\nname = \"app.gslb.test\"\nendpoints = [{{ gateway = \"a\" }}]\n",
        secret.display()
    ));
    (g, dir)
}

fn with_options(name: &str, qtype: RecordType, options: Vec<EdnsOption>) -> Message {
    let mut e = Edns::new();
    e.set_max_payload(1232);
    for o in options {
        e.options_mut().insert(o);
    }
    query_msg(name, qtype, Some(e))
}

fn cookie_option(bytes: &[u8]) -> EdnsOption {
    EdnsOption::Unknown(u16::from(EdnsCode::Cookie), bytes.to_vec())
}

fn reply_cookie(m: &Message) -> Option<Vec<u8>> {
    match m.edns.as_ref()?.option(EdnsCode::Cookie)? {
        EdnsOption::Unknown(_, d) => Some(d.clone()),
        other => panic!("cookie parsed as {other:?}"),
    }
}

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

/// RFC 9018 §4.4: SipHash-2-4(client cookie | version | reserved | timestamp | IP).
fn expected_hash(client: &[u8], head: &[u8], ip: IpAddr) -> Vec<u8> {
    let key: [u8; 16] = hex(SECRET).try_into().unwrap();
    let mut h = siphasher::sip::SipHasher24::new_with_key(&key);
    h.write(client);
    h.write(head);
    match ip {
        IpAddr::V4(v4) => h.write(&v4.octets()),
        IpAddr::V6(v6) => h.write(&v6.octets()),
    }
    h.finish().to_le_bytes().to_vec()
}

fn txt(m: &Message) -> String {
    match &m.answers[..] {
        [r] => match &r.data {
            RData::TXT(t) => String::from_utf8(t.txt_data.concat()).unwrap(),
            other => panic!("not TXT: {other:?}"),
        },
        other => panic!("not one record: {other:?}"),
    }
}

fn chaos(name: &str) -> Message {
    let mut m = Message::new(0x4242, MessageType::Query, OpCode::Query);
    let mut q = Query::query(Name::from_ascii(name).unwrap(), RecordType::TXT);
    q.set_query_class(DNSClass::CH);
    m.add_query(q);
    m
}

#[test]
fn cookies_are_echoed_with_an_rfc9018_server_cookie() {
    let (g, _dir) = start("");
    let client = hex("2464c4abcf10c957");
    for t in BOTH {
        let m = exchange(
            g.addr,
            &with_options("app.gslb.test", RecordType::A, vec![cookie_option(&client)]),
            t,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        let c = reply_cookie(&m).unwrap_or_else(|| panic!("no cookie over {t:?}: {m:?}"));
        assert_eq!(c.len(), 24, "client cookie + 16-byte server cookie");
        assert_eq!(&c[..8], &client[..], "the client cookie comes back");
        assert_eq!(&c[8..12], &[1, 0, 0, 0], "version 1, reserved zero");
        let stamp = u32::from_be_bytes(c[12..16].try_into().unwrap());
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as u32;
        assert!(now.abs_diff(stamp) <= 5, "timestamp {stamp}, now {now}");
        assert_eq!(
            c[16..].to_vec(),
            expected_hash(&client, &c[8..16], "127.0.0.1".parse().unwrap()),
            "the hash over {t:?}"
        );

        // The client returns it: still answered, with a cookie again.
        let m = exchange(
            g.addr,
            &with_options("app.gslb.test", RecordType::A, vec![cookie_option(&c)]),
            t,
        );
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert_eq!(reply_cookie(&m).unwrap()[..8], client[..]);

        // RFC 7873 §5.2.2: a length no cookie has is FORMERR.
        for bad in [7, 9, 15, 41] {
            let m = exchange(
                g.addr,
                &with_options(
                    "app.gslb.test",
                    RecordType::A,
                    vec![cookie_option(&vec![7; bad])],
                ),
                t,
            );
            assert_eq!(
                m.metadata.response_code,
                ResponseCode::FormErr,
                "{bad} octets over {t:?}"
            );
        }
        // No cookie asked, none given.
        let m = exchange(
            g.addr,
            &with_options("app.gslb.test", RecordType::A, vec![]),
            t,
        );
        assert!(reply_cookie(&m).is_none());
    }
}

#[test]
fn cookies_can_be_turned_off() {
    let (g, _dir) = start("cookies = false");
    let m = exchange(
        g.addr,
        &with_options("app.gslb.test", RecordType::A, vec![cookie_option(&[1; 8])]),
        Transport::Udp,
    );
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert!(reply_cookie(&m).is_none());
}

#[test]
fn nsid_and_chaos_names_say_which_replica_answered() {
    let (g, _dir) = start("nsid = \"ns1.eu-west\"");
    for t in BOTH {
        let m = exchange(
            g.addr,
            &with_options(
                "app.gslb.test",
                RecordType::A,
                vec![EdnsOption::NSID(NSIDPayload::new(Vec::new()).unwrap())],
            ),
            t,
        );
        match m.edns.as_ref().and_then(|e| e.option(EdnsCode::NSID)) {
            Some(EdnsOption::NSID(p)) => assert_eq!(p.as_ref(), b"ns1.eu-west"),
            other => panic!("NSID over {t:?}: {other:?}"),
        }
        // Not asked, not sent (RFC 5001 §2.2).
        let m = exchange(
            g.addr,
            &with_options("app.gslb.test", RecordType::A, vec![]),
            t,
        );
        assert!(m.edns.as_ref().unwrap().option(EdnsCode::NSID).is_none());

        for name in ["id.server.", "hostname.bind.", "ID.SERVER."] {
            let m = exchange(g.addr, &chaos(name), t);
            assert_eq!(m.metadata.response_code, ResponseCode::NoError, "{name}");
            assert_eq!(txt(&m), "ns1.eu-west", "{name} over {t:?}");
            assert_eq!(m.answers[0].dns_class, DNSClass::CH);
        }
        let m = exchange(g.addr, &chaos("version.bind."), t);
        assert_eq!(txt(&m), format!("gslb {}", env!("CARGO_PKG_VERSION")));
        let m = exchange(g.addr, &chaos("authors.bind."), t);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused);
    }
}

#[test]
fn a_hidden_version_and_no_nsid_are_refused() {
    let (g, _dir) = start("version = \"\"");
    for name in ["version.bind.", "version.server.", "id.server."] {
        let m = exchange(g.addr, &chaos(name), Transport::Udp);
        assert_eq!(m.metadata.response_code, ResponseCode::Refused, "{name}");
        assert!(m.answers.is_empty());
    }
}
