//! The query path's metrics: the labelled children a query touches, resolved once per
//! plan into `PlanMetrics` (plain vectors of counter handles indexed by zone, transport,
//! type and rcode), which the snapshot carries, so a query does an index and an atomic
//! add: no hashing, no lock.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use prometheus::{Histogram, IntCounter};

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Metrics;
use super::endpoints::ServiceSeries;
use super::requests::ZoneCounts;
use crate::plan::{EndpointId, Plan, ServiceId, ZoneId};

/// Query types we count by name; everything else is `OTHER`.
const QTYPES: [(RecordType, &str); 10] = [
    (RecordType::A, "A"),
    (RecordType::AAAA, "AAAA"),
    (RecordType::NS, "NS"),
    (RecordType::SOA, "SOA"),
    (RecordType::CNAME, "CNAME"),
    (RecordType::TXT, "TXT"),
    (RecordType::MX, "MX"),
    (RecordType::ANY, "ANY"),
    (RecordType::AXFR, "AXFR"),
    (RecordType::IXFR, "IXFR"),
];
const QTYPE_OTHER: usize = QTYPES.len();
pub(super) const N_QTYPES: usize = QTYPES.len() + 1;

const RCODES: [(ResponseCode, &str); 7] = [
    (ResponseCode::NoError, "NOERROR"),
    (ResponseCode::NXDomain, "NXDOMAIN"),
    (ResponseCode::Refused, "REFUSED"),
    (ResponseCode::FormErr, "FORMERR"),
    (ResponseCode::NotImp, "NOTIMP"),
    (ResponseCode::ServFail, "SERVFAIL"),
    (ResponseCode::BADVERS, "BADVERS"),
];
const RCODE_OTHER: usize = RCODES.len();
pub(super) const N_RCODES: usize = RCODES.len() + 1;

/// The `proto` label values, in `Transport` order.
pub const PROTOS: [&str; 2] = ["udp", "tcp"];

/// Why a message got no reply at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// Shorter than a DNS header.
    Runt = 0,
    /// QR=1: a response, never answered.
    Response = 1,
}

/// The transport a query came over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Udp = 0,
    Tcp = 1,
}

fn qtype_index(t: Option<RecordType>) -> usize {
    t.and_then(|t| QTYPES.iter().position(|(q, _)| *q == t))
        .unwrap_or(QTYPE_OTHER)
}

fn rcode_index(r: ResponseCode) -> usize {
    RCODES
        .iter()
        .position(|(c, _)| *c == r)
        .unwrap_or(RCODE_OTHER)
}

pub(super) fn qtype_name(i: usize) -> &'static str {
    QTYPES.get(i).map_or("OTHER", |(_, n)| n)
}

pub(super) fn rcode_name(i: usize) -> &'static str {
    RCODES.get(i).map_or("OTHER", |(_, n)| n)
}

impl Metrics {
    /// Removes every request series of the zone whose origin is `zone`.
    pub(super) fn forget_zone(&self, zone: &str) {
        self.requests.forget(zone);
    }

    /// Resolves the children the query path needs for `plan`.
    pub fn for_plan(&self, plan: &Arc<Plan>) -> PlanMetrics {
        let zones: Vec<String> = std::iter::once(String::new())
            .chain(plan.zones.iter().map(|z| z.origin.to_string()))
            .collect();
        let dns = zones.iter().map(|zone| self.requests.zone(zone)).collect();
        let duration = PROTOS.map(|p| self.dns_duration.with_label_values(&[p]));
        let series = {
            let mut current = self.services.lock().unwrap_or_else(|p| p.into_inner());
            let next = Arc::new(ServiceSeries::for_plan(plan, &current));
            *current = next.clone();
            next
        };
        PlanMetrics {
            dropped: ["runt", "response"].map(|r| self.dns_dropped.with_label_values(&[r])),
            dns,
            duration,
            series,
            rrl: self.rrl.clone(),
        }
    }
}

/// Pre-resolved children for one plan.
#[derive(Debug)]
pub struct PlanMetrics {
    /// Per zone + 1 (slot 0 is "no zone": REFUSED, FORMERR before a name was read),
    /// indexed `(proto * N_QTYPES + qtype) * N_RCODES + rcode`.
    dns: Vec<Arc<ZoneCounts>>,
    /// In `Dropped` order.
    dropped: [IntCounter; 2],
    duration: [Histogram; 2],
    /// Answers, fail-open and panic counts and `gslb_endpoint_up`, per service and
    /// endpoint.
    series: Arc<ServiceSeries>,
    pub rrl: super::RrlMetrics,
}

impl PlanMetrics {
    /// Counts one request. `zone` is the plan's zone index, if the name was in one.
    pub fn request(
        &self,
        zone: Option<ZoneId>,
        transport: Transport,
        qtype: Option<RecordType>,
        rcode: ResponseCode,
        seconds: f64,
    ) {
        let z = zone.map_or(0, |z| z.index() + 1);
        let proto = transport as usize;
        let i = (proto * N_QTYPES + qtype_index(qtype)) * N_RCODES + rcode_index(rcode);
        if let Some(c) = self.dns.get(z).and_then(|counts| counts.get(i)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
        self.duration[proto].observe(seconds);
    }

    pub fn dropped(&self, why: Dropped) {
        self.dropped[why as usize].inc();
    }

    pub fn answered(&self, service: ServiceId, endpoint: EndpointId) {
        self.series.answered(service, endpoint);
    }

    pub fn fail_open(&self, service: ServiceId) {
        self.series.fail_open(service);
    }

    pub fn panic(&self, service: ServiceId) {
        self.series.panic(service);
    }

    /// Sets `gslb_endpoint_up` of every endpoint of `services` (those a snapshot built
    /// afresh; the others did not change); `ready(service, endpoint)` says whether it
    /// may answer.
    pub fn endpoints_ready(
        &self,
        services: &[ServiceId],
        ready: impl Fn(ServiceId, EndpointId) -> bool,
    ) {
        for &s in services {
            for e in EndpointId::all(self.series.endpoints_of(s)) {
                self.series.set_up(s, e, ready(s, e));
            }
        }
    }
}
