//! 1,000 records form one unbroken chain. Most are recorded in process
//! through the library (fast); every 20th goes through the binary, so the
//! binary and the library are shown to append to the same chain.

use truce_agent::RecordInput;
use truce_shared::Category;

use crate::support::{parse_id, verified_chain, TestDir};

#[test]
fn one_thousand_records_form_one_unbroken_chain() {
    let t = TestDir::initialised();
    let mut printed = Vec::new();
    let mut agent = t.open();
    for i in 0..1000u32 {
        if i % 20 == 0 {
            let lat = format!("{}", 48.0 + f64::from(i) / 10_000.0);
            let out = t.ok(&[
                "record",
                "--category",
                "shelling",
                "--lat",
                &lat,
                "--lon",
                "37.9",
                "--description",
                "via binary",
            ]);
            printed.push((i, parse_id(&out)));
        } else {
            let mut input = RecordInput::new(Category::SmallArmsFire, 48.5, 37.9);
            input.description = format!("in process {i}");
            agent.record(&input).unwrap();
        }
    }
    drop(agent);
    let ids = verified_chain(&t.dir);
    assert_eq!(ids.len(), 1000);
    for (i, id) in printed {
        assert_eq!(ids[i as usize], id, "the id the binary printed for record {i} is at seq {}", i + 1);
    }
    let check = t.open().check_chain().unwrap();
    assert_eq!(check.reports, 1000);
    assert_eq!(check.head.map(|h| h.id), ids.last().copied());
}
