//! `servers.toml`: what gavel fronts and how. Parsed strictly (unknown keys are
//! errors everywhere), expanded (`${ENV}` in the documented fields), validated,
//! with errors that name the file, line and field and say what to do.
//! Reference: docs/config.md.

mod expand;
pub mod import;
pub mod mask;
pub mod oci;
mod raw;
pub mod serve;

pub use oci::{OciSettings, RegistrySettings};
pub use serve::ServeSettings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use toml::Spanned;

use raw::{RawConfig, RawServer, RawSize};

#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub servers: BTreeMap<String, ServerConfig>,
    pub identity: Identity,
    pub limits: Limits,
    pub log: LogSettings,
    pub policy: PolicySettings,
    pub keys: BTreeMap<String, KeyConfig>,
    /// `[metrics] listen`: where to serve Prometheus metrics (`host:port`).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// `[budget]`: calls/tokens per user or agent per day or week.
    pub budget: Option<Budget>,
    /// `[state] path`: the state store (default `<state_dir>/state.sqlite`).
    pub state_path: Option<PathBuf>,
    /// `[state] backend = "redis"`: the Redis URL shared by every instance.
    pub redis_url: Option<String>,
    /// `[auth]`: who is asking, from bearer tokens (HTTP front only).
    pub auth: Option<AuthSettings>,
    /// `[oci]`: bundle cache, tag polling, registries.
    pub oci: OciSettings,
    /// `[serve]`: how `gavel serve` listens (flags override).
    pub serve: ServeSettings,
    /// File the config came from (None for `gavel wrap`); relative paths
    /// (commands, `cwd`, bundles) resolve against its directory.
    pub source: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    pub name: String,
    pub transport: UpstreamTransport,
    pub enabled: bool,
    pub startup_timeout: Duration,
    pub call_timeout: Duration,
    pub prefix: String,
    pub tools: ToolRules,
    pub annotations_trusted: bool,
    pub bundles: Vec<String>,
    pub fail_open: bool,
    pub restart_max_backoff: Duration,
    /// Verification of the server's bundles (`keys`, `exclude_files`,
    /// `require_signature`).
    pub signing: BundleSigning,
    /// Rate limits from `[[servers.NAME.limits]]` (added to the bundles').
    pub limits: Vec<crate::state::limits::Limit>,
    /// One upstream per host session (default), or one shared by all.
    pub session_mode: SessionMode,
}

/// `servers.NAME.session_mode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SessionMode {
    /// Started for each host session after its `initialize`, mirroring that
    /// host's capabilities.
    #[default]
    PerSession,
    /// One connection for every host session (upstream/shared.rs).
    Shared,
}

/// How a server's bundles must be signed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BundleSigning {
    /// Key names (from `[keys.*]`) trusted for this server's bundles; several
    /// at once during a rotation.
    pub keys: Vec<String>,
    pub exclude_files: Vec<String>,
    /// Refuse unsigned bundles. Default: true when keys are listed.
    pub require_signature: bool,
}

