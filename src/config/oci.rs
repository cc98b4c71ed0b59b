//! `[oci]`: where pulled bundles are cached, how often tags are polled, and
//! per-registry transport and credentials (`[oci.registries."host:port"]`).
//! Plain HTTP is used only for a registry marked `insecure = true`: TLS is
//! the default for every registry, loopback included.

use std::collections::BTreeMap;

use super::raw::RawOci;
use super::{ConfigError, Ctx};

pub use crate::bundle::oci::settings::{OciSettings, RegistrySettings};

impl OciSettings {
    pub(super) fn parse(ctx: &Ctx, raw: &RawOci) -> Result<Self, ConfigError> {
        let d = Self::default();
        let cache_dir = raw
            .cache_dir
            .as_ref()
            .map(|p| ctx.expand(p, "oci.cache_dir").map(|p| ctx.path(p)))
            .transpose()?;
        let min_delay = ctx.duration(&raw.min_delay, "oci.min_delay", d.min_delay)?;
        let max_delay = ctx.duration(&raw.max_delay, "oci.max_delay", d.max_delay)?;
        if max_delay < min_delay {
            let at = raw
                .max_delay
                .as_ref()
                .or(raw.min_delay.as_ref())
                .map_or(0, |v| v.span().start);
            return Err(ctx.at(
                at,
                "oci.max_delay",
                format!(
                    "max_delay ({}) must be at least min_delay ({})",
                    humantime::format_duration(max_delay),
                    humantime::format_duration(min_delay)
                ),
            ));
        }
        let pull_timeout = ctx.duration(&raw.pull_timeout, "oci.pull_timeout", d.pull_timeout)?;
        let max_bundle_bytes = ctx.size(
            &raw.max_bundle_bytes,
            "oci.max_bundle_bytes",
            d.max_bundle_bytes as usize,
            1024,
            1 << 30,
        )? as u64;
        let registries = registries(ctx, raw)?;
        Ok(Self {
            cache_dir,
            min_delay,
            max_delay,
            pull_timeout,
            max_bundle_bytes,
            registries,
        })
    }
}

/// `[oci.registries."HOST"]`: per-registry TLS and credentials, keyed by
/// the host in lower case.
fn registries(ctx: &Ctx, raw: &RawOci) -> Result<BTreeMap<String, RegistrySettings>, ConfigError> {
    let mut registries = BTreeMap::new();
    for (host, r) in &raw.registries {
        let field = format!("oci.registries.{host:?}");
        let rr = r.get_ref();
        if host.contains('/') || host.contains("://") || host.is_empty() {
            return Err(ctx.at(
                r.span().start,
                &field,
                "name the registry as host or host:port (no scheme, no path)",
            ));
        }
        if rr.password_env.is_some() != rr.username.is_some() {
            return Err(ctx.at(
                r.span().start,
                &field,
                "username and password_env go together (the password is read from that environment variable)",
            ));
        }
        registries.insert(
            host.to_ascii_lowercase(),
            RegistrySettings {
                insecure: rr.insecure.unwrap_or(false),
                username: rr
                    .username
                    .as_ref()
                    .map(|u| ctx.expand(u, &format!("{field}.username")))
                    .transpose()?,
                password_env: rr.password_env.clone(),
                ca_file: rr
                    .ca_file
                    .as_ref()
                    .map(|p| {
                        ctx.expand(p, &format!("{field}.ca_file"))
                            .map(|p| ctx.path(p))
                    })
                    .transpose()?,
            },
        );
    }
    Ok(registries)
}
