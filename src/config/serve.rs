//! `[serve]`: how `gavel serve` listens — address, TLS, the Host/Origin
//! allow-lists, the proxy escape hatch, the session caps (in all, per
//! user), the idle-session timeout, the connection cap, the header and body
//! read timeouts and the shutdown drain. Every key has a command-line flag; a flag overrides the key
//! (`--allowed-host`/`--allowed-origin` add to the lists). Ignored by
//! `gavel run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use toml::Spanned;

use super::{ConfigError, Ctx};

#[derive(Debug, Clone, PartialEq)]
pub struct ServeSettings {
    pub listen: SocketAddr,
    /// Extra `Host` values (names or `name:port`) besides the loopback ones.
    pub allowed_hosts: Vec<String>,
    /// Extra browser origins besides the loopback ones.
    pub allowed_origins: Vec<String>,
    /// A TLS-terminating proxy is in front: a non-loopback address may be
    /// served over plain HTTP.
    pub behind_proxy: bool,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    pub max_sessions: usize,
    pub drain_timeout: Duration,
    /// With `[auth]`: sessions one user may have open at once.
    pub max_sessions_per_user: usize,
    /// A session with no message for this long is closed, its upstreams
    /// stopped.
    pub session_idle_timeout: Duration,
    /// TCP connections open at once (plain or TLS).
    pub max_connections: usize,
    /// How long a request head may take to arrive (also: how long a
    /// kept-alive connection may wait for its next request).
    pub header_timeout: Duration,
    /// How long a request body may take to arrive once its head has.
    pub body_timeout: Duration,
    /// `serve.round_key_file`: the key that seals input-round state
    /// (`host::seal`), the same file on every instance behind one load
    /// balancer. Read when gavel starts (`GAVEL_ROUND_KEY` overrides it);
    /// none: a random key per process.
    pub round_key_file: Option<PathBuf>,
}

impl Default for ServeSettings {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            allowed_hosts: vec![],
            allowed_origins: vec![],
            behind_proxy: false,
            tls: None,
            max_sessions: 256,
            drain_timeout: Duration::from_secs(30),
            max_sessions_per_user: 16,
            session_idle_timeout: Duration::from_secs(300),
            max_connections: 1024,
            header_timeout: Duration::from_secs(30),
            body_timeout: Duration::from_secs(30),
            round_key_file: None,
        }
    }
}

/// `[serve]` as written.
#[derive(Debug, serde::Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServe {
    pub listen: Option<Spanned<String>>,
    #[serde(default)]
    pub allowed_hosts: Vec<Spanned<String>>,
    #[serde(default)]
    pub allowed_origins: Vec<Spanned<String>>,
    pub behind_proxy: Option<bool>,
    pub tls_cert: Option<Spanned<String>>,
    pub tls_key: Option<Spanned<String>>,
    pub max_sessions: Option<Spanned<i64>>,
    pub drain_timeout: Option<Spanned<String>>,
    pub max_sessions_per_user: Option<Spanned<i64>>,
    pub session_idle_timeout: Option<Spanned<String>>,
    pub max_connections: Option<Spanned<i64>>,
    pub header_timeout: Option<Spanned<String>>,
    pub body_timeout: Option<Spanned<String>>,
    pub round_key_file: Option<Spanned<String>>,
}

impl ServeSettings {
    pub(super) fn parse(ctx: &Ctx, raw: &RawServe) -> Result<Self, ConfigError> {
        let d = Self::default();
        let listen = listen(ctx, raw, d.listen)?;
        let (allowed_hosts, allowed_origins) = allow_lists(ctx, raw)?;
        let tls = tls(ctx, raw)?;
        let max_sessions = count(
            ctx,
            &raw.max_sessions,
            "serve.max_sessions",
            d.max_sessions,
            "how many host sessions (each with its own upstreams) may be open at once",
        )?;
        let max_sessions_per_user = count(
            ctx,
            &raw.max_sessions_per_user,
            "serve.max_sessions_per_user",
            d.max_sessions_per_user,
            "how many sessions one bearer-token user may have open at once",
        )?;
        let max_connections = count(
            ctx,
            &raw.max_connections,
            "serve.max_connections",
            d.max_connections,
            "how many TCP connections may be open at once (each session's event stream holds one)",
        )?;
        Ok(ServeSettings {
            listen,
            allowed_hosts,
            allowed_origins,
            behind_proxy: raw.behind_proxy.unwrap_or(d.behind_proxy),
            tls,
            max_sessions,
            drain_timeout: ctx.duration(
                &raw.drain_timeout,
                "serve.drain_timeout",
                d.drain_timeout,
            )?,
            max_sessions_per_user,
            session_idle_timeout: ctx.duration(
                &raw.session_idle_timeout,
                "serve.session_idle_timeout",
                d.session_idle_timeout,
            )?,
            max_connections,
            header_timeout: ctx.duration(
                &raw.header_timeout,
                "serve.header_timeout",
                d.header_timeout,
            )?,
            body_timeout: ctx.duration(&raw.body_timeout, "serve.body_timeout", d.body_timeout)?,
            round_key_file: raw
                .round_key_file
                .as_ref()
                .map(|f| ctx.expand(f, "serve.round_key_file").map(|p| ctx.path(p)))
                .transpose()?,
        })
    }

