//! `[telemetry]`: OpenTelemetry spans over OTLP/HTTP (docs/config.md). Off
//! unless `endpoint` is set; the other keys bound the exporter. Header values
//! are expanded from the environment (`${OTEL_API_KEY}`) and never printed.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::raw::RawSize;
use super::{ConfigError, Ctx};
use crate::telemetry::Settings;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    pub endpoint: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub service_name: Option<Spanned<String>>,
    pub queue_size: Option<Spanned<RawSize>>,
    pub batch_size: Option<Spanned<RawSize>>,
    pub flush_interval: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub shutdown_timeout: Option<Spanned<String>>,
}

/// A count key (`queue_size`, `batch_size`) between `min` and `max`.
fn count(
    ctx: &Ctx,
    v: &Option<Spanned<RawSize>>,
    field: &str,
    default: usize,
    max: usize,
) -> Result<usize, ConfigError> {
    let Some(v) = v else { return Ok(default) };
    match v.get_ref() {
        RawSize::Bytes(n) if (1..=max as u64).contains(n) => Ok(*n as usize),
        _ => Err(ctx.at(
            v.span().start,
            field,
            format!("must be a whole number of spans between 1 and {max}"),
        )),
    }
}

/// `[telemetry]` as validated: `None` when no endpoint is configured (then
/// every other key is refused: they would silently do nothing).
pub(super) fn parse(ctx: &Ctx, raw: &RawTelemetry) -> Result<Option<Settings>, ConfigError> {
    let Some(endpoint) = &raw.endpoint else {
        let set = !raw.headers.is_empty()
            || raw.service_name.is_some()
            || raw.queue_size.is_some()
            || raw.batch_size.is_some()
            || raw.flush_interval.is_some()
            || raw.timeout.is_some()
            || raw.shutdown_timeout.is_some();
        return match set {
            true => Err(ctx.general(
                "[telemetry] has settings but no endpoint: set telemetry.endpoint to the OTLP/HTTP traces URL (e.g. \"http://localhost:4318/v1/traces\"), or remove the table",
            )),
            false => Ok(None),
        };
    };
    let url = ctx.expand(endpoint, "telemetry.endpoint")?;
    super::values::upstream_url(ctx, &url, endpoint.span().start, "telemetry.endpoint").map_err(
        |_| {
            ctx.at(
                endpoint.span().start,
                "telemetry.endpoint",
                format!("{:?} is not an http:// or https:// URL with a host: write the OTLP/HTTP traces URL, e.g. \"http://localhost:4318/v1/traces\"", super::render::mask_url(&url)),
            )
        },
    )?;
    let mut headers = BTreeMap::new();
    for (k, v) in &raw.headers {
        headers.insert(k.clone(), ctx.expand(v, &format!("telemetry.headers.{k}"))?);
    }
    super::values::headers(ctx, &raw.headers, &headers, "telemetry.headers")?;
    let service_name = match &raw.service_name {
        None => "gavel".to_string(),
        Some(s) => {
            let name = ctx.expand(s, "telemetry.service_name")?;
            if name.is_empty() || name.len() > 256 || name.chars().any(char::is_control) {
                return Err(ctx.at(
                    s.span().start,
                    "telemetry.service_name",
                    "must be 1 to 256 characters without control characters",
                ));
            }
            name
        }
    };
    let queue_size = count(ctx, &raw.queue_size, "telemetry.queue_size", 2048, 1 << 20)?;
    let batch_size = count(ctx, &raw.batch_size, "telemetry.batch_size", 512, 8192)?;
    if batch_size > queue_size {
        let at = raw.batch_size.as_ref().map_or(0, |v| v.span().start);
        return Err(ctx.at(
            at,
            "telemetry.batch_size",
            format!("{batch_size} is larger than telemetry.queue_size ({queue_size}): a batch is taken from the queue"),
        ));
    }
    Ok(Some(Settings {
        endpoint: url,
        headers: headers.into_iter().collect(),
        service_name,
        queue_size,
        batch_size,
        flush_interval: bounded(ctx, &raw.flush_interval, "telemetry.flush_interval", 1)?,
        timeout: bounded(ctx, &raw.timeout, "telemetry.timeout", 10)?,
        shutdown_timeout: bounded(ctx, &raw.shutdown_timeout, "telemetry.shutdown_timeout", 5)?,
    }))
}

