//! The benchmark harness must not rot: `bench --quick --json` runs to the
//! end against the real binaries and reports every figure of DESIGN §7 and
//! §13 as a finite, positive number (bytes resent after a cut: not
//! negative). The figures of a debug build mean nothing
//! and are not judged here; the README's table comes from `--release`.

use std::process::Command;

#[test]
fn bench_quick_reports_every_figure() {
    let out = Command::new(env!("CARGO_BIN_EXE_bench")).args(["--quick", "--json"]).output().expect("run bench");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench --quick failed:\n{stderr}");
    let stdout = String::from_utf8(out.stdout).expect("utf-8 output");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).expect("one JSON object");
    for key in [
        "ingest_per_s",
        "verify_per_s",
        "ingest_ratio",
        "sqlite_insert_cpu_us",
        "sqlite_minimal_cpu_us",
        "ingest_ceiling_ratio",
        "ingest_minimal_ceiling_ratio",
        "pg_ingest_per_s",
        "pg_ingest_ratio",
        "pg_ingest_server_cpu_us",
        "pg_ingest_db_cpu_us",
        "pg_servers_per_db",
        "record_p50_ms",
        "record_p99_ms",
        "commit_p99_ms",
        "record_p99_ratio",
        "record_cli_p50_ms",
        "record_cli_sealed_p50_ms",
        "wire_ratio",
        "handshake_bytes",
        "export_per_s",
        "idle_conn_kb",
        "agent_sync_peak_mb",
        "agent_unlock_peak_mb",
        "evidence_goodput_kbit_s",
        "evidence_link_kbit_s",
        "evidence_goodput_ratio",
        "evidence_chunk_bytes",
        "evidence_report_ack_s",
        "idle_report_ack_s",
    ] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} missing from {stdout}"));
        assert!(x.is_finite() && x > 0.0, "{key} = {x}");
    }
    // Nothing resent after a cut is a result: these may be 0.
    for key in ["evidence_resent_bytes", "evidence_resent_chunks"] {
        let x = v[key].as_f64().unwrap_or_else(|| panic!("{key} missing from {stdout}"));
        assert!(x.is_finite() && x >= 0.0, "{key} = {x}");
    }
    assert_eq!(v["quick"], true);
    // The wire figure includes TLS and the Acks, so it can never be below
    // the signed bytes themselves.
    assert!(v["wire_ratio"].as_f64().unwrap_or(0.0) > 1.0, "wire ratio below 1: {stdout}");
}
