//! `[log.ship]`: shipping the decision log to a service with OPA's upload
//! protocol (`audit::ship`). Every value is checked here, with the field
//! named: the shipper itself never meets a bad setting.

use std::time::Duration;

use super::ctx::*;
use super::raw::RawShip;
use super::*;
use crate::audit::ship::{AtBound, ShipSettings};

/// OPA's default `upload_size_limit_bytes`.
const OPA_UPLOAD_LIMIT: usize = 32 << 10;

pub(super) fn parse(ctx: &Ctx, raw: &RawShip) -> Result<ShipSettings, ConfigError> {
    let url = ctx.expand(&raw.url, "log.ship.url")?;
    values::upstream_url(ctx, &url, raw.url.span().start, "log.ship.url")?;
    let resource = match &raw.resource {
        None => "/logs".to_string(),
        Some(r) => {
            let v = ctx.expand(r, "log.ship.resource")?;
            if !v.starts_with('/') || v.chars().any(|c| c.is_whitespace() || c.is_control()) {
                return Err(ctx.at(
                    r.span().start,
                    "log.ship.resource",
                    format!(
                        "{v:?}: write a path starting with '/', e.g. \"/logs\" (OPA's default)"
                    ),
                ));
            }
            v
        }
    };
    let mut headers = BTreeMap::new();
    for (k, v) in &raw.headers {
        headers.insert(k.clone(), ctx.expand(v, &format!("log.ship.headers.{k}"))?);
    }
    values::headers(ctx, &raw.headers, &headers, "log.ship.headers")?;
    let min_delay = ctx.duration(&raw.min_delay, "log.ship.min_delay", Duration::from_secs(1))?;
    let max_delay = ctx.duration(
        &raw.max_delay,
        "log.ship.max_delay",
        Duration::from_secs(60),
    )?;
    if min_delay < Duration::from_millis(10) || max_delay < min_delay {
        let at = raw
            .min_delay
            .as_ref()
            .or(raw.max_delay.as_ref())
            .map_or(0, |v| v.span().start);
        return Err(ctx.at(
            at,
            "log.ship.min_delay",
            format!("min_delay ({min_delay:?}) must be at least 10ms and no more than max_delay ({max_delay:?})"),
        ));
    }
    let timeout = ctx.duration(&raw.timeout, "log.ship.timeout", Duration::from_secs(10))?;
    if timeout < Duration::from_millis(100) {
        let at = raw.timeout.as_ref().map_or(0, |v| v.span().start);
        return Err(ctx.at(
            at,
            "log.ship.timeout",
            "must be at least 100ms (one upload's time limit)",
        ));
    }
    Ok(ShipSettings {
        url,
        resource,
        headers,
        upload_size_limit_bytes: ctx.size(
            &raw.upload_size_limit_bytes,
            "log.ship.upload_size_limit_bytes",
            OPA_UPLOAD_LIMIT,
            1024,
            64 << 20,
        )?,
        min_delay,
        max_delay,
        timeout,
        max_spool_bytes: ctx.size(
            &raw.max_spool_bytes,
            "log.ship.max_spool_bytes",
            1 << 30,
            0,
            1 << 50,
        )? as u64,
        at_bound: at_bound(ctx, raw)?,
    })
}

