//! Zones from the config: SOA, NS with glue, and static records, compiled into
//! `plan::Zone`; and the rules for names written in the config.

use std::net::IpAddr;

use hickory_proto::rr::rdata::{A, AAAA, CNAME, MX, NS, SOA, TXT};
use hickory_proto::rr::{Name, RData, Record};
use toml::Spanned;

use super::compile::parse_ip;
use super::schema::{RecordValue, ZoneDef};
use super::{ConfigError, Locator};
use crate::plan::{Zone, ZoneId};

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn compile_zone(loc: &Locator<'_>, z: &ZoneDef) -> Result<Zone> {
    let origin = parse_name(loc, &z.origin, None)?;
    let ttl = ttl_secs(z.ttl.0);
    if z.ns.is_empty() {
        return Err(loc.error(
            z.origin.span(),
            format!("zone {origin} needs at least one ns"),
        ));
    }

    let mut ns = Vec::new();
    let mut glue = Vec::new();
    let mut records = Vec::new();
    for n in &z.ns {
        let name = parse_name(loc, &n.name, Some(&origin))?;
        let in_zone = origin.zone_of(&name);
        if in_zone && n.addresses.is_empty() {
            return Err(loc.error(
                n.name.span(),
                format!("name server {name} is inside the zone and needs glue addresses"),
            ));
        }
        for a in &n.addresses {
            let rdata = match parse_ip(loc, a)? {
                IpAddr::V4(ip) => RData::A(A(ip)),
                IpAddr::V6(ip) => RData::AAAA(AAAA(ip)),
            };
            let rec = Record::from_rdata(name.clone(), ttl, rdata);
            if in_zone {
                records.push(rec.clone());
            }
            glue.push(rec);
        }
        ns.push(Record::from_rdata(origin.clone(), ttl, RData::NS(NS(name))));
    }

    let mname = match &z.soa.mname {
        Some(m) => parse_name(loc, m, Some(&origin))?,
        None => match &ns[0].data {
            RData::NS(NS(n)) => n.clone(),
            _ => unreachable!("ns records hold NS data"),
        },
    };
    let rname = match &z.soa.rname {
        Some(r) => parse_name(loc, r, Some(&origin))?,
        None => Name::from_ascii("hostmaster")
            .and_then(|h| h.append_domain(&origin))
            .map_err(|e| loc.error(z.origin.span(), format!("cannot form SOA rname: {e}")))?,
    };
    let minimum = ttl_secs(z.soa.minimum.0);
    let soa = Record::from_rdata(
        origin.clone(),
        ttl,
        RData::SOA(SOA::new(
            mname,
            rname,
            z.soa.serial,
            secs_i32(z.soa.refresh.0),
            secs_i32(z.soa.retry.0),
            secs_i32(z.soa.expire.0),
            minimum,
        )),
    );

    for r in &z.records {
        let name = parse_name(loc, &r.name, Some(&origin))?;
        if !origin.zone_of(&name) {
            return Err(loc.error(
                r.name.span(),
                format!("record {name} is outside zone {origin}"),
            ));
        }
        let rttl = r.ttl.map_or(ttl, |d| ttl_secs(d.0));
        let rtype = r.rtype.get_ref().to_ascii_uppercase();
        if r.split && rtype != "TXT" {
            return Err(loc.error(r.rtype.span(), "`split` applies to TXT records only"));
        }
        let value = match r.value.get_ref() {
            RecordValue::One(v) => v.trim(),
            RecordValue::Strings(strings) => {
                if rtype != "TXT" {
                    return Err(loc.error(
                        r.value.span(),
                        format!("a list of strings is a TXT value; {rtype} takes one text"),
                    ));
                }
                if r.split {
                    return Err(loc.error(
                        r.value.span(),
                        "`split` applies to a single text, not to a list of strings",
                    ));
                }
                let rdata = RData::TXT(TXT::new(txt_strings(loc, &r.value, strings)?));
                records.push(Record::from_rdata(name, rttl, rdata));
                continue;
            }
        };
        let bad = |what: &str| loc.error(r.value.span(), format!("invalid {what} value {value:?}"));
        let rdata = match rtype.as_str() {
            "A" => RData::A(A(value.parse().map_err(|_| bad("A"))?)),
            "AAAA" => RData::AAAA(AAAA(value.parse().map_err(|_| bad("AAAA"))?)),
            "CNAME" => {
                if name == origin {
                    return Err(loc.error(r.name.span(), "a CNAME cannot sit at the zone apex"));
                }
                RData::CNAME(CNAME(
                    parse_name_str(value, Some(&origin)).map_err(|_| bad("CNAME"))?,
                ))
            }
            "TXT" => {
                // A single text is kept as it is written (not trimmed): spaces can matter.
                let RecordValue::One(text) = r.value.get_ref() else {
                    unreachable!("lists were handled above")
                };
                if text.len() > 255 && !r.split {
                    return Err(loc.error(
                        r.value.span(),
                        format!(
                            "TXT text of {} bytes: a character-string holds at most 255; \
                             write the record's strings as a list, or set split = true \
                             to cut it every 255 bytes",
                            text.len()
                        ),
                    ));
                }
                RData::TXT(TXT::new(split_txt(text)))
            }
            "MX" => {
                let (pref, host) = value
                    .split_once(char::is_whitespace)
                    .ok_or_else(|| bad("MX"))?;
                let pref: u16 = pref.parse().map_err(|_| bad("MX"))?;
                let host = parse_name_str(host.trim(), Some(&origin)).map_err(|_| bad("MX"))?;
                RData::MX(MX::new(pref, host))
            }
            other => {
                return Err(loc.error(
                    r.rtype.span(),
                    format!("unsupported record type {other:?} (A, AAAA, CNAME, TXT, MX)"),
                ));
            }
        };
        records.push(Record::from_rdata(name, rttl, rdata));
    }

    // RFC 1034 §3.6.2: a CNAME owner has no other data.
    for r in &records {
        if matches!(r.data, RData::CNAME(_))
            && records.iter().filter(|o| o.name == r.name).count() > 1
        {
            let def = z
                .records
                .iter()
                .find(|d| parse_name(loc, &d.name, Some(&origin)).ok().as_ref() == Some(&r.name))
                .expect("record came from a definition");
            return Err(loc.error(
                def.name.span(),
                format!("{} has a CNAME and other records", r.name),
            ));
        }
    }

    let soa_ttl = soa.ttl;
    Ok(Zone {
        origin,
        negative_ttl: soa_ttl.min(minimum),
        soa,
        ns,
        glue,
        records,
    })
}

