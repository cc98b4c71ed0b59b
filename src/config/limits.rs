//! `[limits]`: how large a message and a stderr line may be, and how much
//! of a server's stderr is kept for its error reports.

use super::ctx::*;
use super::raw::RawLimits;
use super::*;

impl Limits {
    pub(super) fn parse(ctx: &Ctx, l: &RawLimits) -> Result<Limits, ConfigError> {
        Ok(Limits {
            max_message_bytes: ctx.size(
                &l.max_message_bytes,
                "limits.max_message_bytes",
                Limits::default().max_message_bytes,
                1024,
                1 << 30,
            )?,
            max_stderr_line_bytes: ctx.size(
                &l.max_stderr_line_bytes,
                "limits.max_stderr_line_bytes",
                Limits::default().max_stderr_line_bytes,
                80,
                1 << 20,
            )?,
            stderr_tail_lines: l
                .stderr_tail_lines
                .unwrap_or(Limits::default().stderr_tail_lines)
                .clamp(1, 10_000),
        })
    }
}
