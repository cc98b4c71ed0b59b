//! `[log]`: gavel's own log (file, level) and the decision log (file,
//! argument size, secret fields, what a failed write does, rotation,
//! shipping: `ship.rs`).

use super::ctx::*;
use super::raw::RawLog;
use super::*;

impl LogSettings {
    pub(super) fn parse(ctx: &Ctx, lg: &RawLog) -> Result<LogSettings, ConfigError> {
        Ok(LogSettings {
            file: lg
                .file
                .as_ref()
                .map(|f| ctx.expand(f, "log.file").map(|p| ctx.path(p)))
                .transpose()?,
            level: values::log_level(ctx, &lg.level)?,
            decisions: lg
                .decisions
                .as_ref()
                .map(|f| ctx.expand(f, "log.decisions").map(|p| ctx.path(p)))
                .transpose()?,
            max_arg_bytes: ctx.size(&lg.max_arg_bytes, "log.max_arg_bytes", 4096, 16, 1 << 30)?,
            secret_fields: lg.secret_fields.clone(),
            on_write_error: on_write_error(ctx, lg)?,
            rotation: crate::audit::Rotation {
                bytes: rotate_bytes(ctx, lg)?,
                keep: rotate_keep(ctx, lg)?,
            },
            ship: ship(ctx, lg)?,
        })
    }
}

/// `[log.ship]`: shipping needs the local log it ships from.
fn ship(ctx: &Ctx, lg: &RawLog) -> Result<Option<crate::audit::ship::ShipSettings>, ConfigError> {
    let Some(raw) = &lg.ship else { return Ok(None) };
    if lg.decisions.is_none() {
        return Err(ctx.at(
            raw.url.span().start,
            "log.ship",
            "ships the decision log from its local file: set [log] decisions = \"PATH\" too",
        ));
    }
    super::ship::parse(ctx, raw).map(Some)
}

/// `log.on_write_error`: refuse (default) or carry out a request whose
/// decision record cannot be written.
fn on_write_error(ctx: &Ctx, lg: &RawLog) -> Result<OnWriteError, ConfigError> {
    match lg
        .on_write_error
        .as_ref()
        .map(|m| (m, m.get_ref().as_str()))
    {
        None | Some((_, "deny")) => Ok(OnWriteError::Deny),
        Some((_, "allow")) => Ok(OnWriteError::Allow),
        Some((m, other)) => Err(ctx.at(
            m.span().start,
            "log.on_write_error",
            format!("{other:?}: use \"deny\" (default: a request whose decision record cannot be written is refused) or \"allow\" (it proceeds unrecorded)"),
        )),
    }
}

/// `log.rotate_bytes`: 0 (never rotate) or large enough to hold a few
/// records.
fn rotate_bytes(ctx: &Ctx, lg: &RawLog) -> Result<u64, ConfigError> {
    match ctx.size(&lg.rotate_bytes, "log.rotate_bytes", 256 << 20, 0, 1 << 50)? {
        n @ 1..4096 => {
            let at = lg.rotate_bytes.as_ref().map_or(0, |v| v.span().start);
            Err(ctx.at(at, "log.rotate_bytes", format!("{n} bytes is too small to hold a few records: use 0 (gavel never rotates) or at least 4KiB")))
        }
        n => Ok(n as u64),
    }
}

/// `log.rotate_keep`: how many rotated files are kept (1 to 1000).
fn rotate_keep(ctx: &Ctx, lg: &RawLog) -> Result<u32, ConfigError> {
    match &lg.rotate_keep {
        None => Ok(1),
        Some(k) if (1..=1000).contains(k.get_ref()) => Ok(*k.get_ref()),
        Some(k) => Err(ctx.at(
            k.span().start,
            "log.rotate_keep",
            "must be between 1 and 1000 (rotated files kept)",
        )),
    }
}
