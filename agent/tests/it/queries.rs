//! `list`, `show` and `status`: text and the documented JSON fields,
//! prefixes, states, the server's answers and receipts.

use truce_shared::time::format_ms;
use truce_shared::wire::Status;

use crate::support::{log_key, parse_id, record_ack, TestDir};

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[test]
fn list_show_and_status_report_states_answers_and_receipts() {
    let t = TestDir::initialised();
    let a = parse_id(&t.ok(&[
        "record",
        "--category",
        "shelling",
        "--lat",
        "48.5",
        "--lon",
        "37.9",
        "--at",
        "2026-11-22T09:15:00Z",
        "--bearing",
        "315",
        "--distance",
        "5-7km",
        "--effect",
        "outgoing",
        "--weapon",
        "152mm artillery",
        "--count",
        "2",
        "--basis",
        "heard",
        "--description",
        "two explosions NNW",
    ]));
    let b = parse_id(&t.ok(&[
        "record",
        "--category",
        "small-arms-fire",
        "--lat",
        "48",
        "--lon",
        "37",
        "--count",
        "30",
        "--about",
    ]));
    let c =
        parse_id(&t.ok(&["record", "--category", "drone", "--lat", "48", "--lon", "37", "--count", "3", "--at-least"]));
    let d = parse_id(&t.ok(&[
        "record",
        "--category",
        "nothing-observed",
        "--lat",
        "48",
        "--lon",
        "37",
        "--at",
        "-6h",
        "--until",
        "now",
        "--amends",
        &hex::encode(c)[..10],
    ]));

    // The server answers: a delivered, b quarantined, c rejected; d stays pending.
    let key = log_key(3);
    let server_key = key.public();
    let results = vec![
        (a, Status::Accepted),
        (b, Status::Quarantined("unknown device".into())),
        (c, Status::Rejected("equivocation".into())),
    ];
    let outcome = record_ack(&t, &key, &results, 1_795_338_900_000);
    assert_eq!((outcome.delivered, outcome.quarantined, outcome.rejected, outcome.ignored), (1, 1, 1, 0));
    // A second answer for the same reports changes nothing.
    assert_eq!(record_ack(&t, &key, &results, 1_795_338_900_000).ignored, 3);

    // list: newest first, JSON Lines.
    let lines: Vec<serde_json::Value> = t.ok(&["list", "--json"]).lines().map(json).collect();
    let ids: Vec<_> = lines.iter().map(|l| l["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(ids, [d, c, b, a].map(hex::encode));
    assert_eq!(lines[3]["state"], "delivered");
    assert_eq!(lines[3]["seq"], 1);
    assert_eq!(lines[3]["observation"]["observed_at"], format_ms(1_795_338_900_000));
    assert_eq!(lines[3]["observation"]["distance_m"], serde_json::json!([5000, 7000]));
    assert_eq!(lines[3]["observation"]["effect"], "outgoing");
    assert_eq!(lines[3]["observation"]["count"], serde_json::json!({"n": 2, "qualifier": "exact"}));
    assert_eq!(lines[3]["answer"]["status"], "accepted");
    assert_eq!(lines[2]["observation"]["count"]["qualifier"], "about");
    assert_eq!(lines[2]["answer"]["reason"], "unknown device");
    assert_eq!(lines[1]["observation"]["count"]["qualifier"], "at-least");
    assert_eq!(lines[1]["state"], "rejected");
    assert_eq!(lines[1]["receipt"]["protocol"], 2, "a protocol-2 receipt covers every result, rejected too");
    // Answered but not proven in the server's log yet.
    assert_eq!(lines[3]["proven"], false);
    assert_eq!(lines[3]["log_entry"], 0);
    assert!(lines[0]["proven"].is_null());
    assert_eq!(lines[0]["amends"], hex::encode(c));
    assert_eq!(lines[0]["state"], "pending");
    assert!(lines[0]["observation"]["observed_until"].is_string());
    for l in &lines {
        for k in ["id", "seq", "prev", "device", "state", "recorded_at", "amends", "observation", "answer", "receipt"] {
            assert!(l.get(k).is_some(), "list line lacks {k}: {l}");
        }
    }

    let pending: Vec<_> = t.ok(&["list", "--state", "pending", "--json"]).lines().map(json).collect();
    assert_eq!(pending.len(), 1);
    assert!(t.fails(&["list", "--state", "lost"]).contains("--state: unknown state"));
    let text = t.ok(&["list"]);
    assert_eq!(text.lines().count(), 4);
    assert!(text.contains("delivered, not proven"), "{text}");
    assert!(text.lines().next().unwrap().starts_with(&hex::encode(d)[..12]));

    // show: by prefix, with the receipt and its validity.
    let shown = json(&t.ok(&["show", &hex::encode(a)[..8], "--json"]));
    assert_eq!(shown["id"], hex::encode(a));
    assert_eq!(shown["verified"], true);
    assert_eq!(shown["receipt"]["valid"], true);
    assert_eq!(shown["receipt"]["server_key"], hex::encode(server_key));
    assert_eq!(shown["receipt"]["server_time"], format_ms(1_795_338_900_000));
    assert_eq!(shown["receipt"]["covers"], serde_json::json!([hex::encode(a), hex::encode(b), hex::encode(c)]));
    let text = t.ok(&["show", &hex::encode(b)]);
    assert!(text.contains("server said:  quarantined (unknown device)"), "{text}");
    assert!(text.contains("state:        quarantined, not proven"), "{text}");
    assert!(text.contains("log entry:    1 (not proven yet"), "{text}");
    assert!(text.contains("signature valid"), "{text}");
    assert!(t.fails(&["show", "zz"]).contains("is not a report id"));
    assert!(t.fails(&["show", &"0".repeat(64)]).contains("no report"));

    // status.
    let s = json(&t.ok(&["status", "--json"]));
    assert_eq!(s["counts"], serde_json::json!({"pending": 1, "delivered": 1, "quarantined": 1, "rejected": 1}));
    assert_eq!(s["head"]["seq"], 4);
    assert_eq!(s["head"]["id"], hex::encode(d));
    assert!(s["server"].is_null());
    assert!(s["last_sync"].is_null());
    assert_eq!(s["log"]["not_proven"], 3);
    assert!(s["log"]["key"].is_null() && s["log"]["checkpoint"].is_null());
    let text = t.ok(&["status"]);
    assert!(text.contains("1 pending, 1 delivered, 1 quarantined, 1 rejected"), "{text}");
}

#[test]
fn an_ambiguous_prefix_is_a_clear_error() {
    let t = TestDir::initialised();
    // 40 reports: some pair shares its first hex digit.
    let ids: Vec<String> = (0..40)
        .map(|_| t.ok(&["record", "--category", "mine", "--lat", "1", "--lon", "1"]).trim().to_string())
        .collect();
    let first = ids.iter().find(|i| ids.iter().filter(|j| j[..1] == i[..1]).count() > 1).unwrap();
    let err = t.fails(&["show", &first[..1]]);
    assert!(err.contains("matches more than one report"), "{err}");
    let err = t.fails(&["record", "--category", "mine", "--lat", "1", "--lon", "1", "--amends", &first[..1]]);
    assert!(err.contains("--amends") && err.contains("more than one"), "{err}");
}
