//! Incidents and corroboration (DESIGN §5): reports of one category from
//! different devices within 10 minutes and 2 km of each other are one
//! incident; its corroboration is the number of distinct devices. Reports
//! arrive through `import` of the real binary, in any order.

use std::collections::BTreeMap;

use truce_shared::{Category, SignedReport};

use crate::common::*;
use crate::investigators::{report, Mission};

const T0: i64 = 1_795_338_900_000;
const MINUTE: i64 = 60_000;
/// About 1 km of latitude, in degrees.
const KM: f64 = 1.0 / 111.2;

/// A report at the plain position moved `north_km` north, `minutes` after
/// T0, with no bearing (the event is where the monitor stood).
fn at(d: &mut Device, category: Category, minutes: i64, north_km: f64) -> SignedReport {
    report(d, |o| {
        o.category = category;
        o.observed_at = T0 + minutes * MINUTE;
        o.position.lat += north_km * KM;
        o.bearing_deg = None;
        o.distance_m = None;
    })
}

/// Incident id and corroboration of every verified report, by id.
fn grouping(m: &Mission) -> BTreeMap<String, (Option<i64>, Option<u64>)> {
    m.rows(&["--history"])
        .into_iter()
        .map(|r| (r["id"].as_str().unwrap().to_string(), (r["incident"].as_i64(), r["corroboration"].as_u64())))
        .collect()
}

fn of(g: &BTreeMap<String, (Option<i64>, Option<u64>)>, r: &SignedReport) -> (i64, u64) {
    let (i, c) = g[&hex::encode(r.id())];
    (i.expect("in an incident"), c.expect("corroborated"))
}

fn devices(m: &Mission, n: u8) -> Vec<Device> {
    (0..n)
        .map(|i| {
            let d = Device::fixed(60 + i);
            m.enrol(&d, &format!("laptop-{i}"));
            d
        })
        .collect()
}

fn two_devices_five_minutes_and_one_km_apart_are_one_incident(db: Db) {
    let mut m = Mission::on(db);
    let mut d = devices(&m, 2);
    let a = at(&mut d[0], Category::Shelling, 0, 0.0);
    let b = at(&mut d[1], Category::Shelling, 5, 1.0);
    m.import(&[a.clone(), b.clone()]);
    let g = grouping(&m);
    assert_eq!(of(&g, &a), of(&g, &b));
    assert_eq!(of(&g, &a).1, 2);
    // An exact duplicate never counts twice.
    m.import(&[b.clone(), a.clone()]);
    assert_eq!(grouping(&m), g);
    let out = ok(m.cli(&["incidents", "--min-corroboration", "2"]));
    assert!(out.contains("1 incident(s)") && out.contains("2 report(s) from 2 device(s)"), "{out}");
    let stats = ok(m.cli(&["stats"]));
    assert!(stats.contains("incidents: 1 (1 seen by 2 or more devices, at most 2)"), "{stats}");
    assert_eq!(m.rows(&["--min-corroboration", "2"]).len(), 2);
    assert_eq!(m.rows(&["--min-corroboration", "3"]).len(), 0);
}

fn one_device_twice_corroborates_nothing(db: Db) {
    let mut m = Mission::on(db);
    let mut d = devices(&m, 1);
    let a = at(&mut d[0], Category::Shelling, 0, 0.0);
    let b = at(&mut d[0], Category::Shelling, 3, 0.5);
    m.import(&[a.clone(), b.clone()]);
    let g = grouping(&m);
    assert_eq!(of(&g, &a).0, of(&g, &b).0, "one event");
    assert_eq!(of(&g, &a).1, 1, "seen by one device");
}

fn another_category_or_three_km_or_eleven_minutes_is_another_incident(db: Db) {
    let mut m = Mission::on(db);
    let mut d = devices(&m, 4);
    let a = at(&mut d[0], Category::Shelling, 0, 0.0);
    let other_category = at(&mut d[1], Category::SmallArmsFire, 1, 0.2);
    let far = at(&mut d[2], Category::Shelling, 1, 3.0);
    let late = at(&mut d[3], Category::Shelling, 11, 0.0);
    m.import(&[a.clone(), other_category.clone(), far.clone(), late.clone()]);
    let g = grouping(&m);
    let incidents: std::collections::BTreeSet<i64> =
        [&a, &other_category, &far, &late].iter().map(|r| of(&g, r).0).collect();
    assert_eq!(incidents.len(), 4, "{g:?}");
    assert!([&a, &other_category, &far, &late].iter().all(|r| of(&g, r).1 == 1));
}

fn nothing_observed_is_not_an_incident(db: Db) {
    let mut m = Mission::on(db);
    let mut d = devices(&m, 2);
    let a = at(&mut d[0], Category::NothingObserved, 0, 0.0);
    let b = at(&mut d[1], Category::NothingObserved, 0, 0.0);
    m.import(&[a.clone(), b.clone()]);
    assert!(grouping(&m).values().all(|(i, c)| i.is_none() && c.is_none()));
}