/// An in-zone CNAME loop (`a → b → a`) can never be answered: reject it, at the first
/// alias of the loop in file order. Chains that end are fine (answers follow up to 8).
pub(super) fn reject_cname_loops(
    loc: &Locator<'_>,
    defs: &[ZoneDef],
    zones: &[Zone],
) -> Result<()> {
    let alias_of = |name: &Name| {
        zones
            .iter()
            .flat_map(|z| &z.records)
            .find_map(|r| match &r.data {
                RData::CNAME(CNAME(target)) if &r.name == name => Some(target),
                _ => None,
            })
    };
    for (def, zone) in defs.iter().zip(zones) {
        for r in def
            .records
            .iter()
            .filter(|r| r.rtype.get_ref().eq_ignore_ascii_case("CNAME"))
        {
            let start = parse_name(loc, &r.name, Some(&zone.origin))?;
            let mut chain = vec![&start];
            while let Some(next) = alias_of(chain[chain.len() - 1]) {
                if next == &start {
                    let path: Vec<String> = chain.iter().map(|n| n.to_string()).collect();
                    return Err(loc.error(
                        r.value.span(),
                        format!("CNAME loop: {} → {start}", path.join(" → ")),
                    ));
                }
                if chain.contains(&next) {
                    break; // a loop further on; reported at its own first alias
                }
                chain.push(next);
            }
        }
    }
    Ok(())
}

pub(super) fn find_zone(zones: &[Zone], name: &Name) -> Option<ZoneId> {
    zones
        .iter()
        .enumerate()
        .filter(|(_, z)| z.origin.zone_of(name))
        .max_by_key(|(_, z)| z.origin.num_labels())
        .map(|(i, _)| ZoneId(i))
}

/// A name from the config: relative to `origin` when given and the text does not end
/// with a dot (`@` is the origin itself); absolute otherwise. Result is lower-case FQDN.
pub(super) fn parse_name(
    loc: &Locator<'_>,
    s: &Spanned<String>,
    origin: Option<&Name>,
) -> Result<Name> {
    parse_name_str(s.get_ref().trim(), origin)
        .map_err(|e| loc.error(s.span(), format!("invalid name {:?}: {e}", s.get_ref())))
}

pub(super) fn parse_name_str(
    text: &str,
    origin: Option<&Name>,
) -> std::result::Result<Name, String> {
    if text.is_empty() {
        return Err("empty name".into());
    }
    if text == "@" {
        return origin
            .cloned()
            .ok_or_else(|| "@ is only valid inside a zone".to_string());
    }
    if text.contains(char::is_whitespace) {
        return Err("names contain no spaces".into());
    }
    let mut name = Name::from_ascii(text).map_err(|e| e.to_string())?;
    if !text.ends_with('.') {
        match origin {
            Some(o) => name = name.append_domain(o).map_err(|e| e.to_string())?,
            None => name.set_fqdn(true),
        }
    }
    Ok(name.to_lowercase())
}

/// The exact character-strings of a TXT record, each at most 255 bytes
/// (RFC 1035 §3.3.14).
fn txt_strings(
    loc: &Locator<'_>,
    value: &Spanned<RecordValue>,
    strings: &[String],
) -> Result<Vec<String>> {
    if strings.is_empty() {
        return Err(loc.error(value.span(), "a TXT record needs at least one string"));
    }
    if let Some((i, s)) = strings.iter().enumerate().find(|(_, s)| s.len() > 255) {
        return Err(loc.error(
            value.span(),
            format!(
                "TXT string {} is {} bytes: a character-string holds at most 255",
                i + 1,
                s.len()
            ),
        ));
    }
    Ok(strings.to_vec())
}

/// TXT strings are at most 255 bytes each (RFC 1035 §3.3.14).
pub(super) fn split_txt(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    for ch in value.chars() {
        if cur.len() + ch.len_utf8() > 255 {
            out.push(std::mem::take(&mut cur));
        }
        cur.push(ch);
    }
    out.push(cur);
    out
}

/// RFC 2181 §8: TTLs are 31-bit; larger values are treated as 0 by receivers, so
/// clamp to the largest meaningful one.
pub(super) fn ttl_secs(d: std::time::Duration) -> u32 {
    u32::try_from(d.as_secs()).map_or(i32::MAX as u32, |s| s.min(i32::MAX as u32))
}

pub(super) fn secs_i32(d: std::time::Duration) -> i32 {
    i32::try_from(d.as_secs()).unwrap_or(i32::MAX)
}
