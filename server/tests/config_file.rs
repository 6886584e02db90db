//! `run`'s settings come in layers: the built-in defaults, then the config
//! file (`truce-server.toml` in the data dir, or `--config FILE`), then
//! `TRUCE_SERVER_*` variables, then flags. Checked through the real binary:
//! what a laptop is told in Welcome, and what `--print-config` prints.

use std::ffi::OsString;
use std::process::Command;

use crate::common::*;

/// `truce-server --data-dir DIR ARGS…` with `env` set.
fn server_cmd(server: &TestServer, args: &[&str], env: &[(&str, &str)]) -> Ran {
    run(Command::new(env!("CARGO_BIN_EXE_truce-server"))
        .arg("--data-dir")
        .arg(server.dir())
        .args(args)
        .env("RUST_LOG", "warn")
        .envs(env.iter().copied()))
}

/// Starts the server with the PKI's flags, `extra` and `env`; returns the
/// batch limit its Welcome announces; stops it.
async fn welcome_max_batch(server: &mut TestServer, pki: &Pki, extra: &[&str], env: &[(&str, &str)]) -> u32 {
    server.start_with_env(pki, extra, env);
    let c = Client::open(server.addr(), pki.client_tls("laptop")).await;
    let n = c.max_batch;
    c.bye().await;
    server.terminate();
    n
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_file_is_used_the_environment_overrides_it_and_a_flag_overrides_both() {
    let pki = Pki::new(&["laptop"]);
    let mut server = TestServer::init();
    std::fs::write(server.dir().join("truce-server.toml"), "max_batch = 7\nidle_timeout = 20\n").unwrap();
    assert_eq!(welcome_max_batch(&mut server, &pki, &[], &[]).await, 7, "the file's value");
    let env = [("TRUCE_SERVER_MAX_BATCH", "9")];
    assert_eq!(welcome_max_batch(&mut server, &pki, &[], &env).await, 9, "the environment over the file");
    assert_eq!(welcome_max_batch(&mut server, &pki, &["--max-batch", "11"], &env).await, 11, "a flag over both");

    // --print-config says the same, and where each value came from.
    let file = server.dir().join("truce-server.toml");
    let out = server_cmd(&server, &["run", "--print-config"], &[]).expect_ok();
    assert!(out.contains(&format!("max_batch = 7  # file {}", file.display())), "{out}");
    assert!(out.contains(&format!("idle_timeout = 20.0  # file {}", file.display())), "{out}");
    assert!(out.contains("max_frame = 4194304  # default"), "{out}");
    assert!(out.contains("# listen: not set (required)"), "{out}");
    let out = server_cmd(&server, &["run", "--print-config", "--max-batch", "11"], &env).expect_ok();
    assert!(out.contains("max_batch = 11  # flag --max-batch"), "{out}");
    let out = server_cmd(&server, &["run", "--print-config"], &env).expect_ok();
    assert!(out.contains("max_batch = 9  # environment TRUCE_SERVER_MAX_BATCH"), "{out}");
    // What it prints is a config file that gives the same settings.
    let copy = server.dir().join("printed.toml");
    std::fs::write(&copy, &out).unwrap();
    let again = server_cmd(&server, &["--config", copy.to_str().unwrap(), "run", "--print-config"], &[]).expect_ok();
    assert!(again.contains(&format!("max_batch = 9  # file {}", copy.display())), "{again}");
}

#[test]
fn print_config_masks_the_database_password() {
    let server = TestServer::init();
    std::fs::write(
        server.dir().join("truce-server.toml"),
        "database = \"postgres://truce:s3cret-in-file@db.example/truce?sslmode=require\"\n",
    )
    .unwrap();
    let out = server_cmd(&server, &["run", "--print-config"], &[]).expect_ok();
    assert!(!out.contains("s3cret"), "{out}");
    assert!(out.contains("database = \"postgres://truce:***@db.example/truce?sslmode=require\"  # file "), "{out}");
    // The variable beats the file, and is masked too, in either place.
    let url = "postgres://truce@db.example/truce?password=s3cret-in-env";
    let out = server_cmd(&server, &["run", "--print-config"], &[("TRUCE_DATABASE_URL", url)]).expect_ok();
    assert!(!out.contains("s3cret"), "{out}");
    assert!(out.contains("password=***\"  # environment TRUCE_DATABASE_URL"), "{out}");
    let out = server_cmd(&server, &["--database", "postgres://u:s3cret-flag@h/db", "run", "--print-config"], &[]);
    let out = out.expect_ok();
    assert!(!out.contains("s3cret") && out.contains("u:***@h/db"), "{out}");
}

#[test]
fn an_unknown_key_or_a_bad_value_is_an_error_naming_the_key_and_the_file() {
    let server = TestServer::init();
    let file = server.dir().join("truce-server.toml");
    let path = file.display().to_string();
    std::fs::write(&file, "listen = \"127.0.0.1:0\"\nmax_frames = 65536\n").unwrap();
    let err = server_cmd(&server, &["run", "--print-config"], &[]).expect_one_line_error();
    assert!(err.contains(&path) && err.contains("line 2") && err.contains("unknown field `max_frames`"), "{err}");
    // Every command reads the file (for `database`), and refuses it too.
    let err = server_cmd(&server, &["stats"], &[]).expect_one_line_error();
    assert!(err.contains(&path) && err.contains("max_frames"), "{err}");

    std::fs::write(&file, "max_batch = \"many\"\n").unwrap();
    let err = server_cmd(&server, &["run", "--print-config"], &[]).expect_one_line_error();
    assert!(err.contains(&path) && err.contains("line 1: max_batch: "), "{err}");
    std::fs::write(&file, "idle_timeout = -1\n").unwrap();
    let err = server_cmd(&server, &["run", "--print-config"], &[]).expect_one_line_error();
    assert!(err.contains(&format!("idle_timeout in {path} must be a positive number of seconds")), "{err}");
    std::fs::write(&file, "max_frame = 100\n").unwrap();
    let err = server_cmd(&server, &["run", "--listen", "127.0.0.1:0", "--no-crl"], &[]).expect_one_line_error();
    assert!(
        err.contains("--max-frame 100 is too small") && err.contains(&format!("max_frame = 100 from file {path}")),
        "{err}"
    );

    // A file named with --config must be there.
    std::fs::remove_file(&file).unwrap();
    let missing = server.dir().join("missing.toml");
    let err = server_cmd(&server, &["--config", missing.to_str().unwrap(), "run"], &[]).expect_one_line_error();
    assert!(err.contains("cannot read the config file") && err.contains("missing.toml"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_started_from_only_a_config_file_accepts_a_sync() {
    let pki = Pki::new(&["laptop"]);
    let mut server = TestServer::init();
    let mut device = Device::new();
    server.enrol(&device.hex(), "laptop");
    let elsewhere = tempfile::tempdir().unwrap();
    let file = elsewhere.path().join("truce.toml");
    let q = |p: std::path::PathBuf| format!("{:?}", p.to_str().unwrap());
    std::fs::write(
        &file,
        format!(
            "# the whole of `run`, in a file\nlisten = \"127.0.0.1:0\"\nca = {}\ncert = {}\nkey = {}\ncrl = {}\nmax_batch = 5\n",
            q(pki.file("ca.pem")),
            q(pki.file("server.pem")),
            q(pki.file("server.key")),
            q(pki.file("crl.pem")),
        ),
    )
    .unwrap();
    server.start_bare(&[OsString::from("--config"), file.clone().into()], &[]);
    let mut c = Client::open(server.addr(), pki.client_tls("laptop")).await;
    assert_eq!(c.max_batch, 5);
    let ack = c.submit(vec![device.next("from a server set up by its file")]).await;
    assert_eq!(ack.statuses(), vec![truce_shared::wire::Status::Accepted]);
    c.bye().await;
    assert!(server.log().contains("config file read"), "{}", server.log());
    assert!(server.terminate().success());
}
