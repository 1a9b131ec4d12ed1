//! Retention rules over calendar edges (year boundary, ISO week 53, month ends in two zones,
//! both DST changes in Europe/Berlin, equal timestamps) and properties over random histories.

use dbbackup::format::Id;
use dbbackup::retention::{apply, Candidate, Count, Policy, Rule};
use jiff::tz::TimeZone;
use jiff::Timestamp;
use proptest::prelude::*;

fn id(n: u32) -> Id {
    let mut b = [0u8; 32];
    b[..4].copy_from_slice(&n.to_be_bytes());
    Id(b)
}

fn cands(times: &[&str]) -> Vec<Candidate> {
    times
        .iter()
        .enumerate()
        .map(|(i, t)| Candidate {
            id: id(i as u32),
            time: t.parse().unwrap(),
            tags: Vec::new(),
        })
        .collect()
}

fn policy(rule: Rule, n: u32) -> Policy {
    let mut p = Policy::default();
    p.set(rule, Some(Count::N(n)));
    p
}

/// The times of the kept snapshots, newest first.
fn kept(p: &Policy, c: &[Candidate], tz: &TimeZone) -> Vec<String> {
    apply(p, c, tz)
        .unwrap()
        .into_iter()
        .filter(|d| d.keep)
        .map(|d| d.time.to_string())
        .collect()
}

fn zone(name: &str) -> TimeZone {
    TimeZone::get(name).unwrap()
}

#[test]
fn daily_across_a_year_boundary() {
    let c = cands(&[
        "2024-12-30T06:00:00Z",
        "2024-12-30T18:00:00Z",
        "2024-12-31T06:00:00Z",
        "2024-12-31T23:59:59Z",
        "2025-01-01T00:00:00Z",
        "2025-01-01T12:00:00Z",
        "2025-01-02T01:00:00Z",
    ]);
    assert_eq!(
        kept(&policy(Rule::Daily, 3), &c, &TimeZone::UTC),
        ["2025-01-02T01:00:00Z", "2025-01-01T12:00:00Z", "2024-12-31T23:59:59Z"]
    );
    assert_eq!(
        kept(&policy(Rule::Yearly, 5), &c, &TimeZone::UTC),
        // The newest of 2025, the newest of 2024, and the oldest (counts remain).
        ["2025-01-02T01:00:00Z", "2024-12-31T23:59:59Z", "2024-12-30T06:00:00Z"]
    );
}

#[test]
fn iso_week_53_spans_new_year() {
    // 2020 has an ISO week 53: Monday 2020-12-28 to Sunday 2021-01-03.
    let days: Vec<String> = (0..22)
        .map(|d| {
            let t: Timestamp = "2020-12-20T12:00:00Z".parse().unwrap();
            t.checked_add(jiff::SignedDuration::from_hours(24 * d))
                .unwrap()
                .to_string()
        })
        .collect();
    let refs: Vec<&str> = days.iter().map(String::as_str).collect();
    let c = cands(&refs);
    assert_eq!(
        kept(&policy(Rule::Weekly, 3), &c, &TimeZone::UTC),
        [
            "2021-01-10T12:00:00Z", // 2021-W01
            "2021-01-03T12:00:00Z", // 2020-W53, though in 2021
            "2020-12-27T12:00:00Z", // 2020-W52
        ]
    );
}

#[test]
fn month_ends_depend_on_the_zone() {
    let c = cands(&[
        "2024-01-31T23:30:00Z",
        "2024-02-01T00:30:00Z",
        "2024-02-29T23:59:00Z",
        "2024-03-01T00:00:00Z",
    ]);
    assert_eq!(
        kept(&policy(Rule::Monthly, 2), &c, &TimeZone::UTC),
        ["2024-03-01T00:00:00Z", "2024-02-29T23:59:00Z"]
    );
    // In New York (UTC-5) the two newest are both in February and 02-01T00:30Z is January.
    assert_eq!(
        kept(&policy(Rule::Monthly, 2), &c, &zone("America/New_York")),
        ["2024-03-01T00:00:00Z", "2024-02-01T00:30:00Z"]
    );
}

#[test]
fn daylight_saving_changes_in_berlin() {
    // Spring forward (2024-03-31, 23-hour day): 22:30Z and 23:30Z on 03-30 are two local days.
    let c = cands(&["2024-03-29T12:00:00Z", "2024-03-30T22:30:00Z", "2024-03-30T23:30:00Z"]);
    assert_eq!(
        kept(&policy(Rule::Daily, 2), &c, &TimeZone::UTC),
        ["2024-03-30T23:30:00Z", "2024-03-29T12:00:00Z"]
    );
    assert_eq!(
        kept(&policy(Rule::Daily, 2), &c, &zone("Europe/Berlin")),
        ["2024-03-30T23:30:00Z", "2024-03-30T22:30:00Z"]
    );
    // Fall back (2024-10-27): 02:30 CEST (00:30Z) and 02:30 CET (01:30Z) are the same local
    // hour, so one bucket; UTC sees three hours.
    let c = cands(&["2024-10-26T23:30:00Z", "2024-10-27T00:30:00Z", "2024-10-27T01:30:00Z"]);
    assert_eq!(kept(&policy(Rule::Hourly, 5), &c, &TimeZone::UTC).len(), 3);
    assert_eq!(
        kept(&policy(Rule::Hourly, 5), &c, &zone("Europe/Berlin")),
        ["2024-10-27T01:30:00Z", "2024-10-26T23:30:00Z"]
    );
}

