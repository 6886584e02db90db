//! A real PostgreSQL server for tests, made from the distribution's
//! binaries in a temporary directory: `pg_ctl start` on a fresh data dir,
//! and `pg_ctl stop -m immediate` when the value is dropped, which also
//! removes the directory.
//!
//! The server listens only on a Unix socket in its own directory
//! (`listen_addresses=''`, `-k DIR`), never on TCP, so any number of
//! instances run side by side without a port to pick or to clash over; the
//! port number only names the socket file. Authentication is `trust` for
//! the superuser `postgres`.
//!
//! The binaries are found in this order: the directory in the
//! `TRUCE_PG_BINDIR` environment variable; the highest version under
//! `/usr/lib/postgresql/*/bin` (Debian's layout); `initdb` and `pg_ctl` on
//! `PATH`. With none, [`TestPostgres::start`] panics naming the Debian
//! package to install (`apt-get install postgresql`; `scripts/test` does
//! it): a storage test never skips silently.
//!
//! `initdb` refuses to run as root. When the tests run as root, the
//! directories are given to the `postgres` system user (which the Debian
//! package creates) and `initdb`, `pg_ctl` and `psql` run as that user
//! through `runuser -u postgres --` (or `su postgres` where there is no
//! `runuser`).
//!
//! Where the directories go: in `TRUCE_PG_TMPDIR` if it is set. Otherwise
//! the template and the instances of [`TestPostgres::start`] go to memory,
//! `/dev/shm`, when it has 1 GiB free (their `fsync` is off, so a disk
//! would buy nothing, and writing the 39 MB data dir took 1.3 s on the
//! development machine's disk beside another build against 0.1 s there);
//! those of [`TestPostgres::start_durable`] go to a disk, since what their
//! `fsync` costs is what they are for: the system's temporary directory,
//! or `/tmp` if that one is not open to other users when we are root.
//!
//! [`TestPostgres::url`] gives the form `tokio-postgres` 0.7 (and libpq)
//! read as a Unix socket directory with no TCP host at all:
//! `postgres://postgres@/DB?host=/dev/shm/.tmpAbC123&port=5432`. A URL such as
//! `postgres://postgres@localhost/DB?host=/dir` would not do: tokio-postgres
//! takes both `localhost` (TCP, tried first) and the socket as hosts.
//!
//! Two flavours: [`TestPostgres::start`] turns off `fsync`,
//! `synchronous_commit` and `full_page_writes` (a crash of the machine
//! loses the database, which a test never needs), and
//! [`TestPostgres::start_durable`] keeps PostgreSQL's defaults, for
//! measuring what a real deployment pays. [`TestPostgres::cpu_time`] is
//! the CPU the postmaster and all its processes have used so far, so a
//! benchmark can tell the server's CPU a report from the database's.
//!
//! # Start time, and the template
//!
//! `initdb` is most of a start: on the 2-core development machine it
//! took 0.85 s on disk when the machine was idle and 2.0 to 3.0 s beside
//! another build, and `pg_ctl start` 0.13 s. So a test process runs
//! `initdb` once, into a template data dir, and each instance starts on a
//! `cp -a` of it (39 MB). Measured there, beside another build, in one
//! run: the first [`TestPostgres::start`] of a process 1.4 s, each later
//! one 0.19 to 0.29 s, [`TestPostgres::fresh_database`] 0.07 to 0.12 s,
//! a drop 0.15 s; [`TestPostgres::start_durable`] 1.3 to 2.1 s (its copy
//! goes to the disk) and its `fresh_database` 0.4 to 0.9 s; a plain
//! `initdb` and `pg_ctl start` on that disk 2.2 to 3.2 s.
//!
//! # Nothing left behind
//!
//! `pg_ctl` detaches the postmaster into a session of its own, so a test
//! process that dies without running `Drop` (SIGKILL, a timeout, Ctrl-C,
//! `process::exit`) would otherwise leave it running, and the template,
//! held in a static that is never dropped, would stay behind after every
//! run. Each instance and the template therefore have a reaper: a `sh`
//! waiting for a line on a pipe from the test process, in a process group
//! of its own. `Drop` tells it `done`; if the test process ends first, the
//! pipe closes with no line, and the reaper stops the server and removes
//! the directory. `testkit/tests/postgres.rs` SIGKILLs a test process with
//! a server running and checks both are gone.

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Duration;

