//! gavel's own diagnostic log: stderr or a file, never stdout (stdout carries
//! the protocol in stdio mode).

use std::path::Path;

use tracing_subscriber::EnvFilter;

/// Keeps the log writer alive; drop flushes.
pub struct LogGuard;

pub fn init(file: Option<&Path>, level: Option<&str>) -> anyhow::Result<LogGuard> {
    let filter =
        match level {
            Some(l) => EnvFilter::try_new(l)
                .map_err(|e| anyhow::anyhow!("invalid log filter {l:?}: {e}"))?,
            None => EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,rmcp=warn")),
        };
    // Field values are escaped (`text::SafeFields`): agent and upstream text
    // in a field must not start a forged line in this log.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .fmt_fields(crate::text::SafeFields);
    match file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("cannot open log file {}: {e}", path.display()))?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f))
                .try_init()
                .ok();
        }
        None => {
            builder.with_writer(std::io::stderr).try_init().ok();
        }
    }
    Ok(LogGuard)
}
