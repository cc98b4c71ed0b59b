//! The validated configuration: what the rest of gavel reads. Built only by
//! `Config::from_toml_str` (`config/mod.rs`, one step per table, each in
//! the file named after it) and `Config::single_stdio_server` (`gavel
//! wrap`), so every value here has been checked.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::{OciSettings, ServeSettings};

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
    /// `[telemetry]`: OpenTelemetry spans over OTLP/HTTP (None: off).
    pub telemetry: Option<crate::telemetry::Settings>,
    /// `[agent_tools]`: gavel's own tools beside the upstreams' (or alone,
    /// `gavel policy-server`).
    pub agent_tools: super::AgentToolsMode,
    /// `[personas.NAME]` and `[policy] unmatched_persona` (config/persona.rs).
    pub personas: super::Personas,
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
    /// `servers.NAME.shadow_bundles`: evaluated beside the live policy on
    /// every request, never deciding (`decision::shadow`).
    pub shadow_bundles: Vec<String>,
    pub fail_open: bool,
    pub restart_max_backoff: Duration,
    /// Verification of the server's bundles (`keys`, `exclude_files`,
    /// `require_signature`).
    pub signing: BundleSigning,
    /// Rate limits from `[[servers.NAME.limits]]` (added to the bundles').
    pub limits: Vec<crate::state::limits::Limit>,
    /// One upstream per host session (default), or one shared by all.
    pub session_mode: SessionMode,
    /// `servers.NAME.path_root`: the directory the upstream resolves relative
    /// path arguments against (absolute); gavel canonicalizes path arguments
    /// against it (decision::paths).
    pub path_root: Option<PathBuf>,
    /// `servers.NAME.bundle_roles`, by bundle reference (as in `bundles`).
    pub bundle_roles: BTreeMap<String, BundleRole>,
    /// `servers.NAME.era`: which MCP era gavel speaks to the upstream.
    pub era: Era,
    /// `servers.NAME.unlisted_tools = "forward"`: a call to a tool this
    /// server does not list is routed to it (and decided) instead of
    /// answered "Unknown tool" (`router::unlisted`).
    pub forward_unlisted: bool,
}

/// What the operator says one bundle is for (`bundle_roles."REF"`). A
/// bundle's own `.manifest` may only agree: a registry bundle is someone
/// else's publication, and a signature says who published it, not what it
/// may govern.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BundleRole {
    /// The layer it plays (`identity`, `resource`, …). Unset: a registry
    /// bundle plays `resource`; a local one what its manifest says.
    pub layer: Option<String>,
    /// The data paths its roots must lie within. Unset: a server's registry
    /// bundle within `mcp/<server>`, a shared one within `gavel`.
    pub roots: Option<Vec<String>>,
    /// Let a revision older than the active one replace it (a tag moved
    /// back on purpose); a digest pin never needs this.
    pub allow_rollback: bool,
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

/// `servers.NAME.era`: how gavel opens a connection to the upstream.
/// "Legacy" is the `initialize` era (MCP 2024-11-05 … 2025-11-25), "modern"
/// MCP 2026-07-28 (`server/discover`, no handshake).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Era {
    /// `initialize` first — what every pre-2026 and every dual-era server
    /// accepts, so no existing setup changes and no probe is ever sent —
    /// and `server/discover` when the server refuses `initialize` as
    /// 2026-07-28-only or exits on it. The era found is remembered
    /// (`upstream::era`).
    #[default]
    Auto,
    /// `initialize` only.
    Legacy,
    /// `server/discover` and per-request `_meta` only.
    Modern,
}

impl Era {
    pub fn as_str(self) -> &'static str {
        match self {
            Era::Auto => "auto",
            Era::Legacy => "legacy",
            Era::Modern => "modern",
        }
    }
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
    /// Where the periods begin (UTC days, ISO weeks by default).
    pub calendar: crate::state::budget::Calendar,
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
    /// `[log.ship]`: shipping the decision log to a service (none: local only).
    pub ship: Option<crate::audit::ship::ShipSettings>,
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
            ship: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct PolicySettings {
    pub shared_bundles: Vec<String>,
    /// `[policy] shared_shadow_bundles`: every server's shadow layers.
    pub shared_shadow_bundles: Vec<String>,
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
    /// `[policy.bundle_roles]`, for the shared bundles.
    pub bundle_roles: BTreeMap<String, BundleRole>,
}

impl Default for PolicySettings {
    fn default() -> Self {
        Self {
            shared_bundles: vec![],
            shared_shadow_bundles: vec![],
            keys: vec![],
            require_bundle: false,
            strict_input: false,
            eval_timeout: Duration::from_millis(100),
            approval_timeout: Duration::from_secs(120),
            bundle_roles: BTreeMap::new(),
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
