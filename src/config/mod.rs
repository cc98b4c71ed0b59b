//! `servers.toml`: what gavel fronts and how. Parsed strictly (unknown keys are
//! errors everywhere), expanded (`${ENV}` in the documented fields), validated,
//! with errors that name the file, line and field and say what to do.
//! Reference: docs/config.md.

mod ctx;
mod expand;
pub mod import;
mod keypath;
pub mod mask;
mod model;
pub mod oci;
mod raw;
mod sections;
pub mod serve;
mod server;
mod values;

pub use model::*;
pub use oci::{OciSettings, RegistrySettings};
pub use sections::{check_hmac_secret, hmac_min_bytes, key_url_allowed};
pub use serve::ServeSettings;

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
        let raw: RawConfig = toml::from_str(text).map_err(|e| typed_parse_error(&ctx, &e))?;
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
            // Every source (inline, file, environment) ends here.
            if let Err(why) = check_hmac_secret(&algorithm, material.as_bytes()) {
                let source = match (&k.key, &k.key_file) {
                    (Some(_), _) => "key",
                    (_, Some(_)) => "key_file",
                    _ => "key_env",
                };
                return Err(ctx.at(at, &format!("{field}.{source}"), why));
            }
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
            level: values::log_level(&ctx, &lg.level)?,
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
            bundle_roles: BTreeMap::new(),
        };
        let policy = PolicySettings {
            bundle_roles: Self::bundle_roles(
                &ctx,
                Some(&p.bundle_roles),
                &policy.shared_bundles,
                "policy",
            )?,
            ..policy
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
                    .map(|u| {
                        let url = ctx.expand(u, "state.redis_url")?;
                        values::redis_url(&ctx, &url, u.span().start).map(|()| url)
                    })
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
            path_root: None,
            bundle_roles: BTreeMap::new(),
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

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_fields;
