//! Upstream child processes: spawned in their own process group so that a
//! wrapper (`npx`, `uvx`, a shell) and everything it starts die together;
//! stderr drained continuously (a full pipe blocks the child and deadlocks the
//! protocol silently); terminated explicitly at shutdown, and the whole group
//! killed whenever gavel lets go of a child any other way ([`ProcessGroup`]).

use std::collections::VecDeque;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command};

use crate::config::{Limits, ServerConfig, UpstreamTransport};
use crate::sync::Recover;

pub struct SpawnedChild {
    pub child: Child,
    pub group: ProcessGroup,
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
}

/// Last lines of a child's stderr, kept for crash diagnostics.
#[derive(Clone, Default)]
pub struct StderrTail {
    lines: Arc<Mutex<VecDeque<String>>>,
}

impl StderrTail {
    fn push(&self, line: String, cap: usize) {
        let mut l = self.lines.lock().recover();
        if l.len() >= cap.max(1) {
            l.pop_front();
        }
        l.push_back(line);
    }

    pub fn snapshot(&self) -> Vec<String> {
        self.lines.lock().recover().iter().cloned().collect()
    }

    pub fn clear(&self) {
        self.lines.lock().recover().clear();
    }
}

/// Starts `server`'s command (its `transport` must be stdio), its stderr
/// drained into gavel's log and `tail` within `limits`
/// (`max_stderr_line_bytes`, `stderr_tail_lines`). `base_dir`: the config
/// file's directory.
pub fn spawn(
    server: &ServerConfig,
    base_dir: Option<&std::path::Path>,
    tail: &StderrTail,
    limits: &Limits,
) -> std::io::Result<SpawnedChild> {
    let (command, args, env, cwd) = stdio_command(server)?;
    // Relative paths (a command like `.deps/venv/bin/server`, or `cwd`) are
    // relative to the config file's directory, so a servers.toml works from
    // wherever the host launches gavel.
    let resolve = |p: &std::path::Path| match base_dir {
        Some(base) if p.is_relative() => base.join(p),
        _ => p.to_path_buf(),
    };
    let program = if command.contains('/') {
        resolve(std::path::Path::new(command))
    } else {
        std::path::PathBuf::from(command)
    };
    let mut cmd = Command::new(&program);
    cmd.args(args)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .process_group(0);
    if let Some(dir) = cwd
        .map(resolve)
        .or_else(|| base_dir.map(|b| b.to_path_buf()))
    {
        cmd.current_dir(dir);
    }
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; it only asks the kernel to kill the
    // child if gavel dies (even by SIGKILL), so no upstream outlives it.
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd.spawn().map_err(|e| {
        std::io::Error::new(
            e.kind(),
            format!(
                "could not start server {:?}: {command:?}: {e} (is it installed and on PATH?)",
                server.name
            ),
        )
    })?;
    let pid = child.id().unwrap_or(0);
    let stdin = child.stdin.take().expect("stdin piped");
    let stdout = child.stdout.take().expect("stdout piped");
    let stderr = child.stderr.take().expect("stderr piped");
    tokio::spawn(drain_stderr(
        server.name.clone(),
        stderr,
        tail.clone(),
        limits.max_stderr_line_bytes,
        limits.stderr_tail_lines,
    ));
    Ok(SpawnedChild {
        child,
        group: ProcessGroup { pgid: pid },
        stdin,
        stdout,
    })
}

/// The command of a stdio server: program, arguments, environment, `cwd`.
type StdioCommand<'a> = (
    &'a str,
    &'a [String],
    &'a std::collections::BTreeMap<String, String>,
    Option<&'a std::path::Path>,
);

fn stdio_command(server: &ServerConfig) -> std::io::Result<StdioCommand<'_>> {
    match &server.transport {
        UpstreamTransport::Stdio {
            command,
            args,
            env,
            cwd,
        } => Ok((command, args, env, cwd.as_deref())),
        UpstreamTransport::Http { .. } => Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "server {:?} is reached over HTTP: there is no command to start",
                server.name
            ),
        )),
    }
}