fn at_bound(ctx: &Ctx, raw: &RawShip) -> Result<AtBound, ConfigError> {
    match raw.at_bound.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "drop_oldest")) => Ok(AtBound::DropOldest),
        Some((_, "stop")) => Ok(AtBound::Stop),
        Some((m, other)) => Err(ctx.at(
            m.span().start,
            "log.ship.at_bound",
            format!("{other:?}: use \"drop_oldest\" (default: the oldest undelivered records are not shipped, counted) or \"stop\" (shipping stops with an error until the backlog fits)"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::super::Config;
    use crate::audit::ship::AtBound;

    fn parse(ship: &str) -> Result<Config, String> {
        let text = format!(
            "[log]\ndecisions = \"d.jsonl\"\n[log.ship]\n{ship}\n[servers.fs]\ncommand = \"x\"\n"
        );
        Config::from_toml_str(&text, Path::new("/etc/gavel/servers.toml"), &|k| {
            (k == "TOKEN").then(|| "s3cret".to_string())
        })
        .map_err(|e| e.to_string())
    }

    #[test]
    fn ship_defaults_are_opas_and_secrets_come_from_the_environment() {
        let c = parse(
            "url = \"https://logs.example\"\nheaders = { Authorization = \"Bearer ${TOKEN}\" }",
        )
        .unwrap();
        let s = c.log.ship.unwrap();
        assert_eq!(s.resource, "/logs");
        assert_eq!(s.upload_size_limit_bytes, 32 << 10);
        assert_eq!(s.headers["Authorization"], "Bearer s3cret");
        assert_eq!(s.at_bound, AtBound::DropOldest);
        assert_eq!(
            (s.min_delay, s.max_delay),
            (Duration::from_secs(1), Duration::from_secs(60))
        );
        assert!(
            parse("url = \"https://logs.example\"")
                .unwrap()
                .log
                .ship
                .is_some()
        );
        let c = parse("url = \"http://127.0.0.1:9\"\nresource = \"/v1/decisions\"\nmax_spool_bytes = \"1MiB\"\nat_bound = \"stop\"").unwrap();
        let s = c.log.ship.unwrap();
        assert_eq!(
            (s.resource.as_str(), s.max_spool_bytes, s.at_bound),
            ("/v1/decisions", 1 << 20, AtBound::Stop)
        );
    }

    #[test]
    fn ship_mistakes_name_the_field_and_the_line() {
        for (ship, field, hint) in [
            ("url = \"ftp://x\"", "log.ship.url", "http"),
            (
                "url = \"https://x\"\nresource = \"logs\"",
                "log.ship.resource",
                "'/'",
            ),
            (
                "url = \"https://x\"\nat_bound = \"block\"",
                "log.ship.at_bound",
                "drop_oldest",
            ),
            (
                "url = \"https://x\"\nmin_delay = \"5s\"\nmax_delay = \"1s\"",
                "log.ship.min_delay",
                "max_delay",
            ),
            (
                "url = \"https://x\"\nupload_size_limit_bytes = 10",
                "log.ship.upload_size_limit_bytes",
                "between",
            ),
            (
                "url = \"https://x\"\nheaders = { Authorization = \"${NOPE}\" }",
                "log.ship.headers.Authorization",
                "NOPE",
            ),
            (
                "url = \"https://x\"\nheaders = { \"bad name\" = \"v\" }",
                "log.ship.headers",
                "header name",
            ),
            ("url = \"https://x\"\nurls = 1", "urls", "unknown"),
            (
                "url = \"https://x\"\ntimeout = \"1ms\"",
                "log.ship.timeout",
                "100ms",
            ),
        ] {
            let e = parse(ship).unwrap_err();
            assert!(e.contains(field) && e.contains(hint), "{ship}: {e}");
        }
        let c = parse("url = \"https://u:pw@logs.example\"\nheaders = { Authorization = \"Bearer ${TOKEN}\" }").unwrap();
        let shown = super::super::render::render(&c);
        assert!(
            shown.contains("[log.ship]") && !shown.contains("s3cret") && !shown.contains("pw@"),
            "{shown}"
        );
        let e = parse("resource = \"/logs\"").unwrap_err();
        assert!(e.contains("url"), "{e}");
        let e = Config::from_toml_str(
            "[log.ship]\nurl = \"https://x\"\n[servers.fs]\ncommand = \"x\"\n",
            Path::new("/etc/gavel/servers.toml"),
            &|_| None,
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains(":2:") && e.contains("log.ship") && e.contains("[log] decisions"),
            "{e}"
        );
    }
}
