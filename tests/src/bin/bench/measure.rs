//! How figures are taken: medians, percentiles, CPU time of a thread, a process or the writer thread, resident memory and peaks.

use super::*;

pub(super) fn cores() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub(super) fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

pub(super) fn percentile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// CPU seconds this thread has used, to the nanosecond: the first field of
/// schedstat, where stat(5) counts in clock ticks (10 ms), too coarse for
/// the few milliseconds a `--quick` floor takes.
pub(super) fn thread_cpu_s() -> Result<f64> {
    let stat = std::fs::read_to_string("/proc/thread-self/schedstat")?;
    let ns: u64 = stat.split_whitespace().next().context("empty schedstat")?.parse()?;
    Ok(ns as f64 / 1e9)
}

/// User + system CPU seconds a process has used so far.
pub(super) fn proc_cpu_s(pid: u32) -> Result<f64> {
    stat_cpu_s(&format!("/proc/{pid}/stat"))
}

/// CPU seconds of the server's writer thread (named `truce-writer`) and,
/// on PostgreSQL, of the store's client runtime it waits on (threads named
/// `truce-postgres`).
pub(super) fn writer_cpu_s(pid: u32) -> Result<f64> {
    let (mut total, mut writer) = (0.0, false);
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = task?.path();
        // A thread may end between the listing and the read.
        let Ok(name) = std::fs::read_to_string(dir.join("comm")) else { continue };
        let name = name.trim();
        if name == "truce-writer" || name == "truce-postgres" {
            let Ok(cpu) = stat_cpu_s(&dir.join("stat").to_string_lossy()) else { continue };
            total += cpu;
            writer |= name == "truce-writer";
        }
    }
    ensure!(writer, "the server {pid} has no truce-writer thread");
    Ok(total)
}

/// utime + stime of a stat(5) file, in seconds.
pub(super) fn stat_cpu_s(path: &str) -> Result<f64> {
    let stat = std::fs::read_to_string(path)?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).context("malformed /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> { Ok(f.get(i).context("short /proc stat")?.parse::<f64>()?) };
    // utime and stime are fields 14 and 15 of stat(5); `rest` starts at field 3.
    Ok((ticks(11)? + ticks(12)?) / CLOCK_TICKS_PER_S)
}

/// USER_HZ, which Linux fixes at 100 for /proc on every architecture it
/// runs Truce on.
pub(super) const CLOCK_TICKS_PER_S: f64 = 100.0;

/// A `/proc/PID/status` value in KiB.
pub(super) fn proc_kib(pid: u32, field: &str) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} in /proc/{pid}/status"))
}

/// Runs a command to its end and returns its peak resident memory, MiB.
pub(super) fn peak_of(cmd: &mut Command) -> Result<f64> {
    let mut child = cmd.stdout(Stdio::null()).stderr(Stdio::null()).spawn()?;
    let mut peak = 0;
    let status = loop {
        if let Ok(kb) = proc_kib(child.id(), "VmHWM:") {
            peak = peak.max(kb);
        }
        if let Some(status) = child.try_wait()? {
            break status;
        }
        std::thread::sleep(Duration::from_millis(2));
    };
    ensure!(status.success(), "{cmd:?} failed");
    ensure!(peak > 0, "could not read the agent's VmHWM");
    Ok(peak as f64 / 1024.0)
}

/// Flushes every dirty page to disk (sync(1)).
pub(super) fn sync() -> Result<()> {
    ensure!(std::process::Command::new("sync").status()?.success(), "sync failed");
    Ok(())
}