use tempfile::TempDir;

use crate::run::{run, Ran};

/// The port: it only names the socket file (`.s.PGSQL.5432`) in the
/// instance's own directory, so every instance can use the default.
const PORT: u16 = 5432;

/// Memory-backed storage, for the data of [`TestPostgres::start`] and the
/// template, when it has [`SHM_ROOM`] free.
const SHM: &str = "/dev/shm";

/// What `/dev/shm` must have free to be used: room for dozens of test
/// databases at once, so a container's 64 MiB one is passed over.
const SHM_ROOM: u64 = 1 << 30;

/// Settings for tests: durability off, since a test database never has to
/// survive a crash of the machine.
const FAST: &str = "-c fsync=off -c synchronous_commit=off -c full_page_writes=off";

/// A PostgreSQL server in a temporary directory, stopped and removed on
/// drop.
pub struct TestPostgres {
    /// Holds the socket, `data/` and `postgres.log`; removed on drop.
    dir: TempDir,
    /// The postmaster's process id.
    pid: u32,
    /// Stops the server and removes `dir` if this process ends before
    /// `Drop` runs; told to stand down by `Drop`.
    reaper: Option<Reaper>,
    /// The TCP port of a server started with TLS ([`TestPostgres::start_with_tls`]).
    tcp_port: Option<u16>,
}

impl TestPostgres {
    /// A new server for tests, with `fsync`, `synchronous_commit` and
    /// `full_page_writes` off. Panics with what to install if PostgreSQL's
    /// binaries are not found, and with the server's log if it does not
    /// start.
    pub fn start() -> TestPostgres {
        TestPostgres::start_with(FAST, false)
    }

    /// A new server with PostgreSQL's default durability (`fsync` on,
    /// synchronous commit): for benchmarks.
    pub fn start_durable() -> TestPostgres {
        TestPostgres::start_with("", true)
    }

    /// A server for tests that also listens on TCP at 127.0.0.1, where it
    /// speaks TLS with this certificate and key (PEM; the certificate must
    /// name `localhost`): [`TestPostgres::tls_url`] connects through it.
    /// The port is picked by binding port 0 and letting it go just before
    /// PostgreSQL binds it.
    pub fn start_with_tls(cert: &Path, key: &Path) -> TestPostgres {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free TCP port on 127.0.0.1")
            .port();
        let mut pg = TestPostgres::start_with_files(
            &format!("{FAST} -c listen_addresses=127.0.0.1 -c ssl=on -c ssl_cert_file=tls.crt -c ssl_key_file=tls.key"),
            false,
            Some(port),
            &[("tls.crt", cert), ("tls.key", key)],
        );
        pg.tcp_port = Some(port);
        pg
    }

    /// A URL for database `db` over TCP with TLS required and checked
    /// against `ca` (a server started by [`TestPostgres::start_with_tls`]).
    pub fn tls_url(&self, db: &str, ca: &Path) -> String {
        let port = self.tcp_port.expect("a server started with TLS");
        format!("postgres://postgres@localhost:{port}/{}?sslmode=require&sslrootcert={}", encode(db, b""), ca.display())
    }

    fn start_with(settings: &str, durable: bool) -> TestPostgres {
        TestPostgres::start_with_files(settings, durable, None, &[])
    }