    /// For `gavel config check`.
    pub fn render(&self) -> toml::Table {
        use toml::Value;
        let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
        let mut t = toml::Table::new();
        t.insert("listen".into(), Value::String(self.listen.to_string()));
        t.insert("allowed_hosts".into(), strings(&self.allowed_hosts));
        t.insert("allowed_origins".into(), strings(&self.allowed_origins));
        t.insert("behind_proxy".into(), Value::Boolean(self.behind_proxy));
        if let Some((c, k)) = &self.tls {
            t.insert("tls_cert".into(), Value::String(c.display().to_string()));
            t.insert("tls_key".into(), Value::String(k.display().to_string()));
        }
        t.insert(
            "max_sessions".into(),
            Value::Integer(self.max_sessions as i64),
        );
        let duration = |d: Duration| Value::String(humantime::format_duration(d).to_string());
        t.insert("drain_timeout".into(), duration(self.drain_timeout));
        t.insert(
            "max_sessions_per_user".into(),
            Value::Integer(self.max_sessions_per_user as i64),
        );
        t.insert(
            "session_idle_timeout".into(),
            duration(self.session_idle_timeout),
        );
        t.insert(
            "max_connections".into(),
            Value::Integer(self.max_connections as i64),
        );
        t.insert("header_timeout".into(), duration(self.header_timeout));
        t.insert("body_timeout".into(), duration(self.body_timeout));
        if let Some(f) = &self.round_key_file {
            // The file's name only: the key is never printed.
            t.insert(
                "round_key_file".into(),
                Value::String(f.display().to_string()),
            );
        }
        t
    }
}

/// `serve.listen`, an ip:port.
fn listen(ctx: &Ctx, raw: &RawServe, default: SocketAddr) -> Result<SocketAddr, ConfigError> {
    let Some(l) = &raw.listen else {
        return Ok(default);
    };
    let text = ctx.expand(l, "serve.listen")?;
    text.parse().map_err(|_| {
        ctx.at(
            l.span().start,
            "serve.listen",
            format!("{text:?} is not an address to listen on; write ip:port, e.g. \"127.0.0.1:8080\" or \"0.0.0.0:8443\""),
        )
    })
}

/// `serve.allowed_hosts` and `serve.allowed_origins`, expanded, each entry
/// checked by the parser the server uses (`config::hosts`).
fn allow_lists(ctx: &Ctx, raw: &RawServe) -> Result<(Vec<String>, Vec<String>), ConfigError> {
    let list = |v: &[Spanned<String>], field: &str| -> Result<Vec<String>, ConfigError> {
        v.iter().map(|s| ctx.expand(s, field)).collect()
    };
    let allowed_hosts = list(&raw.allowed_hosts, "serve.allowed_hosts")?;
    let allowed_origins = list(&raw.allowed_origins, "serve.allowed_origins")?;
    // The same parser the server uses: a typo is an error now, naming
    // the entry, not a silently useless allow-list entry later.
    for (i, h) in allowed_hosts.iter().enumerate() {
        if let Err(e) = super::hosts::allowed_host(h) {
            return Err(ctx.at(raw.allowed_hosts[i].span().start, "serve.allowed_hosts", e));
        }
    }
    for (i, o) in allowed_origins.iter().enumerate() {
        if let Err(e) = super::hosts::allowed_origin(o) {
            return Err(ctx.at(
                raw.allowed_origins[i].span().start,
                "serve.allowed_origins",
                e,
            ));
        }
    }
    Ok((allowed_hosts, allowed_origins))
}

/// `serve.tls_cert` and `serve.tls_key`: both or neither.
fn tls(ctx: &Ctx, raw: &RawServe) -> Result<Option<(PathBuf, PathBuf)>, ConfigError> {
    match (&raw.tls_cert, &raw.tls_key) {
        (None, None) => Ok(None),
        (Some(c), Some(k)) => Ok(Some((
            ctx.path(ctx.expand(c, "serve.tls_cert")?),
            ctx.path(ctx.expand(k, "serve.tls_key")?),
        ))),
        (Some(s), None) | (None, Some(s)) => Err(ctx.at(
            s.span().start,
            "serve.tls_cert",
            "give both tls_cert (PEM certificate chain) and tls_key (its PEM private key), or neither",
        )),
    }
}