/// A duration key, at most 5 minutes (every wait of the exporter is bounded).
fn bounded(
    ctx: &Ctx,
    v: &Option<Spanned<String>>,
    field: &str,
    default_secs: u64,
) -> Result<Duration, ConfigError> {
    let d = ctx.duration(v, field, Duration::from_secs(default_secs))?;
    if d > Duration::from_secs(300) {
        let at = v.as_ref().map_or(0, |v| v.span().start);
        return Err(ctx.at(at, field, "must be at most 5m"));
    }
    Ok(d)
}

/// `[telemetry]` as `gavel config check` prints it: header values masked.
pub(super) fn render(s: &Settings) -> toml::Table {
    use toml::Value;
    let mut t = toml::Table::new();
    t.insert(
        "endpoint".into(),
        Value::String(super::render::mask_url(&s.endpoint)),
    );
    let headers: toml::Table = s
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(super::render::mask_header(v))))
        .collect();
    t.insert("headers".into(), Value::Table(headers));
    t.insert("service_name".into(), Value::String(s.service_name.clone()));
    t.insert("queue_size".into(), Value::Integer(s.queue_size as i64));
    t.insert("batch_size".into(), Value::Integer(s.batch_size as i64));
    for (k, d) in [
        ("flush_interval", s.flush_interval),
        ("timeout", s.timeout),
        ("shutdown_timeout", s.shutdown_timeout),
    ] {
        t.insert(
            k.into(),
            Value::String(humantime::format_duration(d).to_string()),
        );
    }
    t
}

#[cfg(test)]
mod tests {
    use crate::config::Config;
    use std::path::Path;

    fn parse(toml: &str) -> Result<Config, String> {
        let env = |k: &str| (k == "OTEL_KEY").then(|| "Bearer s3cret".to_string());
        let toml = format!("[servers.fs]\ncommand = \"x\"\n{toml}");
        Config::from_toml_str(&toml, Path::new("/etc/gavel/servers.toml"), &env)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn off_by_default_and_defaults_when_on() {
        assert_eq!(parse("").unwrap().telemetry, None);
        let c = parse("[telemetry]\nendpoint = \"http://localhost:4318/v1/traces\"\n").unwrap();
        let t = c.telemetry.unwrap();
        assert_eq!(t.service_name, "gavel");
        assert_eq!((t.queue_size, t.batch_size), (2048, 512));
        assert_eq!(t.timeout.as_secs(), 10);
    }

    #[test]
    fn headers_come_from_the_environment_and_are_masked() {
        let c = parse(
            "[telemetry]\nendpoint = \"https://otel.example/v1/traces\"\nheaders = { authorization = \"${OTEL_KEY}\" }\nservice_name = \"gw-1\"\nqueue_size = 10\nbatch_size = 5\ntimeout = \"2s\"\n",
        )
        .unwrap();
        let t = c.telemetry.clone().unwrap();
        assert_eq!(
            t.headers,
            vec![("authorization".into(), "Bearer s3cret".into())]
        );
        let printed = c.render_masked();
        assert!(printed.contains("Bearer ***"), "{printed}");
        assert!(!printed.contains("s3cret"), "{printed}");
    }

    #[test]
    fn errors_name_the_key() {
        for (toml, key) in [
            ("endpoint = \"localhost:4318\"", "telemetry.endpoint"),
            ("endpoint = \"ftp://x/v1/traces\"", "telemetry.endpoint"),
            (
                "endpoint = \"http://x/v1/traces\"\nqueue_size = 0",
                "telemetry.queue_size",
            ),
            (
                "endpoint = \"http://x/v1/traces\"\nbatch_size = 9000",
                "telemetry.batch_size",
            ),
            (
                "endpoint = \"http://x/v1/traces\"\nqueue_size = 4\nbatch_size = 8",
                "telemetry.batch_size",
            ),
            (
                "endpoint = \"http://x/v1/traces\"\ntimeout = \"1h\"",
                "telemetry.timeout",
            ),
            (
                "endpoint = \"http://x/v1/traces\"\nflush_interval = \"soon\"",
                "telemetry.flush_interval",
            ),
            (
                "endpoint = \"http://x/v1/traces\"\nheaders = { \"bad header\" = \"x\" }",
                "telemetry.headers",
            ),
            (
                "endpoint = \"http://x/v1/traces\"\nheaders = { k = \"${MISSING}\" }",
                "telemetry.headers.k",
            ),
            (
                "endpoint = \"http://x/v1/traces\"\nservice_name = \"\"",
                "telemetry.service_name",
            ),
            ("endpoint = \"http://x/v1/traces\"\nsampler = 1", "sampler"),
            ("service_name = \"x\"", "telemetry.endpoint"),
        ] {
            let e = parse(&format!("[telemetry]\n{toml}\n")).unwrap_err();
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
