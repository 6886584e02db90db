//! `TestPostgres`: real PostgreSQL servers, reached with tokio-postgres
//! through the URL they give, side by side, measured, and gone after drop.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio_postgres::config::Host;
use tokio_postgres::{Client, NoTls};
use truce_testkit::TestPostgres;

fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a tokio runtime").block_on(f)
}

/// Connects with tokio-postgres, driving the connection on the runtime.
async fn connect(url: &str) -> Client {
    let (client, connection) =
        tokio_postgres::connect(url, NoTls).await.unwrap_or_else(|e| panic!("connect to {url}: {e}"));
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            eprintln!("connection: {e}");
        }
    });
    client
}

/// The process ids whose parent is `pid` (zombies included).
fn children(pid: u32) -> Vec<u32> {
    let mut kids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Some(child) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else { continue };
        let fields: Vec<&str> = stat[stat.rfind(')').expect("a stat line") + 1..].split_whitespace().collect();
        if fields.get(1).and_then(|p| p.parse::<u32>().ok()) == Some(pid) {
            kids.push(child);
        }
    }
    kids
}

/// Whether a process runs: it has a `/proc` entry and is not a zombie.
fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat[stat.rfind(')').expect("a stat line") + 1..].split_whitespace().next() != Some("Z"),
        Err(_) => false,
    }
}

#[test]
fn the_url_names_only_the_socket_directory() {
    let pg = TestPostgres::start();
    let url = pg.url("some_db");
    let config: tokio_postgres::Config = url.parse().unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(config.get_hosts(), [Host::Unix(pg.dir().to_path_buf())], "{url}");
    assert_eq!(config.get_ports(), [5432], "{url}");
    assert_eq!(config.get_user(), Some("postgres"));
    assert_eq!(config.get_dbname(), Some("some_db"));
    // libpq reads the same URL.
    assert_eq!(pg.psql("postgres", "SELECT current_database()").trim(), "postgres");
}

#[test]
fn two_servers_at_once_each_with_its_own_data() {
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(TestPostgres::start);
        let b = s.spawn(TestPostgres::start);
        (a.join().expect("first server"), b.join().expect("second server"))
    });
    assert_ne!(a.dir(), b.dir());
    assert_ne!(a.pid(), b.pid());
    let (url_a, url_b) = (a.fresh_database(), b.create_database("reports"));
    assert!(url_b.starts_with("postgres://postgres@/reports?"), "{url_b}");
    block_on(async {
        let (ca, cb) = (connect(&url_a).await, connect(&url_b).await);
        for (client, name) in [(&ca, "a"), (&cb, "b")] {
            client
                .batch_execute("CREATE TABLE report (id bigint PRIMARY KEY, body bytea NOT NULL)")
                .await
                .expect("create table");
            for id in 0..10i64 {
                client
                    .execute("INSERT INTO report VALUES ($1, $2)", &[&id, &format!("{name}{id}").into_bytes()])
                    .await
                    .expect("insert");
            }
        }
        for (client, name) in [(&ca, "a"), (&cb, "b")] {
            let rows = client.query("SELECT id, body FROM report ORDER BY id", &[]).await.expect("select");
            let got: Vec<(i64, Vec<u8>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
            let want: Vec<(i64, Vec<u8>)> = (0..10).map(|id| (id, format!("{name}{id}").into_bytes())).collect();
            assert_eq!(got, want, "server {name}");
        }
        // Each server has only its own database.
        let names = |rows: Vec<tokio_postgres::Row>| rows.iter().map(|r| r.get::<_, String>(0)).collect::<Vec<_>>();
        let q = "SELECT datname FROM pg_database WHERE datname NOT LIKE 'template%' ORDER BY 1";
        let on_a = names(ca.query(q, &[]).await.expect("databases on a"));
        let on_b = names(cb.query(q, &[]).await.expect("databases on b"));
        assert!(on_a.iter().any(|d| d.starts_with("truce_test_")) && !on_a.contains(&"reports".into()), "{on_a:?}");
        assert_eq!(on_b, ["postgres", "reports"]);
    });
}

#[test]
fn fresh_databases_are_distinct() {
    let pg = TestPostgres::start();
    let (x, y) = (pg.fresh_database(), pg.fresh_database());
    assert_ne!(x, y);
    block_on(async {
        connect(&x).await.batch_execute("CREATE TABLE only_in_x (n int)").await.expect("create in x");
        let missing = connect(&y).await.batch_execute("SELECT * FROM only_in_x").await;
        assert!(missing.is_err(), "a fresh database sees another's table");
    });
}