/// The `gavel serve` flags' parser for a timeout: a duration above zero.
pub fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be greater than zero".into()),
        Err(e) => Err(format!("{e} (write e.g. 30s, 2m, 500ms)")),
    }
}

/// The `gavel serve` flags' parser for a cap: a whole number, at least 1.
pub fn positive_count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(format!("{text:?}: expected a whole number, at least 1")),
    }
}

/// A count key that must be at least 1; the error says what it counts.
fn count(
    ctx: &Ctx,
    v: &Option<Spanned<i64>>,
    field: &str,
    default: usize,
    what: &str,
) -> Result<usize, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if *n.get_ref() >= 1 => Ok(*n.get_ref() as usize),
        Some(n) => Err(ctx.at(n.span().start, field, format!("at least 1: {what}"))),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::config::Config;

    fn parse(serve: &str) -> Result<Config, String> {
        Config::from_toml_str(
            &format!("[serve]\n{serve}\n[servers.a]\ncommand = \"x\"\n"),
            Path::new("/etc/gavel/servers.toml"),
            &|k| (k == "HOST").then(|| "gavel.internal".to_string()),
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn every_key_parses_and_renders() {
        let c = parse(
            "listen = \"0.0.0.0:8443\"\nallowed_hosts = [\"${HOST}\", \"gavel.example:8443\"]\nallowed_origins = [\"https://app.example\"]\nbehind_proxy = true\ntls_cert = \"cert.pem\"\ntls_key = \"key.pem\"\nmax_sessions = 12\ndrain_timeout = \"2m\"\nmax_sessions_per_user = 3\nsession_idle_timeout = \"10m\"\nmax_connections = 99\nheader_timeout = \"5s\"\nbody_timeout = \"7s\"\nround_key_file = \"round.key\"\n",
        )
        .unwrap();
        let s = &c.serve;
        assert_eq!(s.listen, "0.0.0.0:8443".parse().unwrap());
        assert_eq!(s.allowed_hosts, ["gavel.internal", "gavel.example:8443"]);
        assert_eq!(s.allowed_origins, ["https://app.example"]);
        assert!(s.behind_proxy);
        assert_eq!(
            s.tls,
            Some(("/etc/gavel/cert.pem".into(), "/etc/gavel/key.pem".into()))
        );
        assert_eq!(
            (s.max_sessions, s.drain_timeout),
            (12, Duration::from_secs(120))
        );
        assert_eq!(
            (s.max_sessions_per_user, s.session_idle_timeout),
            (3, Duration::from_secs(600))
        );
        assert_eq!(
            (s.max_connections, s.header_timeout, s.body_timeout),
            (99, Duration::from_secs(5), Duration::from_secs(7))
        );
        assert_eq!(s.round_key_file, Some("/etc/gavel/round.key".into()));
        let out = c.render_masked();
        for want in [
            "[serve]",
            "listen = \"0.0.0.0:8443\"",
            "gavel.internal",
            "behind_proxy = true",
            "tls_key = \"/etc/gavel/key.pem\"",
            "max_sessions = 12",
            "drain_timeout = \"2m\"",
            "max_sessions_per_user = 3",
            "session_idle_timeout = \"10m\"",
            "max_connections = 99",
            "header_timeout = \"5s\"",
            "body_timeout = \"7s\"",
            "round_key_file = \"/etc/gavel/round.key\"",
        ] {
            assert!(out.contains(want), "{want} missing in\n{out}");
        }
        assert_eq!(parse("").unwrap().serve, ServeSettings::default());
    }

    #[test]
    fn mistakes_are_refused_naming_the_key() {
        for (bad, says) in [
            ("lisen = \"127.0.0.1:1\"", "unknown field `lisen`"),
            ("listen = \"localhost\"", "serve.listen"),
            ("allowed_hosts = [\"a b\"]", "serve.allowed_hosts"),
            (
                "allowed_origins = [\"app.example\"]",
                "serve.allowed_origins",
            ),
            ("tls_cert = \"c.pem\"", "give both tls_cert"),
            ("tls_key = \"k.pem\"", "give both tls_cert"),
            ("max_sessions = 0", "serve.max_sessions"),
            ("drain_timeout = \"soon\"", "serve.drain_timeout"),
            ("max_sessions_per_user = 0", "serve.max_sessions_per_user"),
            (
                "session_idle_timeout = \"0s\"",
                "serve.session_idle_timeout",
            ),
            ("max_connections = -1", "serve.max_connections"),
            ("header_timeout = \"0s\"", "serve.header_timeout"),
            ("body_timeout = \"later\"", "serve.body_timeout"),
            ("behind_proxy = \"yes\"", "expected a boolean"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
            assert!(e.starts_with("/etc/gavel/servers.toml:"), "{e}");
        }
    }
}
