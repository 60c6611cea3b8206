//! Liveness of the replicas' reports, judged at given instants.

use super::*;

fn report(up: &[(&str, bool)], fenced: bool) -> Report {
    Report {
        fenced,
        targets: up
            .iter()
            .map(|(k, up)| {
                (
                    k.to_string(),
                    Verdict {
                        up: *up,
                        reason: None,
                    },
                )
            })
            .collect(),
    }
}

/// Liveness is the age of each report against three heartbeats, judged at a given
/// instant: exact at the boundary, with no clock read by the judgement itself.
#[test]
fn reports_count_for_three_heartbeats() {
    let hb = Duration::from_secs(1);
    let t0 = Instant::now();
    let mut ex = Exchange {
        keys: vec!["a".to_string(), "b".to_string()].into(),
        ..Exchange::default()
    };
    ex.others.insert(
        "ns1".into(),
        Heard {
            report: report(&[("a", true)], false),
            at: t0,
        },
    );
    ex.others.insert(
        "ns2".into(),
        Heard {
            report: report(&[("a", false), ("b", true)], false),
            at: t0 + hb,
        },
    );
    ex.others.insert(
        "ns4".into(),
        Heard {
            report: report(&[("a", true)], true),
            at: t0 + hb,
        },
    );
    let names =
        |now: Instant| -> Vec<String> { ex.live(now, hb).into_iter().map(|(n, _)| n).collect() };
    assert_eq!(
        names(t0 + hb * 3),
        ["ns1", "ns2"],
        "a fenced replica never counts"
    );
    assert_eq!(names(t0 + hb * 3 + Duration::from_millis(1)), ["ns2"]);
    assert_eq!(names(t0 + hb * 4), ["ns2"]);
    assert!(names(t0 + hb * 5).is_empty());
    let live = ex.live(t0 + hb, hb);
    assert_eq!(live[1].1, [Some(false), Some(true)]);
    assert_eq!(
        live[0].1,
        [Some(true), None],
        "no verdict on a target it has not probed"
    );
    // Alone: no echo at all, or none within the lapse.
    assert!(ex.alone(t0, hb));
    ex.echo = Some(t0);
    assert!(!ex.alone(t0 + hb * 3, hb));
    assert!(ex.alone(t0 + hb * 3 + Duration::from_millis(1), hb));
}