/// Reads stderr until EOF, line by line with a cap on line length, into
/// gavel's log and the tail. Never stops early: stopping would block the child.
async fn drain_stderr(
    server: String,
    stderr: ChildStderr,
    tail: StderrTail,
    max_line: usize,
    tail_lines: usize,
) {
    let mut reader = BufReader::with_capacity(16 * 1024, stderr);
    let mut line: Vec<u8> = Vec::new();
    let mut truncated = false;
    loop {
        let (consumed, done_line, eof) = {
            let buf = match reader.fill_buf().await {
                Ok(b) => b,
                Err(_) => break,
            };
            if buf.is_empty() {
                (0, !line.is_empty(), true)
            } else {
                let nl = buf.iter().position(|b| *b == b'\n');
                let take = nl.map_or(buf.len(), |i| i + 1);
                let room = max_line.saturating_sub(line.len());
                let content = &buf[..nl.unwrap_or(take)];
                if content.len() > room {
                    truncated = true;
                }
                line.extend_from_slice(&content[..content.len().min(room)]);
                (take, nl.is_some(), false)
            }
        };
        reader.consume(consumed);
        if done_line {
            let mut text = String::from_utf8_lossy(&line)
                .trim_end_matches('\r')
                .to_string();
            if truncated {
                text.push_str(" …[truncated]");
            }
            tracing::info!(target: "gavel::upstream::stderr", server = %server, "{text}");
            tail.push(text, tail_lines);
            line.clear();
            truncated = false;
        }
        if eof {
            break;
        }
    }
}

/// Signals the child's whole process group; `ESRCH` (already gone) is fine.
pub fn signal_group(pid: u32, signal: i32) {
    if pid == 0 {
        return;
    }
    // SAFETY: plain syscall on a process group id we created (process_group(0)
    // makes the child the leader, so pgid == pid).
    unsafe {
        libc::killpg(pid as libc::pid_t, signal);
    }
}

/// A child's process group, owned: dropped without [`terminate`] — the
/// supervisor's future dropped at shutdown, a task aborted, the runtime torn
/// down as `main` returns or unwinds from a panic — it SIGKILLs the whole
/// group. tokio's `kill_on_drop` reaches only the leader, and
/// `PR_SET_PDEATHSIG` only the direct child: a wrapper's background process
/// (`sh -c 'server & …'`) would outlive gavel. What no code of gavel's runs
/// for (gavel itself killed with -9) is ARCHITECTURE.md invariant 9.
pub struct ProcessGroup {
    pgid: u32,
}

impl ProcessGroup {
    pub fn pgid(&self) -> u32 {
        self.pgid
    }

    /// The group is known dead (killed and its leader reaped): nothing to do
    /// on drop, and no signal for a pgid the kernel could reuse.
    fn release(mut self) {
        self.pgid = 0;
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        signal_group(self.pgid, libc::SIGKILL);
    }
}

/// Stops a child: its stdin is already closed by the caller (a well-behaved
/// server exits on EOF); then SIGTERM to the group, then SIGKILL. The group
/// is killed at the end whatever the leader did (its background processes
/// go with it).
pub async fn terminate(mut child: Child, group: ProcessGroup) -> Option<std::process::ExitStatus> {
    let pid = group.pgid();
    let grace = Duration::from_millis(1500);
    let status = if let Ok(Ok(status)) = tokio::time::timeout(grace, child.wait()).await {
        // The leader is gone; make sure nothing it started lingers.
        signal_group(pid, libc::SIGTERM);
        Some(status)
    } else {
        signal_group(pid, libc::SIGTERM);
        match tokio::time::timeout(grace, child.wait()).await {
            Ok(Ok(status)) => Some(status),
            _ => None,
        }
    };
    signal_group(pid, libc::SIGKILL);
    let status = match status {
        Some(s) => Some(s),
        None => child.wait().await.ok(),
    };
    group.release();
    status
}

/// Human description of an exit status.
pub fn describe_exit(status: Option<std::process::ExitStatus>) -> String {
    use std::os::unix::process::ExitStatusExt;
    match status {
        Some(s) if s.code().is_some() => format!("exited with code {}", s.code().unwrap_or(-1)),
        Some(s) => format!("killed by signal {}", s.signal().unwrap_or(0)),
        None => "exit status unknown".into(),
    }
}
