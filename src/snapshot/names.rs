//! The name index of one plan: every name that exists in our zones, in wire form and
//! lower case, to the zone it is in and what lives there. Every query looks a name up
//! here (the fast path straight from the query's bytes). At 10,000 services it is one
//! of the largest tables, so the names lie one after another in one buffer and an
//! entry is 16 bytes, where a map of boxed keys to (zone, node) took an allocation and
//! 48 bytes per name.

use std::hash::{BuildHasher, RandomState};

use hashbrown::HashTable;
use hickory_proto::rr::{Record, RecordType};

use crate::plan::{ServiceId, ZoneId};

/// Static data at a name: its records grouped by type.
pub type StaticData = Vec<(RecordType, Vec<Record>)>;

/// What lives at a name, as the index hands it out.
#[derive(Debug, Clone, Copy)]
pub enum Node<'a> {
    /// A load-balanced service (index into `Plan::services`).
    Service(ServiceId),
    /// Static data (SOA and NS included at the apex).
    Static(&'a [(RecordType, Vec<Record>)]),
    /// A name with no data but with names below it (RFC 8020: NODATA, not NXDOMAIN).
    EmptyNonTerminal,
}

/// What lives at a name, as the index is built from it.
#[derive(Debug)]
pub enum Stored {
    Service(ServiceId),
    Static(StaticData),
    EmptyNonTerminal,
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    /// The name is `names[at..at + len]`.
    at: u32,
    len: u8,
    kind: Kind,
    zone: u32,
    /// The service, or the index into `statics`.
    value: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Service,
    Static,
    EmptyNonTerminal,
}

#[derive(Debug, Default)]
pub struct NameIndex {
    names: Box<[u8]>,
    table: HashTable<Entry>,
    statics: Box<[StaticData]>,
    hasher: RandomState,
}

impl NameIndex {
    /// The index of these names (wire form, lower case, at most 255 octets; each once).
    pub fn build(items: Vec<(Box<[u8]>, ZoneId, Stored)>) -> NameIndex {
        let hasher = RandomState::new();
        let mut names = Vec::with_capacity(items.iter().map(|(n, _, _)| n.len()).sum());
        let mut table = HashTable::with_capacity(items.len());
        let mut statics = Vec::new();
        for (name, zone, stored) in items {
            let (kind, value) = match stored {
                Stored::Service(s) => (Kind::Service, s.index()),
                Stored::Static(data) => {
                    statics.push(data);
                    (Kind::Static, statics.len() - 1)
                }
                Stored::EmptyNonTerminal => (Kind::EmptyNonTerminal, 0),
            };
            let entry = Entry {
                at: u32::try_from(names.len()).expect("names fit in 4 GiB"),
                len: u8::try_from(name.len()).expect("a wire name is at most 255 octets"),
                kind,
                zone: u32::try_from(zone.index()).expect("zone index fits u32"),
                value: u32::try_from(value).expect("index fits u32"),
            };
            names.extend_from_slice(&name);
            table.insert_unique(hasher.hash_one(&*name), entry, |e: &Entry| {
                hasher.hash_one(names_of(&names, e))
            });
        }
        NameIndex {
            names: names.into(),
            table,
            statics: statics.into(),
            hasher,
        }
    }

    /// What lives at the name whose wire form in lower case is `wire`.
    pub fn get(&self, wire: &[u8]) -> Option<(ZoneId, Node<'_>)> {
        let hash = self.hasher.hash_one(wire);
        let e = self
            .table
            .find(hash, |e| names_of(&self.names, e) == wire)?;
        let node = match e.kind {
            Kind::Service => Node::Service(ServiceId(e.value as usize)),
            Kind::Static => Node::Static(&self.statics[e.value as usize]),
            Kind::EmptyNonTerminal => Node::EmptyNonTerminal,
        };
        Some((ZoneId(e.zone as usize), node))
    }
}

fn names_of<'a>(names: &'a [u8], e: &Entry) -> &'a [u8] {
    &names[e.at as usize..e.at as usize + e.len as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wire(labels: &[&str]) -> Box<[u8]> {
        let mut out = Vec::new();
        for l in labels {
            out.push(l.len() as u8);
            out.extend_from_slice(l.as_bytes());
        }
        out.push(0);
        out.into()
    }

    /// Every name finds its own entry, and a name the index lacks, even one that
    /// shares a prefix or the bytes of another, finds none.
    #[test]
    fn each_name_finds_its_own_entry() {
        let mut items = vec![
            (
                wire(&["gslb", "test"]),
                ZoneId(0),
                Stored::Static(Vec::new()),
            ),
            (
                wire(&["a", "gslb", "test"]),
                ZoneId(0),
                Stored::EmptyNonTerminal,
            ),
        ];
        for i in 0..1000 {
            let label = format!("s{i}");
            let zone = ZoneId(i % 3);
            items.push((
                wire(&[&label, "a", "gslb", "test"]),
                zone,
                Stored::Service(ServiceId(i)),
            ));
        }
        let index = NameIndex::build(items);
        for i in 0..1000 {
            let label = format!("s{i}");
            let got = index.get(&wire(&[&label, "a", "gslb", "test"]));
            assert!(
                matches!(got, Some((z, Node::Service(s))) if s == ServiceId(i) && z == ZoneId(i % 3)),
                "{label}: {got:?}"
            );
        }
        assert!(matches!(
            index.get(&wire(&["a", "gslb", "test"])),
            Some((_, Node::EmptyNonTerminal))
        ));
        assert!(
            matches!(index.get(&wire(&["gslb", "test"])), Some((_, Node::Static(d))) if d.is_empty())
        );
        for absent in [
            wire(&["s1000", "a", "gslb", "test"]),
            wire(&["test"]),
            wire(&["gslb"]),
        ] {
            assert!(index.get(&absent).is_none());
        }
        // The bytes of a name without its final zero octet.
        let apex = wire(&["gslb", "test"]);
        assert!(index.get(&apex[..apex.len() - 1]).is_none());
    }
}
