//! `[metrics]`: where Prometheus metrics are served (off unless given).

use std::net::SocketAddr;

use super::ctx::*;
use super::raw::RawMetrics;
use super::*;

/// `metrics.listen`, a host:port.
pub(super) fn listen(ctx: &Ctx, m: &RawMetrics) -> Result<Option<SocketAddr>, ConfigError> {
    let Some(l) = &m.listen else {
        return Ok(None);
    };
    let text = ctx.expand(l, "metrics.listen")?;
    Some(text.parse().map_err(|_| {
        ctx.at(
            l.span().start,
            "metrics.listen",
            format!(
                "{text:?} is not an address to listen on; write host:port, e.g. \"127.0.0.1:9464\""
            ),
        )
    }))
    .transpose()
}