    /// Starts a server on a copy of the template, with `settings`, on
    /// `port` (the default when `None`), with `files` copied into its data
    /// dir first (private to its owner, as PostgreSQL requires of a key).
    fn start_with_files(settings: &str, durable: bool, port: Option<u16>, files: &[(&str, &Path)]) -> TestPostgres {
        let port = port.unwrap_or(PORT);
        let template = template();
        let dir = make_dir(durable);
        let data = dir.path().join("data");
        let stop = pg_command(dir.path(), "pg_ctl", stop_args(&data));
        let reaper = Some(Reaper::spawn(dir.path(), Some(&stop)));
        let mut pg = TestPostgres { dir, pid: 0, reaper, tcp_port: None };
        // `cp -a` keeps the owner (postgres, when we are root) and the
        // modes PostgreSQL insists on (0700).
        run(Command::new("cp").arg("-a").arg(template).arg(&data)).expect_ok();
        for (name, from) in files {
            let to = data.join(name);
            fs::copy(from, &to).unwrap_or_else(|e| panic!("copy {} into the data dir: {e}", from.display()));
            fs::set_permissions(&to, fs::Permissions::from_mode(0o600)).expect("a private file");
            if is_root() {
                let (uid, gid) = postgres_user();
                std::os::unix::fs::chown(&to, Some(uid), Some(gid)).expect("give the file to postgres");
            }
        }
        let options = format!("-k {} -c listen_addresses='' -p {port} {settings}", shell_quote(pg.dir_str()));
        // `-l`: the postmaster's output goes to a file, not to pipes of ours
        // that it would hold open for as long as it runs.
        let log = pg.dir().join("postgres.log");
        let started = pg.pg(
            "pg_ctl",
            [
                OsStr::new("start"),
                OsStr::new("-w"),
                OsStr::new("-t"),
                OsStr::new("60"),
                OsStr::new("-D"),
                data.as_os_str(),
                OsStr::new("-l"),
                log.as_os_str(),
                OsStr::new("-o"),
                OsStr::new(&options),
            ],
        );
        assert!(started.ok(), "{}\n--- postgres.log ---\n{}", started.describe("pg_ctl start failed"), pg.log());
        pg.pid = pg.read_pid().unwrap_or_else(|| panic!("no postmaster pid in {}", data.display()));
        pg
    }

    /// A connection URL for database `db`, through the Unix socket:
    /// `postgres://postgres@/DB?host=DIR&port=5432`. tokio-postgres 0.7 and
    /// libpq (`psql`) both read it.
    pub fn url(&self, db: &str) -> String {
        let port = self.tcp_port.unwrap_or(PORT);
        format!("postgres://postgres@/{}?host={}&port={port}", encode(db, b""), encode(self.dir_str(), b"/"))
    }

    /// `CREATE DATABASE name`; returns its [`url`](TestPostgres::url).
    /// `name` is a plain lower-case identifier (`[a-z_][a-z0-9_]*`, at
    /// most 63 bytes).
    pub fn create_database(&self, name: &str) -> String {
        let plain = !name.is_empty()
            && name.len() <= 63
            && !name.starts_with(|c: char| c.is_ascii_digit())
            && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
        assert!(plain, "database name {name:?}: use [a-z_][a-z0-9_]*, at most 63 bytes");
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    /// A new database with a name no other call in this process gets;
    /// returns its [`url`](TestPostgres::url).
    pub fn fresh_database(&self) -> String {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        self.create_database(&format!("truce_test_{}", NEXT.fetch_add(1, Ordering::Relaxed)))
    }

    /// Runs SQL with `psql` in database `db` (stopping at the first error);
    /// returns what it printed, unaligned and without headers (`-A -t`).
    /// Panics with the full account if it fails.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let url = self.url(db);
        self.pg("psql", ["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", &url, "-c", sql]).expect_ok()
    }

    /// User plus system CPU time used so far by the postmaster and every
    /// process it started: its own time, the time of the children it has
    /// reaped (`cutime`, `cstime`) and of those still running (read from
    /// `/proc/PID/stat`). A child that exits between two reads may be
    /// missed or counted twice for that read: one process's time, noise
    /// for a benchmark that reads it before and after thousands of reports.
    pub fn cpu_time(&self) -> Duration {
        let own = proc_stat(self.pid).unwrap_or_else(|| {
            panic!("the postmaster (pid {}) is gone:\n{}", self.pid, self.log());
        });
        let mut ticks = own.utime + own.stime + own.cutime + own.cstime;
        if let Ok(entries) = fs::read_dir("/proc") {
            for entry in entries.flatten() {
                let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
                if let Some(s) = proc_stat(pid).filter(|s| s.ppid == self.pid) {
                    ticks += s.utime + s.stime + s.cutime + s.cstime;
                }
            }
        }
        let hz = rustix::param::clock_ticks_per_second().max(1);
        Duration::from_nanos((u128::from(ticks) * 1_000_000_000 / u128::from(hz)) as u64)
    }

