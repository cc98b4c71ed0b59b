//! `servers.toml`: what gavel fronts and how. Parsed strictly (unknown keys are
//! errors everywhere), expanded (`${ENV}` in the documented fields), validated,
//! with errors that name the file, line and field and say what to do.
//! Reference: docs/config.md.

pub mod agent_tools;
mod auth;
mod budget;
mod ctx;
mod expand;
pub mod hosts;
mod identity;
mod keypath;
mod keys;
mod layer;
mod limits;
mod log;
mod metrics;
mod model;
pub mod oci;
mod persona;
mod policy;
mod raw;
pub mod render;
pub mod serve;
mod server;
mod ship;
mod state;
mod telemetry;
mod values;

pub use agent_tools::AgentToolsMode;
pub use auth::key_url_allowed;
/// The expander, for `cli::import`'s tests (an imported string must mean in
/// gavel what it meant in its host).
#[cfg(test)]
pub(crate) use expand::expand as expand_for_tests;
pub use keys::{check_hmac_secret, hmac_min_bytes};
pub use layer::Layer;
pub use model::*;
pub use oci::{OciSettings, RegistrySettings};
pub use persona::{Persona, Personas, UnmatchedPersona, glob_match};
pub use serve::ServeSettings;

/// The policy evaluation limit of unit tests that decide with Rego and are
/// not about the limit. gavel's default (`[policy] eval_timeout`, 100 ms) is
/// wall-clock time: with every test of the crate running at once on a
/// loaded machine, a trivial evaluation can be descheduled past it, and the
/// decision becomes `policy_timeout` — a failure of nothing under test.
/// Tests of the limit set theirs, small, with a policy whose work is
/// unbounded, so it fires whatever the load.
#[cfg(test)]
pub(crate) const TEST_EVAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// `toml` parsed as the config at `path` (no environment), with
/// [`TEST_EVAL_TIMEOUT`] when it names no `eval_timeout` of its own.
#[cfg(test)]
pub(crate) fn test_config(toml: &str, path: &std::path::Path) -> Config {
    let mut config = Config::from_toml_str(toml, path, &|_| None).unwrap();
    if !toml.contains("eval_timeout") {
        config.policy.eval_timeout = TEST_EVAL_TIMEOUT;
    }
    config
}

use ctx::*;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use toml::Spanned;

use raw::RawConfig;

/// An error of the typed parse (a wrong type, an unknown or missing key),
/// naming the dotted field as gavel's own checks do: toml's message says
/// what was expected but not where in the tree.
fn typed_parse_error(ctx: &Ctx, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map_or(0, |s| s.start);
    let field = e
        .span()
        .and_then(|_| keypath::field_at(ctx.text, offset))
        .unwrap_or_default();
    let message = e.message().trim();
    let message = if message.contains("untagged enum RawSize") {
        "invalid type: expected a size (a number of bytes, or a string with a unit: \"512KiB\", \"16MiB\", \"1MB\")"
    } else {
        message
    };
    ctx.at(offset, &field, message.to_string())
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml_str(&text, path, &|k| std::env::var(k).ok())
    }

    /// Parses `text` (read from `origin`; relative paths resolve against its
    /// directory), one named step per table. The steps run in this order
    /// because a config with several mistakes reports the first one met, and
    /// the tests pin which one that is: servers, keys, identity, limits, log,
    /// policy, metrics, budget, state, auth, oci, serve, telemetry, then the rules that
    /// span tables (registry bundles signed, fail_open), the personas and the state backend.
    pub fn from_toml_str(
        text: &str,
        origin: &Path,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let ctx = Ctx::new(text, origin, env);
        let raw: RawConfig = toml::from_str(text).map_err(|e| typed_parse_error(&ctx, &e))?;
        let mut servers = Self::servers(&ctx, &raw)?;
        let keys = keys::parse(&ctx, &raw.keys)?;
        keys::check_server_keys(&ctx, &raw, &servers, &keys)?;
        let identity = Self::identity(&ctx, &raw.identity)?;
        let limits = Limits::parse(&ctx, &raw.limits)?;
        let log = LogSettings::parse(&ctx, &raw.log)?;
        let policy = PolicySettings::parse(&ctx, &raw.policy, &keys)?;
        let metrics_listen = metrics::listen(&ctx, &raw.metrics)?;
        let budget = raw
            .budget
            .as_ref()
            .map(|b| Self::budget(&ctx, b))
            .transpose()?;
        let state_path = state::path(&ctx, &raw.state)?;
        let auth = raw.auth.as_ref().map(|a| Self::auth(&ctx, a)).transpose()?;
        let oci = OciSettings::parse(&ctx, &raw.oci)?;
        let serve = ServeSettings::parse(&ctx, &raw.serve)?;
        let telemetry = telemetry::parse(&ctx, &raw.telemetry)?;
        let agent_tools = agent_tools::parse(&ctx, &raw.agent_tools, &servers)?;
        policy::sign_shared_registry_bundles(&ctx, &raw, &mut servers, &policy)?;
        Self::fail_open_only_for_local_unsigned(&ctx, &raw, &servers, &policy)?;
        let personas = Self::personas(&ctx, &raw, &mut servers, &policy.shared_bundles)?;
        let redis_url = state::redis_url(&ctx, &raw.state)?;
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
            telemetry,
            agent_tools,
            personas,
            source: Some(origin.to_path_buf()),
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
            shadow_bundles: vec![],
            fail_open: false,
            restart_max_backoff: Duration::from_secs(30),
            signing: BundleSigning::default(),
            limits: vec![],
            session_mode: SessionMode::PerSession,
            path_root: None,
            bundle_roles: BTreeMap::new(),
            era: Era::Auto,
            forward_unlisted: false,
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
            telemetry: None,
            agent_tools: AgentToolsMode::Off,
            personas: Personas::default(),
            source: None,
        })
    }

    /// Effective config as TOML with secrets masked (`gavel config check`).
    pub fn render_masked(&self) -> String {
        render::render(self)
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fields;
