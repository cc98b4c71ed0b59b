//! The file as written: every table `deny_unknown_fields` (a misspelt security
//! key must be an error, never ignored), values still unexpanded, with spans
//! so that errors can name the line.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    #[serde(default)]
    pub servers: BTreeMap<String, Spanned<RawServer>>,
    #[serde(default)]
    pub identity: RawIdentity,
    #[serde(default)]
    pub limits: RawLimits,
    #[serde(default)]
    pub log: RawLog,
    #[serde(default)]
    pub policy: RawPolicy,
    #[serde(default)]
    pub keys: BTreeMap<String, Spanned<RawKey>>,
    #[serde(default)]
    pub metrics: RawMetrics,
    pub budget: Option<Spanned<RawBudget>>,
    pub auth: Option<Spanned<RawAuth>>,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub oci: RawOci,
    #[serde(default)]
    pub serve: super::serve::RawServe,
    #[serde(default)]
    pub telemetry: super::telemetry::RawTelemetry,
    #[serde(default)]
    pub agent_tools: super::agent_tools::RawAgentTools,
    /// `[personas.NAME]`: agent personas and their bundles.
    #[serde(default)]
    pub personas: BTreeMap<String, Spanned<super::persona::RawPersona>>,
}

/// `[oci]`: how bundles are pulled from registries.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawOci {
    pub cache_dir: Option<Spanned<String>>,
    pub min_delay: Option<Spanned<String>>,
    pub max_delay: Option<Spanned<String>>,
    pub pull_timeout: Option<Spanned<String>>,
    pub max_bundle_bytes: Option<Spanned<RawSize>>,
    #[serde(default)]
    pub registries: BTreeMap<String, Spanned<RawRegistry>>,
}

/// `[oci.registries."host:port"]`.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawRegistry {
    pub insecure: Option<bool>,
    pub username: Option<Spanned<String>>,
    pub password_env: Option<String>,
    pub ca_file: Option<Spanned<String>>,
}

/// `[budget]`: calls and tokens per period, across sessions and restarts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBudget {
    pub per: Option<Spanned<String>>,
    pub period: Option<Spanned<String>>,
    /// Where days begin, e.g. `"+05:30"` (default UTC).
    pub utc_offset: Option<Spanned<String>>,
    /// The first day of a budget week (default `"monday"`, ISO).
    pub week_starts: Option<Spanned<String>>,
    pub calls: Option<u64>,
    pub tokens: Option<u64>,
}

/// `[auth]`: bearer-token identity for `gavel serve`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    pub issuer: Spanned<String>,
    pub audience: Spanned<String>,
    pub algorithm: Option<Spanned<String>>,
    pub key_file: Option<Spanned<String>>,
    pub key_env: Option<String>,
    pub jwks_file: Option<Spanned<String>>,
    pub jwks_url: Option<Spanned<String>>,
    pub jwks_refresh: Option<Spanned<String>>,
    pub leeway: Option<Spanned<String>>,
    pub user_claim: Option<String>,
    pub groups_claim: Option<String>,
    pub agent_claim: Option<String>,
    pub classifications_claim: Option<String>,
}

/// `[state]`: where limits and budgets are kept.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub path: Option<Spanned<String>>,
    pub backend: Option<Spanned<String>>,
    pub redis_url: Option<Spanned<String>>,
}

/// `[metrics]`: Prometheus exposition.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    pub listen: Option<Spanned<String>>,
}