#[test]
fn equal_timestamps_are_ordered_by_id() {
    let t: Timestamp = "2024-05-05T05:05:05Z".parse().unwrap();
    let a = Candidate {
        id: id(1),
        time: t,
        tags: vec![],
    };
    let b = Candidate {
        id: id(2),
        time: t,
        tags: vec![],
    };
    for order in [vec![a.clone(), b.clone()], vec![b.clone(), a.clone()]] {
        let d = apply(&policy(Rule::Last, 1), &order, &TimeZone::UTC).unwrap();
        assert_eq!((d[0].id, d[0].keep, d[1].keep), (id(2), true, false));
    }
}

#[test]
fn within_tags_and_reasons() {
    let mut c = cands(&[
        "2024-06-01T00:00:00Z",
        "2024-06-08T00:00:00Z",
        "2024-06-09T00:00:00Z",
        "2024-06-10T00:00:00Z",
    ]);
    c[0].tags = vec!["monthly-export".into(), "audit".into()];
    c[1].tags = vec!["audit".into()];
    let mut p = Policy {
        within: Some("2d".parse().unwrap()),
        ..Policy::default()
    };
    // Relative to the newest snapshot; exactly two days older is not within.
    assert_eq!(
        kept(&p, &c, &TimeZone::UTC),
        ["2024-06-10T00:00:00Z", "2024-06-09T00:00:00Z"]
    );
    // A tag list keeps snapshots with all its tags; several lists are alternatives.
    p.tags = vec![vec!["audit".into(), "monthly-export".into()]];
    let d = apply(&p, &c, &TimeZone::UTC).unwrap();
    assert_eq!(d[3].reasons, ["tag audit,monthly-export"]);
    assert!(!d[2].keep);
    assert_eq!(d[0].reasons, ["within 2d"]);
    p.tags.push(vec!["audit".into()]);
    assert_eq!(kept(&p, &c, &TimeZone::UTC).len(), 4);
    assert!(Policy::default().is_empty());
    assert!(policy(Rule::Daily, 0).is_empty());
    assert_eq!("all".parse::<Count>(), Ok(Count::All));
    assert!("x".parse::<Count>().is_err());
}

fn arb_history() -> impl Strategy<Value = Vec<Candidate>> {
    // Up to 60 snapshots over about three years, some at equal times.
    prop::collection::vec((0i64..100_000_000, 0u32..4), 1..60).prop_map(|v| {
        let base: Timestamp = "2022-01-01T00:00:00Z".parse().unwrap();
        v.into_iter()
            .enumerate()
            .map(|(i, (secs, tag))| Candidate {
                id: id(i as u32),
                time: base
                    .checked_add(jiff::SignedDuration::from_secs(secs - secs % 3600))
                    .unwrap(),
                tags: if tag == 0 { vec!["keep".into()] } else { vec![] },
            })
            .collect()
    })
}

fn arb_policy() -> impl Strategy<Value = Policy> {
    prop::collection::vec(prop::option::of(0u32..6), 6).prop_map(|counts| {
        let mut p = Policy::default();
        for (rule, n) in Rule::ALL.iter().zip(counts) {
            p.set(*rule, n.map(Count::N));
        }
        p
    })
}

proptest! {
    #[test]
    fn retention_properties(hist in arb_history(), p in arb_policy(), zone_ix in 0usize..3, seed in any::<u64>()) {
        let tz = [TimeZone::UTC, zone("Europe/Berlin"), zone("Pacific/Auckland")][zone_ix].clone();
        let d = apply(&p, &hist, &tz).unwrap();
        prop_assert_eq!(d.len(), hist.len());
        // Newest first.
        prop_assert!(d.windows(2).all(|w| w[0].time >= w[1].time));
        // Kept exactly when there is a reason.
        prop_assert!(d.iter().all(|x| x.keep != x.reasons.is_empty()));
        // No rule keeps more than its count.
        for rule in Rule::ALL {
            if let Some(Count::N(n)) = p.counts.get(&rule) {
                let used = d.iter().filter(|x| x.reasons.iter().any(|r| r == rule.name())).count();
                prop_assert!(used <= *n as usize, "{} kept {} > {}", rule.name(), used, n);
            }
        }
        // keep-last N keeps the N newest.
        if let Some(Count::N(n)) = p.counts.get(&Rule::Last) {
            prop_assert!(d.iter().take(*n as usize).all(|x| x.keep));
        }
        // The outcome does not depend on the listing order.
        let mut shuffled = hist.clone();
        let mut s = seed;
        for i in (1..shuffled.len()).rev() {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (s >> 33) as usize % (i + 1));
        }
        prop_assert_eq!(&apply(&p, &shuffled, &tz).unwrap(), &d);
        // Raising any count never removes a snapshot that was kept.
        for rule in Rule::ALL {
            let mut more = p.clone();
            let n = match p.counts.get(&rule) { Some(Count::N(n)) => n + 1, _ => 1 };
            more.set(rule, Some(Count::N(n)));
            let d2 = apply(&more, &hist, &tz).unwrap();
            for (a, b) in d.iter().zip(&d2) {
                prop_assert!(!a.keep || b.keep, "raising {} removed {}", rule.name(), a.time);
            }
        }
        // Enough daily buckets keep the newest snapshot of every local day.
        let mut daily = Policy::default();
        daily.set(Rule::Daily, Some(Count::All));
        let dd = apply(&daily, &hist, &tz).unwrap();
        let mut seen = std::collections::HashSet::new();
        for x in &dd {
            let day = x.time.to_zoned(tz.clone()).date();
            prop_assert_eq!(x.keep, seen.insert(day) || std::ptr::eq(x, dd.last().unwrap()));
        }
    }
}