#[test]
fn the_flavours_differ_in_durability_and_neither_listens_on_tcp() {
    let (fast, durable) = std::thread::scope(|s| {
        let f = s.spawn(TestPostgres::start);
        let d = s.spawn(TestPostgres::start_durable);
        (f.join().expect("fast server"), d.join().expect("durable server"))
    });
    let show = |pg: &TestPostgres, what: &str| pg.psql("postgres", &format!("SHOW {what}")).trim().to_string();
    for (pg, want) in [(&fast, "off"), (&durable, "on")] {
        assert_eq!(show(pg, "fsync"), want);
        assert_eq!(show(pg, "synchronous_commit"), want);
        assert_eq!(show(pg, "full_page_writes"), want);
        assert_eq!(show(pg, "listen_addresses"), "");
        assert_eq!(show(pg, "unix_socket_directories"), pg.dir().to_str().unwrap());
    }
    // The durable one's data is on a disk, not in memory.
    if std::env::var_os("TRUCE_PG_TMPDIR").is_none() {
        assert!(!durable.dir().starts_with("/dev/shm"), "{}", durable.dir().display());
    }
}

#[test]
fn cpu_time_counts_the_backends_work_before_and_after_they_exit() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let before = pg.cpu_time();
    let during = block_on(async {
        let client = connect(&url).await;
        let started = Instant::now();
        // Work for the backend process: about a second of CPU.
        while started.elapsed() < Duration::from_millis(500) {
            client.query_one("SELECT sum(i) FROM generate_series(1, 1000000) i", &[]).await.expect("sum");
        }
        // Still connected: the backend is a live child of the postmaster.
        pg.cpu_time()
    });
    assert!(during >= before + Duration::from_millis(200), "cpu_time {before:?} -> {during:?} after 0.5 s of queries");
    // Once the backend has exited, its time is in the postmaster's cutime.
    let deadline = Instant::now() + Duration::from_secs(10);
    while pg.cpu_time() < during {
        assert!(Instant::now() < deadline, "cpu_time fell from {during:?} to {:?}", pg.cpu_time());
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn drop_stops_every_process_and_removes_the_directory() {
    let pg = TestPostgres::start();
    let url = pg.fresh_database();
    let (dir, pid) = (pg.dir().to_path_buf(), pg.pid());
    let kids = children(pid);
    assert!(!kids.is_empty(), "the postmaster {pid} has no children (checkpointer, walwriter…)");
    assert!(alive(pid));
    block_on(async {
        let client = connect(&url).await;
        client.batch_execute("SELECT 1").await.expect("a query");
        drop(pg);
        assert!(client.batch_execute("SELECT 1").await.is_err(), "the server still answers after drop");
    });
    assert!(!dir.exists(), "{} is still there", dir.display());
    assert!(!Path::new(&dir).join("data").exists());
    let deadline = Instant::now() + Duration::from_secs(10);
    while alive(pid) || kids.iter().any(|&k| alive(k)) {
        assert!(Instant::now() < deadline, "the postmaster {pid} or one of {kids:?} still runs after drop");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Not a test on its own: `a_killed_test_process_leaves_no_server_behind`
/// runs this in a child process, which starts a server and is SIGKILLed
/// with it running, so no `Drop` runs.
#[test]
fn child_killed_with_a_server_running() {
    let Some(out) = std::env::var_os("TRUCE_PG_CHILD_OUT") else { return };
    let pg = TestPostgres::start();
    std::fs::write(out, format!("{}\n{}\n", pg.dir().display(), pg.pid())).expect("write the child's report");
    let _ = std::process::Command::new("kill").args(["-KILL", &std::process::id().to_string()]).status();
    unreachable!("SIGKILL did not end the child");
}

#[test]
fn a_killed_test_process_leaves_no_server_behind() {
    use std::os::unix::fs::PermissionsExt;
    // The child's TRUCE_PG_TMPDIR, open to the postgres user, and empty at
    // the end.
    let tmp = tempfile::tempdir().expect("a TMPDIR for the child");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod 755");
    let report = tempfile::tempdir().expect("a dir for the child's report");
    let out = report.path().join("child");
    let status = std::process::Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", "child_killed_with_a_server_running", "--nocapture", "--test-threads=1"])
        .env("TRUCE_PG_CHILD_OUT", &out)
        .env("TRUCE_PG_TMPDIR", tmp.path())
        .stdout(std::process::Stdio::null())
        .status()
        .expect("run the child");
    assert!(!status.success(), "the child was to be killed: {status}");
    let said = std::fs::read_to_string(&out).expect("the child's report");
    let mut lines = said.lines();
    let dir = Path::new(lines.next().expect("the child's server dir")).to_path_buf();
    let pid: u32 = lines.next().and_then(|p| p.parse().ok()).expect("the child's postmaster pid");
    assert!(dir.starts_with(tmp.path()), "the child's server was in {}, not under TRUCE_PG_TMPDIR", dir.display());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left: Vec<_> =
            std::fs::read_dir(tmp.path()).expect("TRUCE_PG_TMPDIR").flatten().map(|e| e.path()).collect();
        if !alive(pid) && left.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "30 s after the kill: postmaster {pid} alive: {}, left: {left:?}",
            alive(pid)
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