/// `[keys.NAME]`: a bundle-signing verification key.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawKey {
    pub algorithm: Option<String>,
    pub key: Option<String>,
    pub key_file: Option<Spanned<String>>,
    pub key_env: Option<String>,
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub command: Option<Spanned<String>>,
    pub args: Option<Vec<Spanned<String>>>,
    pub env: Option<BTreeMap<String, Spanned<String>>>,
    pub cwd: Option<Spanned<String>>,
    pub url: Option<Spanned<String>>,
    pub headers: Option<BTreeMap<String, Spanned<String>>>,
    pub enabled: Option<bool>,
    pub startup_timeout: Option<Spanned<String>>,
    pub call_timeout: Option<Spanned<String>>,
    pub restart_max_backoff: Option<Spanned<String>>,
    pub prefix: Option<Spanned<String>>,
    pub tools: Option<RawTools>,
    pub annotations_trusted: Option<bool>,
    pub bundle: Option<Spanned<String>>,
    pub bundles: Option<Spanned<Vec<Spanned<String>>>>,
    /// Bundles evaluated beside the live ones, never deciding.
    pub shadow_bundles: Option<Vec<Spanned<String>>>,
    pub fail_open: Option<bool>,
    /// Names of `[keys.*]` this server trusts for its bundles.
    pub keys: Option<Vec<String>>,
    pub exclude_files: Option<Vec<String>>,
    pub require_signature: Option<bool>,
    /// `[[servers.NAME.limits]]`: rate limits added to the bundle's.
    pub limits: Option<Spanned<Vec<toml::Value>>>,
    pub session_mode: Option<Spanned<String>>,
    /// `"auto"`, `"legacy"` or `"modern"`: the MCP era spoken to the upstream.
    pub era: Option<Spanned<String>>,
    /// `"refuse"` or `"forward"`: a call to a tool the server does not list.
    pub unlisted_tools: Option<Spanned<String>>,
    /// The directory the upstream resolves relative path arguments against.
    pub path_root: Option<Spanned<String>>,
    /// `[servers.NAME.bundle_roles."REF"]`: what each bundle is for.
    pub bundle_roles: Option<BTreeMap<String, Spanned<RawBundleRole>>>,
}

/// `bundle_roles."REF"`: the operator's word on one bundle — the layer it
/// plays, the roots it may own, whether an older revision may replace a
/// newer one.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawBundleRole {
    pub layer: Option<String>,
    pub roots: Option<Vec<String>>,
    pub allow_rollback: Option<bool>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawTools {
    #[serde(default)]
    pub allow: Vec<String>,
    #[serde(default)]
    pub deny: Vec<String>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    #[serde(default)]
    pub agent: RawAgent,
    #[serde(default)]
    pub user: RawUser,
    #[serde(default)]
    pub environment: RawEnvironment,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawAgent {
    pub id: Option<Spanned<String>>,
    #[serde(default)]
    pub scope: Vec<Spanned<String>>,
    pub owner_team: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawUser {
    pub id: Option<Spanned<String>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub data_classifications_authorized: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawEnvironment {
    pub region: Option<Spanned<String>>,
    #[serde(default)]
    pub is_production: bool,
    #[serde(default)]
    pub labels: BTreeMap<String, Spanned<String>>,
}

/// A size: a number of bytes or a string with a unit ("16MiB", "512KiB", "1MB").
#[derive(Debug, Deserialize, Clone)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    pub max_message_bytes: Option<Spanned<RawSize>>,
    pub max_stderr_line_bytes: Option<Spanned<RawSize>>,
    pub stderr_tail_lines: Option<usize>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawLog {
    pub file: Option<Spanned<String>>,
    pub level: Option<Spanned<String>>,
    pub decisions: Option<Spanned<String>>,
    pub max_arg_bytes: Option<Spanned<RawSize>>,
    #[serde(default)]
    pub secret_fields: Vec<String>,
    pub on_write_error: Option<Spanned<String>>,
    pub rotate_bytes: Option<Spanned<RawSize>>,
    pub rotate_keep: Option<Spanned<u32>>,
    /// `[log.ship]`: shipping to an OPA decision-log service.
    pub ship: Option<RawShip>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawShip {
    pub url: Spanned<String>,
    pub resource: Option<Spanned<String>>,
    #[serde(default)]
    pub headers: BTreeMap<String, Spanned<String>>,
    pub upload_size_limit_bytes: Option<Spanned<RawSize>>,
    pub min_delay: Option<Spanned<String>>,
    pub max_delay: Option<Spanned<String>>,
    pub timeout: Option<Spanned<String>>,
    pub max_spool_bytes: Option<Spanned<RawSize>>,
    pub at_bound: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPolicy {
    pub approval_timeout: Option<Spanned<String>>,
    /// Key names trusted to sign `shared_bundles`.
    pub keys: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub shared_bundles: Vec<Spanned<String>>,
    /// Shadow bundles for every server (beside `shared_bundles`).
    #[serde(default)]
    pub shared_shadow_bundles: Vec<Spanned<String>>,
    #[serde(default)]
    pub require_bundle: bool,
    #[serde(default)]
    pub strict_input: bool,
    pub eval_timeout: Option<Spanned<String>>,
    /// `[policy.bundle_roles."REF"]`, for `shared_bundles`.
    #[serde(default)]
    pub bundle_roles: BTreeMap<String, Spanned<RawBundleRole>>,
    /// What an agent of no persona gets (`deny` or `base`).
    pub unmatched_persona: Option<Spanned<String>>,
}