    /// The postmaster's process id.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The temporary directory: the socket's directory, with the data
    /// dir (`data/`) and the server log (`postgres.log`) in it.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The data dir (`initdb -D`).
    pub fn data(&self) -> PathBuf {
        self.dir().join("data")
    }

    /// The directory of the PostgreSQL binaries in use.
    pub fn bin_dir(&self) -> &Path {
        bin_dir()
    }

    /// What the server logged so far.
    pub fn log(&self) -> String {
        fs::read_to_string(self.dir().join("postgres.log")).unwrap_or_default()
    }

    fn dir_str(&self) -> &str {
        self.dir().to_str().expect("a UTF-8 temporary path")
    }

    /// The first line of `postmaster.pid`.
    fn read_pid(&self) -> Option<u32> {
        fs::read_to_string(self.data().join("postmaster.pid")).ok()?.lines().next()?.trim().parse().ok()
    }

    /// Runs a binary of the PostgreSQL bin dir to the end (see
    /// [`pg_command`]).
    fn pg<I, S>(&self, program: &str, args: I) -> Ran
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        run(&mut pg_command(self.dir(), program, args))
    }
}

impl Drop for TestPostgres {
    /// `pg_ctl stop -m immediate -w`, or SIGKILL to the postmaster if that
    /// fails; then the directory goes. Nothing here panics.
    fn drop(&mut self) {
        let data = self.data();
        if let Some(pid) = Some(self.pid).filter(|&p| p != 0).or_else(|| self.read_pid()) {
            let stopped = pg_command(self.dir(), "pg_ctl", stop_args(&data))
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !stopped {
                let _ = Command::new("kill")
                    .args(["-KILL", &pid.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
        // Removed here rather than when the field drops, so the reaper is
        // only told to stand down once nothing is left for it to do.
        let _ = fs::remove_dir_all(self.dir());
        if let Some(reaper) = self.reaper.take() {
            reaper.disarm();
        }
    }
}

/// `pg_ctl stop` for the data dir `data`: immediate (a test's data is not
/// kept), waiting until the postmaster is gone.
fn stop_args(data: &Path) -> Vec<&OsStr> {
    let mut args: Vec<&OsStr> = ["stop", "-m", "immediate", "-w", "-t", "30", "-D"].map(OsStr::new).to_vec();
    args.push(data.as_os_str());
    args
}

/// A command for a binary of the PostgreSQL bin dir, as `postgres` if we
/// are root, in `cwd` (a directory that user can enter), stdin closed, with
/// no `PG*` variable of ours steering it.
fn pg_command<I, S>(cwd: &Path, program: &str, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let program = bin_dir().join(program);
    let mut cmd = if !is_root() {
        let mut c = Command::new(&program);
        c.args(args);
        c
    } else if let Some(runuser) = runuser() {
        let mut c = Command::new(runuser);
        c.args([OsStr::new("-u"), OsStr::new("postgres"), OsStr::new("--"), program.as_os_str()]);
        c.args(args);
        c
    } else {
        let mut line = shell_quote(&program.to_string_lossy());
        for a in args {
            line.push(' ');
            line.push_str(&shell_quote(&a.as_ref().to_string_lossy()));
        }
        let mut c = Command::new("su");
        c.args(["postgres", "-s", "/bin/sh", "-c", &line]);
        c
    };
    clean_env(&mut cmd);
    cmd.current_dir(cwd).stdin(Stdio::null());
    cmd
}

/// No `PG*` variable of ours (`PGHOST`, `PGPORT`, `PGDATA`…) may steer the
/// PostgreSQL binaries, and their messages are in the C locale.
fn clean_env(cmd: &mut Command) {
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(|k| k.starts_with("PG")) {
            cmd.env_remove(k);
        }
    }
    cmd.env("LC_ALL", "C");
}

/// Whether this process runs as root: then `initdb` refuses to run, and
/// the PostgreSQL binaries run as the `postgres` user.
fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// The data dir every instance of this process copies: `initdb` once.
/// Held in a static, which is never dropped, so a [`Reaper`] removes it
/// when the process ends.
fn template() -> &'static Path {
    struct Template {
        data: PathBuf,
        _dir: TempDir,
        _reaper: Reaper,
    }
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    &TEMPLATE
        .get_or_init(|| {
            let dir = make_dir(false);
            let reaper = Reaper::spawn(dir.path(), None);
            let data = dir.path().join("data");
            let mut initdb = pg_command(dir.path(), "initdb", [OsStr::new("-D"), data.as_os_str()]);
            initdb.args(["-A", "trust", "-U", "postgres", "--no-sync", "-E", "UTF8", "--locale=C"]);
            run(&mut initdb).expect_ok();
            Template { data, _dir: dir, _reaper: reaper }
        })
        .data
}

/// A `sh` that outlives this process if it must: it waits for a line on
/// a pipe from us. [`Reaper::disarm`] sends `done` and it exits. If this
/// process ends first (a test that leaks the value, `process::exit`, an
/// abort, SIGKILL, Ctrl-C), the pipe closes with no line, and it runs the
/// stop command and removes the directory. It is in a process group of its
/// own so Ctrl-C does not end it too, and its output goes nowhere so it
/// holds no pipe of the test runner's open.
struct Reaper {
    child: Child,
    stdin: Option<ChildStdin>,
}

impl Reaper {
    /// Watches over `dir`: on its own, runs `stop` (if any) and then
    /// `rm -rf dir`.
    fn spawn(dir: &Path, stop: Option<&Command>) -> Reaper {
        const SCRIPT: &str =
            r#"read -r word; [ "$word" = done ] && exit 0; dir=$1; shift; [ $# -eq 0 ] || "$@"; rm -rf -- "$dir""#;
        let mut cmd = Command::new("/bin/sh");
        cmd.args([OsStr::new("-c"), OsStr::new(SCRIPT), OsStr::new("truce-pg-reaper"), dir.as_os_str()]);
        if let Some(stop) = stop {
            cmd.arg(stop.get_program()).args(stop.get_args());
        }
        clean_env(&mut cmd);
        let mut child = cmd
            .current_dir("/")
            .process_group(0)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start /bin/sh to watch over {}: {e}", dir.display()));
        let stdin = child.stdin.take();
        Reaper { child, stdin }
    }

    /// The work is done: the reaper exits doing nothing.
    fn disarm(mut self) {
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.write_all(b"done\n");
        }
        let _ = self.child.wait();
    }
}

/// The CPU fields of `/proc/PID/stat` this module reads, in clock ticks.
struct ProcStat {
    ppid: u32,
    utime: u64,
    stime: u64,
    cutime: u64,
    cstime: u64,
}

/// `/proc/PID/stat`, or `None` if the process is gone (or a zombie, whose
/// time is already its parent's `cutime`).
fn proc_stat(pid: u32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // f[0] is field 3 (state): field N is f[N - 3].
    if f.first() == Some(&"Z") {
        return None;
    }
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some(ProcStat { ppid: n(4)? as u32, utime: n(14)?, stime: n(15)?, cutime: n(16)?, cstime: n(17)? })
}

/// The PostgreSQL bin dir, found once (see the module doc).
fn bin_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let has_tools = |d: &Path| d.join("initdb").is_file() && d.join("pg_ctl").is_file();
        if let Some(d) = std::env::var_os("TRUCE_PG_BINDIR") {
            let d = PathBuf::from(d);
            assert!(has_tools(&d), "TRUCE_PG_BINDIR={} holds no initdb and pg_ctl", d.display());
            return d;
        }
        let mut versions: Vec<(Vec<u32>, PathBuf)> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let version =
                    e.file_name().to_str()?.split('.').map(|p| p.parse().ok()).collect::<Option<Vec<u32>>>()?;
                Some((version, e.path().join("bin")))
            })
            .filter(|(_, d)| has_tools(d))
            .collect();
        versions.sort();
        if let Some((_, d)) = versions.pop() {
            return d;
        }
        if let Some(d) = std::env::var_os("PATH").iter().flat_map(std::env::split_paths).find(|d| has_tools(d)) {
            return d;
        }
        panic!(
            "PostgreSQL's server binaries (initdb, pg_ctl) are not installed: none under /usr/lib/postgresql/*/bin, \
             none on PATH, and TRUCE_PG_BINDIR is not set. The storage tests run against a real PostgreSQL. \
             On Debian or Ubuntu install the package `postgresql` (`apt-get install postgresql`, or run \
             `bash scripts/test`, which installs it), or set TRUCE_PG_BINDIR to a directory holding initdb, \
             pg_ctl and psql."
        )
    })
}

