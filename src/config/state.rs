//! `[state]`: where counters, budgets and remembered approvals live — the
//! embedded SQLite file (`path`) or a Redis shared by several gavels.

use super::ctx::*;
use super::raw::RawState;
use super::*;

/// `state.path`, relative to the config.
pub(super) fn path(ctx: &Ctx, s: &RawState) -> Result<Option<std::path::PathBuf>, ConfigError> {
    s.path
        .as_ref()
        .map(|p| ctx.expand(p, "state.path").map(|p| ctx.path(p)))
        .transpose()
}

/// `state.backend` and `state.redis_url`: `Some(url)` for Redis, `None`
/// for the embedded SQLite (the default).
pub(super) fn redis_url(ctx: &Ctx, s: &RawState) -> Result<Option<String>, ConfigError> {
    match s.backend.as_ref().map(|b| (b, b.get_ref().as_str())) {
        None | Some((_, "sqlite")) => Ok(None),
        Some((b, "redis")) => Ok(Some(
            s.redis_url
                .as_ref()
                .map(|u| {
                    let url = ctx.expand(u, "state.redis_url")?;
                    values::redis_url(ctx, &url, u.span().start).map(|()| url)
                })
                .transpose()?
                .ok_or_else(|| {
                    ctx.at(
                        b.span().start,
                        "state.redis_url",
                        "backend \"redis\" needs redis_url = \"redis://host:port/db\"",
                    )
                })?,
        )),
        Some((b, other)) => Err(ctx.at(
            b.span().start,
            "state.backend",
            format!("{other:?}: use \"sqlite\" (embedded, default) or \"redis\""),
        )),
    }
}