/// `[keys.NAME]`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyConfig {
    pub algorithm: String,
    /// PEM public key or HMAC secret, resolved from `key`, `key_file` or `key_env`.
    pub material: String,
    pub scope: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum UpstreamTransport {
    Stdio {
        command: String,
        args: Vec<String>,
        env: BTreeMap<String, String>,
        cwd: Option<PathBuf>,
    },
    Http {
        url: String,
        headers: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolRules {
    pub allow: Vec<String>,
    pub deny: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Identity {
    pub agent: AgentIdentity,
    pub user: UserIdentity,
    pub environment: EnvironmentIdentity,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AgentIdentity {
    pub id: String,
    pub scope: Vec<String>,
    pub owner_team: Option<String>,
}

impl Default for AgentIdentity {
    fn default() -> Self {
        Self {
            id: "unknown-agent".into(),
            scope: vec![],
            owner_team: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserIdentity {
    pub id: String,
    pub groups: Vec<String>,
    pub data_classifications_authorized: Vec<String>,
}

impl Default for UserIdentity {
    fn default() -> Self {
        Self {
            id: "unknown-user".into(),
            groups: vec![],
            data_classifications_authorized: vec![],
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct EnvironmentIdentity {
    pub region: Option<String>,
    pub is_production: bool,
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    pub max_message_bytes: usize,
    pub max_stderr_line_bytes: usize,
    pub stderr_tail_lines: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_message_bytes: 16 * 1024 * 1024,
            max_stderr_line_bytes: 8 * 1024,
            stderr_tail_lines: 50,
        }
    }
}

/// `[auth]`: how `gavel serve` knows who is asking.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthSettings {
    pub issuer: String,
    /// gavel's resource URL: tokens must be issued for it (`aud`).
    pub audience: String,
    pub algorithm: String,
    pub key: AuthKey,
    pub leeway: Duration,
    pub user_claim: String,
    pub groups_claim: String,
    pub agent_claim: String,
    pub classifications_claim: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum AuthKey {
    PemFile(PathBuf),
    SecretEnv(String),
    JwksFile(PathBuf),
    /// A JWKS document fetched over HTTPS (plain HTTP on loopback only),
    /// refreshed every `refresh` and when a token names an unknown `kid`.
    JwksUrl {
        url: String,
        refresh: Duration,
    },
}

/// `[budget]`: what one user (or agent) may spend per period, across
/// sessions, restarts and gavel processes.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub per: BudgetPer,
    pub period: crate::state::budget::Period,
    pub calls: Option<u64>,
    pub tokens: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum BudgetPer {
    User,
    Agent,
    UserAgent,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LogSettings {
    pub file: Option<PathBuf>,
    pub level: Option<String>,
    pub decisions: Option<PathBuf>,
    pub max_arg_bytes: usize,
    pub secret_fields: Vec<String>,
    /// What a decision becomes when its record cannot be written.
    pub on_write_error: OnWriteError,
    /// `rotate_bytes` (default 256 MiB, 0: off) and `rotate_keep` (default 1).
    pub rotation: crate::audit::Rotation,
}

/// `[log] on_write_error`: the record precedes the effect, so by default a
/// request whose decision record cannot be written is denied
/// (`audit_unavailable`); `allow` keeps the decision as made (the audit
/// trail then has a gap, announced at startup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnWriteError {
    #[default]
    Deny,
    Allow,
}

impl OnWriteError {
    pub fn as_str(self) -> &'static str {
        match self {
            OnWriteError::Deny => "deny",
            OnWriteError::Allow => "allow",
        }
    }
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            file: None,
            level: None,
            decisions: None,
            max_arg_bytes: 4096,
            secret_fields: vec![],
            on_write_error: OnWriteError::Deny,
            rotation: crate::audit::Rotation {
                bytes: 256 << 20,
                keep: 1,
            },
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    pub shared_bundles: Vec<String>,
    /// `[policy] keys`: key names trusted to sign the shared bundles. When
    /// set, every shared bundle (local or from a registry) must be signed by
    /// one of them; when not, shared bundles are verified with each server's
    /// own keys (a server that lists keys never runs an unsigned bundle).
    pub keys: Vec<String>,
    pub require_bundle: bool,
    pub strict_input: bool,
    pub eval_timeout: Duration,
    /// How long gavel waits for a human to approve a call.
    pub approval_timeout: Duration,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            shared_bundles: vec![],
            keys: vec![],
            require_bundle: false,
            strict_input: false,
            eval_timeout: Duration::from_millis(100),
            approval_timeout: Duration::from_secs(120),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: cannot read the config: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    /// `file:line:col: field: message`
    #[error("{path}:{line}:{col}: {field}{sep}{message}", sep = if field.is_empty() { "" } else { ": " })]
    Invalid {
        path: String,
        line: usize,
        col: usize,
        field: String,
        message: String,
    },
    #[error("{path}: {message}")]
    General { path: String, message: String },
}

const SERVER_NAME_MAX: usize = 32;

/// Parsing context: the text (for line numbers), the origin, the environment.
struct Ctx<'a> {
    text: &'a str,
    path: String,
    env: &'a dyn Fn(&str) -> Option<String>,
    base: PathBuf,
}

impl Ctx<'_> {
    fn at(&self, offset: usize, field: &str, message: impl Into<String>) -> ConfigError {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ConfigError::Invalid {
            path: self.path.clone(),
            line,
            col,
            field: field.to_string(),
            message: message.into(),
        }
    }

    fn general(&self, message: impl Into<String>) -> ConfigError {
        ConfigError::General {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn expand(&self, v: &Spanned<String>, field: &str) -> Result<String, ConfigError> {
        expand::expand(v.get_ref(), self.env).map_err(|var| {
            if var.contains(' ') || var.contains('"') {
                self.at(v.span().start, field, var)
            } else {
                self.at(
                    v.span().start,
                    field,
                    format!("environment variable {var} is not set (set it, or write ${{{var}:-default}})"),
                )
            }
        })
    }

    fn duration(
        &self,
        v: &Option<Spanned<String>>,
        field: &str,
        default: Duration,
    ) -> Result<Duration, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let d = humantime::parse_duration(v.get_ref().trim()).map_err(|_| {
            self.at(
                v.span().start,
                field,
                format!("invalid duration {:?} (use a number with a unit, e.g. \"30s\", \"2m\", \"500ms\")", v.get_ref()),
            )
        })?;
        if d.is_zero() {
            return Err(self.at(v.span().start, field, "must be greater than zero"));
        }
        Ok(d)
    }

    fn size(
        &self,
        v: &Option<Spanned<RawSize>>,
        field: &str,
        default: usize,
        min: u64,
        max: u64,
    ) -> Result<usize, ConfigError> {
        let Some(v) = v else { return Ok(default) };
        let n = match v.get_ref() {
            RawSize::Bytes(n) => Some(*n),
            RawSize::Text(t) => parse_size(t),
        }
        .ok_or_else(|| {
            self.at(
                v.span().start,
                field,
                "invalid size (use bytes, or a number with a unit: \"512KiB\", \"16MiB\", \"1MB\")",
            )
        })?;
        if n < min || n > max {
            return Err(self.at(
                v.span().start,
                field,
                format!("must be between {min} and {max} bytes, got {n}"),
            ));
        }
        Ok(n as usize)
    }

    fn path(&self, p: String) -> PathBuf {
        let p = PathBuf::from(p);
        if p.is_relative() {
            self.base.join(p)
        } else {
            p
        }
    }
}

/// "16MiB", "512 KiB", "1MB", "4096".
pub fn parse_size(s: &str) -> Option<u64> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1000,
        "kib" | "k" => 1024,
        "mb" => 1000 * 1000,
        "mib" | "m" => 1024 * 1024,
        "gb" => 1000 * 1000 * 1000,
        "gib" | "g" => 1024 * 1024 * 1024,
        _ => return None,
    };
    n.checked_mul(mult)
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= SERVER_NAME_MAX
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        && !s.contains("__")
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, path, &|k| std::env::var(k).ok())
    }

    pub fn from_toml_str(
        text: &str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let base = std::path::absolute(origin)
            .ok()
            .and_then(|p| p.parent().map(Path::to_path_buf))
            .unwrap_or_default();
        let ctx = Ctx {
            text,
            path: origin.display().to_string(),
            env,
            base,
        };
        let raw: RawConfig = toml::from_str(text).map_err(|e| {
            let offset = e.span().map_or(0, |s| s.start);
            ctx.at(offset, "", e.message().trim().to_string())
        })?;
        let mut servers = BTreeMap::new();
        for (name, server) in &raw.servers {
            let s = Self::server(&ctx, name, server)?;
            servers.insert(name.clone(), s);
        }
        if servers.is_empty() {
            return Err(ctx.general(
                "no servers: add at least one [servers.NAME] table (see docs/config.md)",
            ));
        }
        if !servers.values().any(|s| s.enabled) {
            return Err(ctx.general("every server has enabled = false: enable at least one"));
        }
        let mut prefixes: BTreeMap<&str, &str> = BTreeMap::new();
        for s in servers.values().filter(|s| s.enabled) {
            if let Some(other) = prefixes.insert(&s.prefix, &s.name) {
                let span = raw.servers[&s.name].span().start;
                return Err(ctx.at(
                    span,
                    &format!("servers.{}.prefix", s.name),
                    format!("prefix {:?} is already used by server {other:?}; give each server its own prefix", s.prefix),
                ));
            }
        }
        let mut keys = BTreeMap::new();
        for (name, k) in &raw.keys {
            let at = k.span().start;
            let k = k.get_ref();
            let field = format!("keys.{name}");
            let algorithm = k.algorithm.clone().unwrap_or_else(|| "RS256".into());
            const ALGS: &[&str] = &[
                "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
                "HS256", "HS384", "HS512", "EdDSA",
            ];
            if !ALGS.contains(&algorithm.as_str()) {
                return Err(ctx.at(
                    at,
                    &format!("{field}.algorithm"),
                    format!(
                        "unknown algorithm {algorithm:?} (one of {})",
                        ALGS.join(", ")
                    ),
                ));
            }
            let material = match (&k.key, &k.key_file, &k.key_env) {
                (Some(inline), None, None) => inline.clone(),
                (None, Some(file), None) => {
                    let path = ctx.path(ctx.expand(file, &format!("{field}.key_file"))?);
                    std::fs::read_to_string(&path)
                        .map_err(|e| {
                            ctx.at(
                                file.span().start,
                                &format!("{field}.key_file"),
                                format!("cannot read {}: {e}", path.display()),
                            )
                        })?
                        .trim_end_matches('\n')
                        .to_string()
                }
                (None, None, Some(var)) => (ctx.env)(var).ok_or_else(|| {
                    ctx.at(
                        at,
                        &format!("{field}.key_env"),
                        format!("environment variable {var} is not set"),
                    )
                })?,
                _ => {
                    return Err(ctx.at(
                        at,
                        &field,
                        "set exactly one of key (inline PEM), key_file or key_env",
                    ));
                }
            };
            keys.insert(
                name.clone(),
                KeyConfig {
                    algorithm,
                    material,
                    scope: k.scope.clone(),
                },
            );
        }
        for (name, s) in &servers {
            for k in &s.signing.keys {
                if !keys.contains_key(k) {
                    let span = raw.servers[name].span().start;
                    return Err(ctx.at(
                        span,
                        &format!("servers.{name}.keys"),
                        format!("no [keys.{k}] table defines key {k:?}"),
                    ));
                }
            }
        }
        let identity = Self::identity(&ctx, &raw.identity)?;
        let l = &raw.limits;
        let limits = Limits {
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
        };
        let lg = &raw.log;
        let log = LogSettings {
            file: lg
                .file
                .as_ref()
                .map(|f| ctx.expand(f, "log.file").map(|p| ctx.path(p)))
                .transpose()?,
            level: lg.level.clone(),
            decisions: lg
                .decisions
                .as_ref()
                .map(|f| ctx.expand(f, "log.decisions").map(|p| ctx.path(p)))
                .transpose()?,
            max_arg_bytes: ctx.size(&lg.max_arg_bytes, "log.max_arg_bytes", 4096, 16, 1 << 30)?,
            secret_fields: lg.secret_fields.clone(),
            on_write_error: match lg
                .on_write_error
                .as_ref()
                .map(|m| (m, m.get_ref().as_str()))
            {
                None | Some((_, "deny")) => OnWriteError::Deny,
                Some((_, "allow")) => OnWriteError::Allow,
                Some((m, other)) => {
                    return Err(ctx.at(
                        m.span().start,
                        "log.on_write_error",
                        format!("{other:?}: use \"deny\" (default: a request whose decision record cannot be written is refused) or \"allow\" (it proceeds unrecorded)"),
                    ));
                }
            },
            rotation: crate::audit::Rotation {
                bytes: match ctx.size(
                    &lg.rotate_bytes,
                    "log.rotate_bytes",
                    256 << 20,
                    0,
                    1 << 50,
                )? {
                    n @ 1..4096 => {
                        let at = lg.rotate_bytes.as_ref().map_or(0, |v| v.span().start);
                        return Err(ctx.at(at, "log.rotate_bytes", format!("{n} bytes is too small to hold a few records: use 0 (gavel never rotates) or at least 4KiB")));
                    }
                    n => n as u64,
                },
                keep: match &lg.rotate_keep {
                    None => 1,
                    Some(k) if (1..=1000).contains(k.get_ref()) => *k.get_ref(),
                    Some(k) => {
                        return Err(ctx.at(
                            k.span().start,
                            "log.rotate_keep",
                            "must be between 1 and 1000 (rotated files kept)",
                        ));
                    }
                },
            },
        };
        let p = &raw.policy;
        let policy = PolicySettings {
            shared_bundles: p
                .shared_bundles
                .iter()
                .map(|b| {
                    ctx.expand(b, "policy.shared_bundles")
                        .and_then(|e| bundle_ref(&ctx, e, b.span().start, "policy.shared_bundles"))
                })
                .collect::<Result<_, _>>()?,
            keys: match &p.keys {
                None => vec![],
                Some(k) => {
                    for name in k.get_ref() {
                        if !keys.contains_key(name) {
                            return Err(ctx.at(
                                k.span().start,
                                "policy.keys",
                                format!("no [keys.{name}] table defines key {name:?}"),
                            ));
                        }
                    }
                    if k.get_ref().is_empty() {
                        return Err(ctx.at(
                            k.span().start,
                            "policy.keys",
                            "an empty list trusts no key: name the keys that sign the shared bundles, or remove policy.keys",
                        ));
                    }
                    k.get_ref().clone()
                }
            },
            require_bundle: p.require_bundle,
            strict_input: p.strict_input,
            eval_timeout: ctx.duration(
                &p.eval_timeout,
                "policy.eval_timeout",
                PolicySettings::default().eval_timeout,
            )?,
            approval_timeout: ctx.duration(
                &p.approval_timeout,
                "policy.approval_timeout",
                PolicySettings::default().approval_timeout,
            )?,
        };
        let metrics_listen = match &raw.metrics.listen {
            None => None,
            Some(l) => {
                let text = ctx.expand(l, "metrics.listen")?;
                Some(text.parse().map_err(|_| {
                    ctx.at(
                        l.span().start,
                        "metrics.listen",
                        format!("{text:?} is not an address to listen on; write host:port, e.g. \"127.0.0.1:9464\""),
                    )
                })?)
            }
        };
        let budget = raw
            .budget
            .as_ref()
            .map(|b| Self::budget(&ctx, b))
            .transpose()?;
        let state_path = raw
            .state
            .path
            .as_ref()
            .map(|p| ctx.expand(p, "state.path").map(|p| ctx.path(p)))
            .transpose()?;
        let auth = raw.auth.as_ref().map(|a| Self::auth(&ctx, a)).transpose()?;
        let oci = OciSettings::parse(&ctx, &raw.oci)?;
        let serve = ServeSettings::parse(&ctx, &raw.serve)?;
        // Shared bundles from a registry bind every server as its own would:
        // signed unless a server says require_signature = false — or signed
        // by the [policy] keys, when those are given.
        if let Some(r) = policy
            .shared_bundles
            .iter()
            .find(|b| b.starts_with("oci://"))
            && policy.keys.is_empty()
        {
            for (name, server) in servers.iter_mut() {
                let rs = raw.servers[name].get_ref();
                if rs.require_signature.is_none() {
                    if server.signing.keys.is_empty() {
                        return Err(ctx.at(
                            raw.servers[name].span().start,
                            &format!("servers.{name}.keys"),
                            format!("the shared bundle {r} comes from a registry and must be signed: list the keys server {name:?} trusts, or set require_signature = false"),
                        ));
                    }
                    server.signing.require_signature = true;
                }
            }
        }
        Self::fail_open_only_for_local_unsigned(&ctx, &raw, &servers, &policy)?;
        let redis_url = match raw
            .state
            .backend
            .as_ref()
            .map(|b| (b, b.get_ref().as_str()))
        {
            None | Some((_, "sqlite")) => None,
            Some((b, "redis")) => Some(
                raw.state
                    .redis_url
                    .as_ref()
                    .map(|u| ctx.expand(u, "state.redis_url"))
                    .transpose()?
                    .ok_or_else(|| {
                        ctx.at(
                            b.span().start,
                            "state.redis_url",
                            "backend \"redis\" needs redis_url = \"redis://host:port/db\"",
                        )
                    })?,
            ),
            Some((b, other)) => {
                return Err(ctx.at(
                    b.span().start,
                    "state.backend",
                    format!("{other:?}: use \"sqlite\" (embedded, default) or \"redis\""),
                ));
            }
        };
        Ok(Config {
            servers,
            identity,
            limits,
            log,
            policy,
            keys,
            metrics_listen,
            budget,
            state_path,
            redis_url,
            auth,
            oci,
            serve,
            source: Some(origin.to_path_buf()),
        })
    }

    fn server(
        ctx: &Ctx,
        name: &str,
        spanned: &Spanned<RawServer>,
    ) -> Result<ServerConfig, ConfigError> {
        let s = spanned.get_ref();
        let at = spanned.span().start;
        let f = |k: &str| format!("servers.{name}.{k}");
        if !valid_name(name) {
            return Err(ctx.at(at, &format!("servers.{name}"), format!(
                "invalid server name: use 1-{SERVER_NAME_MAX} letters, digits, '_' or '-', without \"__\" (gavel's name separator)"
            )));
        }
        let transport = match (&s.command, &s.url) {
            (Some(_), Some(url)) => return Err(ctx.at(url.span().start, &f("url"), "set either command (a local stdio server) or url (a streamable HTTP server), not both")),
            (None, None) => return Err(ctx.at(at, &format!("servers.{name}"), "missing command (a local stdio server) or url (a streamable HTTP server)")),
            (Some(cmd), None) => {
                if let Some(h) = s.headers.as_ref().and_then(|h| h.values().next()) {
                    return Err(ctx.at(h.span().start, &f("headers"), "headers apply to url servers only"));
                }
                let command = ctx.expand(cmd, &f("command"))?;
                if command.trim().is_empty() {
                    return Err(ctx.at(cmd.span().start, &f("command"), "must not be empty"));
                }
                UpstreamTransport::Stdio {
                    command,
                    args: s.args.iter().flatten().map(|a| ctx.expand(a, &f("args"))).collect::<Result<_, _>>()?,
                    env: s
                        .env
                        .iter()
                        .flatten()
                        .map(|(k, v)| Ok((k.clone(), ctx.expand(v, &f(&format!("env.{k}")))?)))
                        .collect::<Result<_, ConfigError>>()?,
                    cwd: s.cwd.as_ref().map(|c| ctx.expand(c, &f("cwd")).map(|c| ctx.path(c))).transpose()?,
                }
            }
            (None, Some(url)) => {
                for (field, present) in [("args", s.args.is_some()), ("env", s.env.is_some()), ("cwd", s.cwd.is_some())] {
                    if present {
                        return Err(ctx.at(url.span().start, &f(field), format!("{field} applies to command servers only")));
                    }
                }
                let u = ctx.expand(url, &f("url"))?;
                if !(u.starts_with("http://") || u.starts_with("https://")) {
                    return Err(ctx.at(url.span().start, &f("url"), "must start with http:// or https://"));
                }
                UpstreamTransport::Http {
                    url: u,
                    headers: s
                        .headers
                        .iter()
                        .flatten()
                        .map(|(k, v)| Ok((k.clone(), ctx.expand(v, &f(&format!("headers.{k}")))?)))
                        .collect::<Result<_, ConfigError>>()?,
                }
            }
        };
        let prefix = match &s.prefix {
            Some(p) if !valid_name(p.get_ref()) => {
                return Err(ctx.at(
                    p.span().start,
                    &f("prefix"),
                    "use 1-32 letters, digits, '_' or '-', without \"__\"",
                ));
            }
            Some(p) => p.get_ref().clone(),
            None => name.to_string(),
        };
        let tools = s
            .tools
            .as_ref()
            .map_or_else(ToolRules::default, |t| ToolRules {
                allow: t.allow.clone(),
                deny: t.deny.clone(),
            });
        for (list, globs) in [("allow", &tools.allow), ("deny", &tools.deny)] {
            for g in globs {
                if let Err(e) = globset::Glob::new(g) {
                    return Err(ctx.at(
                        at,
                        &f(&format!("tools.{list}")),
                        format!("invalid glob {g:?}: {e}"),
                    ));
                }
            }
        }
        // exclude_files drops files from the signature check: a pattern
        // that does not parse is refused here, not discovered at the first
        // verification.
        for g in s.exclude_files.iter().flatten() {
            if let Err(e) = crate::bundle::pathmatch::validate(g) {
                return Err(ctx.at(at, &f("exclude_files"), e.to_string()));
            }
        }
        let bundles = match (&s.bundle, &s.bundles) {
            (Some(b), Some(_)) => {
                return Err(ctx.at(
                    b.span().start,
                    &f("bundle"),
                    "set bundle (one) or bundles (layers), not both",
                ));
            }
            (Some(b), None) => vec![bundle_ref(
                ctx,
                ctx.expand(b, &f("bundle"))?,
                b.span().start,
                &f("bundle"),
            )?],
            (None, Some(bs)) => bs
                .get_ref()
                .iter()
                .map(|b| {
                    ctx.expand(b, &f("bundles"))
                        .and_then(|e| bundle_ref(ctx, e, b.span().start, &f("bundles")))
                })
                .collect::<Result<_, _>>()?,
            (None, None) => vec![],
        };
        // A bundle from a registry must be signed unless the config says
        // otherwise in so many words.
        let has_keys = s.keys.as_ref().is_some_and(|k| !k.is_empty());
        // A server that trusts keys never accepts an unsigned bundle.
        if has_keys && s.require_signature == Some(false) {
            return Err(ctx.at(
                spanned.span().start,
                &f("require_signature"),
                format!(
                    "require_signature = false with keys listed would accept unsigned bundles for a server that trusts signers: remove require_signature (keys require a signature), or remove servers.{name}.keys to run unsigned bundles"
                ),
            ));
        }
        let oci = bundles.iter().find(|b| b.starts_with("oci://")).cloned();
        if let Some(r) = &oci
            && !has_keys
            && s.require_signature != Some(false)
        {
            return Err(ctx.at(
                spanned.span().start,
                &f("keys"),
                format!(
                    "bundle {r} comes from a registry and must be signed: list the trusted keys (servers.{name}.keys = [\"…\"] with [keys.…] tables), or set require_signature = false to accept it unsigned"
                ),
            ));
        }
        let session_mode = match s.session_mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
            None | Some((_, "per_session")) => SessionMode::PerSession,
            Some((_, "shared")) => SessionMode::Shared,
            Some((m, other)) => {
                return Err(ctx.at(
                    m.span().start,
                    &f("session_mode"),
                    format!("{other:?}: use \"per_session\" (default: an upstream per host session) or \"shared\" (one for all)"),
                ));
            }
        };
        Ok(ServerConfig {
            name: name.to_string(),
            session_mode,
            transport,
            enabled: s.enabled.unwrap_or(true),
            startup_timeout: ctx.duration(
                &s.startup_timeout,
                &f("startup_timeout"),
                Duration::from_secs(30),
            )?,
            call_timeout: ctx.duration(
                &s.call_timeout,
                &f("call_timeout"),
                Duration::from_secs(300),
            )?,
            restart_max_backoff: ctx.duration(
                &s.restart_max_backoff,
                &f("restart_max_backoff"),
                Duration::from_secs(30),
            )?,
            prefix,
            tools,
            annotations_trusted: s.annotations_trusted.unwrap_or(false),
            bundles,
            fail_open: s.fail_open.unwrap_or(false),
            limits: match &s.limits {
                None => vec![],
                Some(l) => l
                    .get_ref()
                    .iter()
                    .map(|v| {
                        let json = serde_json::to_value(v).map_err(|e| e.to_string())?;
                        crate::state::limits::Limit::parse(&json, "servers.toml")
                    })
                    .collect::<Result<_, _>>()
                    .map_err(|e| ctx.at(l.span().start, &f("limits"), e))?,
            },
            signing: BundleSigning {
                keys: s.keys.clone().unwrap_or_default(),
                exclude_files: s.exclude_files.clone().unwrap_or_default(),
                require_signature: s.require_signature.unwrap_or(has_keys || oci.is_some()),
            },
        })
    }

    /// `fail_open = true` turns "the policy cannot decide" into allow. A
    /// bundle that failed its signature check, or a registry bundle that
    /// could not be pulled, is exactly that case — and must never let
    /// requests through. So fail_open is refused for a server whose policy
    /// includes a signed or registry bundle (its own or shared).
    fn fail_open_only_for_local_unsigned(
        ctx: &Ctx,
        raw: &RawConfig,
        servers: &BTreeMap<String, ServerConfig>,
        policy: &PolicySettings,
    ) -> Result<(), ConfigError> {
        let oci = |list: &[String]| list.iter().find(|b| b.starts_with("oci://")).cloned();
        for (name, s) in servers.iter().filter(|(_, s)| s.fail_open) {
            let why = if !s.signing.keys.is_empty() || s.signing.require_signature {
                Some(format!(
                    "servers.{name}.keys / require_signature make its bundles signed"
                ))
            } else if let Some(r) = oci(&s.bundles).or_else(|| oci(&policy.shared_bundles)) {
                Some(format!("bundle {r} comes from a registry"))
            } else if !policy.keys.is_empty() && !policy.shared_bundles.is_empty() {
                Some("[policy] keys make the shared bundles signed".to_string())
            } else {
                None
            };
            if let Some(why) = why {
                return Err(ctx.at(
                    raw.servers[name].span().start,
                    &format!("servers.{name}.fail_open"),
                    format!(
                        "fail_open = true cannot be combined with verified bundles ({why}): a bundle that fails verification or cannot be pulled would let every request through. Remove fail_open (gavel then fails closed), or keep it only for servers with local, unsigned bundles"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn auth(ctx: &Ctx, a: &Spanned<raw::RawAuth>) -> Result<AuthSettings, ConfigError> {
        let r = a.get_ref();
        let at = a.span().start;
        let algorithm = r.algorithm.clone().unwrap_or_else(|| "RS256".into());
        let key = match (&r.key_file, &r.key_env, &r.jwks_file, &r.jwks_url) {
            (Some(f), None, None, None) => {
                AuthKey::PemFile(ctx.path(ctx.expand(f, "auth.key_file")?))
            }
            (None, Some(e), None, None) => AuthKey::SecretEnv(e.clone()),
            (None, None, Some(f), None) => {
                AuthKey::JwksFile(ctx.path(ctx.expand(f, "auth.jwks_file")?))
            }
            (None, None, None, Some(u)) => {
                let url = ctx.expand(u, "auth.jwks_url")?;
                let loopback_http = ["http://127.0.0.1", "http://localhost", "http://[::1]"]
                    .iter()
                    .any(|p| url.starts_with(p));
                if !url.starts_with("https://") && !loopback_http {
                    return Err(ctx.at(
                        u.span().start,
                        "auth.jwks_url",
                        "keys must come over https:// (plain http only from a loopback address)",
                    ));
                }
                AuthKey::JwksUrl {
                    url,
                    refresh: ctx.duration(
                        &r.jwks_refresh,
                        "auth.jwks_refresh",
                        Duration::from_secs(600),
                    )?,
                }
            }
            _ => {
                return Err(ctx.at(
                    at,
                    "auth",
                    "give exactly one of key_file (PEM public key), key_env (HMAC secret in the environment), jwks_file (a JWKS document) or jwks_url (a JWKS endpoint)",
                ));
            }
        };
        // The audience is gavel's resource URL: the 401 challenge and the
        // protected-resource metadata are built from it (RFC 9728), never
        // from a request's Host header.
        let audience = ctx.expand(&r.audience, "auth.audience")?;
        let is_url = audience.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.authority().is_some()
        });
        if !is_url {
            return Err(ctx.at(
                r.audience.span().start,
                "auth.audience",
                format!("{audience:?} is not gavel's resource URL: write the URL hosts use, e.g. \"https://gavel.example/mcp\""),
            ));
        }
        Ok(AuthSettings {
            issuer: ctx.expand(&r.issuer, "auth.issuer")?,
            audience,
            algorithm,
            key,
            leeway: ctx.duration(&r.leeway, "auth.leeway", Duration::from_secs(60))?,
            user_claim: r.user_claim.clone().unwrap_or_else(|| "sub".into()),
            groups_claim: r.groups_claim.clone().unwrap_or_else(|| "groups".into()),
            agent_claim: r.agent_claim.clone().unwrap_or_else(|| "azp".into()),
            classifications_claim: r.classifications_claim.clone(),
        })
    }

    fn budget(ctx: &Ctx, b: &Spanned<raw::RawBudget>) -> Result<Budget, ConfigError> {
        let r = b.get_ref();
        let at = b.span().start;
        let per = match r.per.as_ref().map(|p| p.get_ref().as_str()) {
            None | Some("user") => BudgetPer::User,
            Some("agent") => BudgetPer::Agent,
            Some("user_agent") => BudgetPer::UserAgent,
            Some(other) => {
                return Err(ctx.at(
                    at,
                    "budget.per",
                    format!("{other:?}: use \"user\", \"agent\" or \"user_agent\""),
                ));
            }
        };
        let period = match r.period.as_ref().map(|p| p.get_ref().as_str()) {
            None => crate::state::budget::Period::Day,
            Some(p) => crate::state::budget::Period::parse(p).ok_or_else(|| {
                ctx.at(
                    at,
                    "budget.period",
                    format!("{p:?}: use \"day\" (UTC) or \"week\" (ISO, Monday 00:00 UTC)"),
                )
            })?,
        };
        if r.calls.is_none() && r.tokens.is_none() {
            return Err(ctx.at(at, "budget", "set calls and/or tokens (per period)"));
        }
        Ok(Budget {
            per,
            period,
            calls: r.calls,
            tokens: r.tokens,
        })
    }

    fn identity(ctx: &Ctx, r: &raw::RawIdentity) -> Result<Identity, ConfigError> {
        let list = |v: &[Spanned<String>], field: &str| -> Result<Vec<String>, ConfigError> {
            v.iter().map(|x| ctx.expand(x, field)).collect()
        };
        let one =
            |v: &Option<Spanned<String>>, field: &str| -> Result<Option<String>, ConfigError> {
                v.as_ref().map(|x| ctx.expand(x, field)).transpose()
            };
        Ok(Identity {
            agent: AgentIdentity {
                id: one(&r.agent.id, "identity.agent.id")?
                    .unwrap_or_else(|| AgentIdentity::default().id),
                scope: list(&r.agent.scope, "identity.agent.scope")?,
                owner_team: one(&r.agent.owner_team, "identity.agent.owner_team")?,
            },
            user: UserIdentity {
                id: one(&r.user.id, "identity.user.id")?
                    .unwrap_or_else(|| UserIdentity::default().id),
                groups: list(&r.user.groups, "identity.user.groups")?,
                data_classifications_authorized: list(
                    &r.user.data_classifications_authorized,
                    "identity.user.data_classifications_authorized",
                )?,
            },
            environment: EnvironmentIdentity {
                region: one(&r.environment.region, "identity.environment.region")?,
                is_production: r.environment.is_production,
                labels: r
                    .environment
                    .labels
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            ctx.expand(v, &format!("identity.environment.labels.{k}"))?,
                        ))
                    })
                    .collect::<Result<_, ConfigError>>()?,
            },
        })
    }

    pub fn enabled_servers(&self) -> impl Iterator<Item = (&String, &ServerConfig)> {
        self.servers.iter().filter(|(_, s)| s.enabled)
    }

    /// Config for `gavel wrap [--name N] -- cmd args…`: one stdio server,
    /// defaults everywhere else.
    pub fn single_stdio_server(
        name: &str,
        command: String,
        args: Vec<String>,
    ) -> Result<Config, ConfigError> {
        if !valid_name(name) {
            return Err(ConfigError::General {
                path: "--name".into(),
                message: format!(
                    "invalid server name {name:?}: use 1-32 letters, digits, '_' or '-', without \"__\""
                ),
            });
        }
        let server = ServerConfig {
            name: name.into(),
            transport: UpstreamTransport::Stdio {
                command,
                args,
                env: BTreeMap::new(),
                cwd: None,
            },
            enabled: true,
            startup_timeout: Duration::from_secs(30),
            call_timeout: Duration::from_secs(300),
            prefix: name.into(),
            tools: ToolRules::default(),
            annotations_trusted: false,
            bundles: vec![],
            fail_open: false,
            restart_max_backoff: Duration::from_secs(30),
            signing: BundleSigning::default(),
            limits: vec![],
            session_mode: SessionMode::PerSession,
        };
        Ok(Config {
            servers: [(name.to_string(), server)].into(),
            identity: Identity::default(),
            limits: Limits::default(),
            log: LogSettings::default(),
            policy: PolicySettings::default(),
            keys: BTreeMap::new(),
            metrics_listen: None,
            budget: None,
            state_path: None,
            redis_url: None,
            auth: None,
            oci: OciSettings::default(),
            serve: ServeSettings::default(),
            source: None,
        })
    }

    /// Effective config as TOML with secrets masked (`gavel config check`).
    pub fn render_masked(&self) -> String {
        mask::render(self)
    }
}

/// Bundle references: `oci://…` checked and normalized (so the cache key and
/// the logs use one spelling); paths resolve against the config's directory.
fn bundle_ref(ctx: &Ctx, b: String, at: usize, field: &str) -> Result<String, ConfigError> {
    if b.starts_with("oci://") {
        crate::bundle::oci::OciRef::parse(&b)
            .map(|r| r.to_string())
            .map_err(|e| ctx.at(at, field, e.to_string()))
    } else {
        Ok(ctx.path(b).display().to_string())
    }
}

#[cfg(test)]
mod tests;