/// `runuser`, if this system has it.
fn runuser() -> Option<&'static Path> {
    static RUNUSER: OnceLock<Option<PathBuf>> = OnceLock::new();
    RUNUSER
        .get_or_init(|| {
            let path = std::env::var_os("PATH").unwrap_or_default();
            std::env::split_paths(&path)
                .chain(["/usr/sbin", "/sbin", "/usr/bin", "/bin"].map(PathBuf::from))
                .map(|d| d.join("runuser"))
                .find(|p| p.is_file())
        })
        .as_deref()
}

/// The `postgres` user's uid and gid (from `id`, so NSS users count too).
fn postgres_user() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        let id = |flag: &str| -> u32 {
            let ran = run(Command::new("id").args([flag, "postgres"]));
            assert!(
                ran.ok(),
                "{}",
                ran.describe(
                    "running as root, and initdb refuses to run as root; but there is no `postgres` user to run it \
                     as (the Debian package `postgresql` creates one: apt-get install postgresql)"
                )
            );
            ran.stdout().trim().parse().unwrap_or_else(|e| panic!("id {flag} postgres: {e}"))
        };
        (id("-u"), id("-g"))
    })
}

/// A new temporary directory for PostgreSQL (see the module doc for
/// where). As root it goes to the `postgres` user, under a parent that
/// user can traverse.
fn make_dir(durable: bool) -> TempDir {
    let as_postgres = is_root();
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("TRUCE_PG_TMPDIR") {
        candidates.push(PathBuf::from(d));
    } else {
        if !durable && has_room(Path::new(SHM)) {
            candidates.push(PathBuf::from(SHM));
        }
        candidates.extend([std::env::temp_dir(), PathBuf::from("/tmp")]);
    }
    // The socket path (`DIR/.s.PGSQL.5432`) must fit in sun_path (108 bytes).
    let fits = |p: &Path| p.as_os_str().len() + "/.tmpXXXXXX/.s.PGSQL.5432".len() < 100;
    let usable = |p: &Path| p.is_dir() && fits(p) && (!as_postgres || traversable_by_others(p));
    let Some(parent) = candidates.iter().find(|p| usable(p)) else {
        panic!(
            "no temporary directory for PostgreSQL among {candidates:?}: it must exist, be short enough for a Unix \
             socket path, and, as we run as root, be traversable by the `postgres` user; set TRUCE_PG_TMPDIR (or \
             TMPDIR) to one that is"
        )
    };
    let dir = tempfile::Builder::new().prefix(".tmp").tempdir_in(parent).expect("a temporary directory");
    if as_postgres {
        let (uid, gid) = postgres_user();
        std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
            .unwrap_or_else(|e| panic!("chown postgres {}: {e}", dir.path().display()));
    }
    dir
}

/// Whether a file system has [`SHM_ROOM`] free (a container's small
/// `/dev/shm` has not).
fn has_room(p: &Path) -> bool {
    rustix::fs::statvfs(p).is_ok_and(|s| s.f_bavail.saturating_mul(s.f_frsize) >= SHM_ROOM)
}

/// Whether every directory from `/` down to `p` lets other users through
/// (`o+x`).
fn traversable_by_others(p: &Path) -> bool {
    let Ok(p) = p.canonicalize() else { return false };
    p.ancestors().all(|a| fs::metadata(a).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
}

/// `s` quoted for a POSIX shell.
fn shell_quote(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"/._-=,:".contains(&b)) {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// Percent-encoding for a part of a URL: all but unreserved characters
/// and those in `keep`.
fn encode(s: &str, keep: &[u8]) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) || keep.contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
