//! `gavel status`: several gavel processes run on one machine (each host
//! window starts its own). Each writes its status atomically (temp file +
//! rename) to `<state_dir>/instances/<pid>.json`; `gavel status` reads them
//! all and drops the files of processes that are gone.

use std::path::{Path, PathBuf};

use serde_json::Value;

/// `$GAVEL_STATE_DIR`, else `$XDG_STATE_HOME/gavel`, else `~/.local/state/gavel`.
pub fn state_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("GAVEL_STATE_DIR") {
        return PathBuf::from(d);
    }
    if let Some(d) = std::env::var_os("XDG_STATE_HOME") {
        return PathBuf::from(d).join("gavel");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    home.join(".local/state/gavel")
}

fn instance_path(dir: &Path, pid: u32) -> PathBuf {
    dir.join("instances").join(format!("{pid}.json"))
}

/// Writes this process's status; readers never see a half-written file
/// (its temporary file, `.<pid>.json.tmp.…`, is not a `<pid>.json` that
/// [`read_all`] reads).
pub fn write_instance(dir: &Path, status: &Value) -> std::io::Result<()> {
    let path = instance_path(dir, std::process::id());
    let bytes = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    crate::atomic_file::write(&path, &bytes)
}

pub fn remove_instance(dir: &Path) {
    let _ = std::fs::remove_file(instance_path(dir, std::process::id()));
}

fn alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    pid > 0
        && (unsafe { libc::kill(pid, 0) } == 0
            || std::io::Error::last_os_error().raw_os_error() == Some(libc::EPERM))
}

/// Every live instance's status, oldest first; stale files are removed.
pub fn read_all(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir.join("instances")) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        let Some(pid) = p
            .file_stem()
            .and_then(|s| s.to_str())
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        if !alive(pid) {
            let _ = std::fs::remove_file(&p);
            continue;
        }
        if let Ok(v) = std::fs::read(&p)
            .map_err(|_| ())
            .and_then(|b| serde_json::from_slice::<Value>(&b).map_err(|_| ()))
        {
            out.push(v);
        }
    }
    out.sort_by(|a, b| a["started"].as_str().cmp(&b["started"].as_str()));
    out
}

/// The signal that is stopping this process, once one has (`SIGTERM`,
/// `SIGINT`): what gavel says when it cancels the requests in flight, so
/// that neither its log nor the upstreams blame the agent host for a stop
/// the operator (or a service manager) asked for.
static STOP_REASON: std::sync::OnceLock<&'static str> = std::sync::OnceLock::new();

/// Records that `signal` is stopping the process (the first one counts).
pub fn set_stop_reason(signal: &'static str) {
    let _ = STOP_REASON.set(signal);
}

/// The signal stopping the process, if one is.
pub fn stop_reason() -> Option<&'static str> {
    STOP_REASON.get().copied()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_and_prune() {
        let d = tempfile::tempdir().unwrap();
        write_instance(
            d.path(),
            &serde_json::json!({"pid": std::process::id(), "started": "a"}),
        )
        .unwrap();
        // A stale file from a process that is gone.
        std::fs::write(d.path().join("instances/999999999.json"), "{}").unwrap();
        let all = read_all(d.path());
        assert_eq!(all.len(), 1);
        assert_eq!(all[0]["pid"], std::process::id());
        assert!(!d.path().join("instances/999999999.json").exists());
        remove_instance(d.path());
        assert!(read_all(d.path()).is_empty());
    }
}