fn a_late_arrival_joins_the_right_incident_and_bridges_two(db: Db) {
    // Three devices see one barrage: at 0, 7 and 14 minutes. Without the
    // middle report, the first and last are 14 minutes apart: two
    // incidents. The middle one arrives days later on a USB stick and joins
    // them; a second, unrelated incident is left alone.
    let mut m = Mission::on(db);
    let mut d = devices(&m, 4);
    let first = at(&mut d[0], Category::Shelling, 0, 0.0);
    let last = at(&mut d[2], Category::Shelling, 14, 0.0);
    let unrelated = at(&mut d[3], Category::Shelling, 8, 10.0);
    m.import(&[first.clone(), last.clone(), unrelated.clone()]);
    let g = grouping(&m);
    assert_ne!(of(&g, &first).0, of(&g, &last).0);
    let middle = at(&mut d[1], Category::Shelling, 7, 0.5);
    m.import(std::slice::from_ref(&middle));
    let g = grouping(&m);
    let (incident, corroboration) = of(&g, &middle);
    assert_eq!(of(&g, &first), (incident, 3));
    assert_eq!(of(&g, &last), (incident, 3));
    assert_eq!(of(&g, &unrelated).1, 1);

    // The groups do not depend on the order of arrival.
    let mut again = Mission::on(db);
    for (i, dev) in d.iter().enumerate() {
        again.enrol(dev, &format!("laptop-{i}"));
    }
    again.import(&[middle.clone(), unrelated.clone(), last.clone(), first.clone()]);
    let g2 = grouping(&again);
    let partition = |g: &BTreeMap<String, (Option<i64>, Option<u64>)>| {
        let mut by: BTreeMap<i64, Vec<String>> = BTreeMap::new();
        for (id, (i, _)) in g {
            by.entry(i.unwrap()).or_default().push(id.clone());
        }
        let mut groups: Vec<Vec<String>> = by.into_values().collect();
        groups.sort();
        groups
    };
    assert_eq!(partition(&g), partition(&g2));
    assert_eq!(corroboration, of(&g2, &middle).1);
}

fn the_estimated_event_position_groups_monitors_far_apart(db: Db) {
    // Two monitors 6 km apart, each looking at the same impact 3 km away:
    // the event positions coincide, so it is one incident.
    let mut m = Mission::on(db);
    let mut d = devices(&m, 2);
    let south = report(&mut d[0], |o| {
        o.observed_at = T0;
        o.bearing_deg = Some(0);
        o.distance_m = Some((2500, 3500));
    });
    let north = report(&mut d[1], |o| {
        o.observed_at = T0 + MINUTE;
        o.position.lat += 6.0 * KM;
        o.bearing_deg = Some(180);
        o.distance_m = Some((3000, 3000));
    });
    m.import(&[south.clone(), north.clone()]);
    let g = grouping(&m);
    assert_eq!(of(&g, &south), (of(&g, &north).0, 2));
    let rows = m.rows(&[]);
    let est: Vec<f64> = rows.iter().map(|r| r["est_lat"].as_f64().unwrap()).collect();
    assert!((est[0] - est[1]).abs() < 0.001, "{est:?}");
}

fn quarantined_reports_corroborate_once_enrolled_and_a_new_window_regroups(db: Db) {
    let mut m = Mission::on(db);
    let mut d = devices(&m, 1);
    let mut stranger = Device::fixed(70);
    let a = at(&mut d[0], Category::Drone, 0, 0.0);
    let s = at(&mut stranger, Category::Drone, 15, 0.0);
    m.import(&[a.clone(), s.clone()]);
    assert_eq!(of(&grouping(&m), &a).1, 1);
    m.enrol(&stranger, "late");
    let g = grouping(&m);
    assert_eq!(of(&g, &s).1, 1, "15 minutes apart: two incidents under the default window");
    let out = ok(m.cli(&["incidents", "--window-minutes", "20"]));
    assert!(out.contains("window now 20 min, 2000 m"), "{out}");
    let g = grouping(&m);
    assert_eq!(of(&g, &a), (of(&g, &s).0, 2));
    let err = fails(m.cli(&["incidents", "--radius-m", "0"]));
    assert!(err.contains("1 to 100000 metres"), "{err}");
}

fn a_long_chain_is_found_from_either_end_and_a_crowd_at_one_spot_is_one_incident(db: Db) {
    // A column of reports 1.5 km apart along 9 km: one chained incident,
    // whose span the server must keep as it grows, so that reports near
    // either end still join it. Then 300 reports at one spot (the shape
    // of a heavy barrage) stay one incident with one more device.
    let mut m = Mission::on(db);
    let mut d = devices(&m, 4);
    let column: Vec<SignedReport> = (0..7).map(|i| at(&mut d[0], Category::Shelling, i, 1.5 * i as f64)).collect();
    m.import(&column);
    let north_end = at(&mut d[1], Category::Shelling, 7, 10.4);
    let south_end = at(&mut d[2], Category::Shelling, 0, -1.9);
    m.import(&[north_end.clone(), south_end.clone()]);
    let crowd: Vec<SignedReport> = (0..300).map(|i| at(&mut d[3], Category::Shelling, i % 5, 4.5)).collect();
    m.import(&crowd);
    let g = grouping(&m);
    let incident = of(&g, &column[0]).0;
    for r in column.iter().chain([&north_end, &south_end]).chain(&crowd) {
        assert_eq!(of(&g, r), (incident, 4), "{g:?}");
    }
}

crate::on_both_databases!(
    two_devices_five_minutes_and_one_km_apart_are_one_incident,
    one_device_twice_corroborates_nothing,
    another_category_or_three_km_or_eleven_minutes_is_another_incident,
    nothing_observed_is_not_an_incident,
    a_late_arrival_joins_the_right_incident_and_bridges_two,
    the_estimated_event_position_groups_monitors_far_apart,
    quarantined_reports_corroborate_once_enrolled_and_a_new_window_regroups,
    a_long_chain_is_found_from_either_end_and_a_crowd_at_one_spot_is_one_incident,
);
