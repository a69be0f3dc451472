//! `--pin`: the server under test (Portcullis, then the peer) on one core and the load
//! generator on another, so that a multi-threaded server and a single-threaded one are
//! measured on the same CPU. Uses `taskset` (util-linux): affinity is inherited by every thread
//! a pinned process starts, and tokio sizes its worker pool by the cores it may use.

use std::process::Command;
use std::sync::Mutex;

/// The core the servers run on, and the one loadgen runs on, while pinning.
pub const SERVER_CPU: &str = "0";
pub const LOADGEN_CPU: &str = "1";

/// The CPU list servers are started on; `None` = anywhere.
static SERVER_CPUS: Mutex<Option<&'static str>> = Mutex::new(None);

/// A command for a server process: `taskset -c CPU program` while pinning (taskset execs the
/// program, so the child's pid is the server's), `program` otherwise.
pub fn server_command(program: impl AsRef<std::ffi::OsStr>) -> Command {
    let cpus = *SERVER_CPUS.lock().unwrap_or_else(|p| p.into_inner());
    match cpus {
        Some(cpus) => {
            let mut c = Command::new("taskset");
            c.arg("-c").arg(cpus).arg(program);
            c
        }
        None => Command::new(program),
    }
}

/// The CPUs this process could use before pinning, restored after (`taskset -p` reads them).
static ORIGINAL: Mutex<Option<String>> = Mutex::new(None);

fn current_affinity() -> Option<String> {
    let out = Command::new("taskset")
        .args(["-c", "-p", &std::process::id().to_string()])
        .output()
        .ok()?;
    // "pid 123's current affinity list: 0,1"
    let text = String::from_utf8_lossy(&out.stdout);
    Some(text.rsplit(':').next()?.trim().to_string()).filter(|s| !s.is_empty())
}

/// Pins (or frees, with `pinned = false`) the servers started from now on and every thread of
/// this process.
pub fn set(pinned: bool) -> Result<(), String> {
    let mut original = ORIGINAL.lock().unwrap_or_else(|p| p.into_inner());
    if pinned && original.is_none() {
        *original = current_affinity();
    }
    let all = original
        .clone()
        .unwrap_or_else(|| format!("0-{}", cores().saturating_sub(1)));
    let own = if pinned { LOADGEN_CPU } else { all.as_str() };
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", own, &std::process::id().to_string()])
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| format!("--pin needs taskset (util-linux): {e}"))?;
    if !status.success() {
        return Err(format!("taskset could not move loadgen to CPU {own}"));
    }
    *SERVER_CPUS.lock().unwrap_or_else(|p| p.into_inner()) = pinned.then_some(SERVER_CPU);
    Ok(())
}

/// Cores this machine has (not only those this process may use right now).
pub fn cores() -> usize {
    std::fs::read_to_string("/sys/devices/system/cpu/present")
        .ok()
        .and_then(|s| {
            let last = s.trim().rsplit(['-', ',']).next()?.parse::<usize>().ok()?;
            Some(last + 1)
        })
        .unwrap_or(1)
}
