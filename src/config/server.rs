//! One `[servers.NAME]` table: transport, bundles and signing, rules, limits.

use super::ctx::*;
use super::raw::RawServer;
use super::values;
use super::*;

impl Config {
    pub(super) fn server(
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
                values::process_text(ctx, &command, cmd.span().start, &f("command"))?;
                UpstreamTransport::Stdio {
                    command,
                    args: s
                        .args
                        .iter()
                        .flatten()
                        .map(|a| {
                            let arg = ctx.expand(a, &f("args"))?;
                            values::process_text(ctx, &arg, a.span().start, &f("args")).map(|()| arg)
                        })
                        .collect::<Result<_, _>>()?,
                    env: s
                        .env
                        .iter()
                        .flatten()
                        .map(|(k, v)| {
                            let field = f(&format!("env.{k}"));
                            values::env_name(ctx, k, v.span().start, &field)?;
                            let value = ctx.expand(v, &field)?;
                            values::process_text(ctx, &value, v.span().start, &field)?;
                            Ok((k.clone(), value))
                        })
                        .collect::<Result<_, ConfigError>>()?,
                    cwd: s
                        .cwd
                        .as_ref()
                        .map(|c| {
                            let dir = ctx.expand(c, &f("cwd"))?;
                            values::process_text(ctx, &dir, c.span().start, &f("cwd"))?;
                            Ok::<_, ConfigError>(ctx.path(dir))
                        })
                        .transpose()?,
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
                values::upstream_url(ctx, &u, url.span().start, &f("url"))?;
                let headers: BTreeMap<String, String> = s
                    .headers
                    .iter()
                    .flatten()
                    .map(|(k, v)| Ok((k.clone(), ctx.expand(v, &f(&format!("headers.{k}")))?)))
                    .collect::<Result<_, ConfigError>>()?;
                if let Some(raw) = &s.headers {
                    values::headers(ctx, raw, &headers, &f("headers"))?;
                }
                UpstreamTransport::Http { url: u, headers }
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
        let path_root = match &s.path_root {
            None => None,
            Some(p) => {
                let dir = ctx.expand(p, &f("path_root"))?;
                if dir.trim().is_empty() {
                    return Err(ctx.at(p.span().start, &f("path_root"), "must not be empty: name the directory the server resolves relative paths against (server-filesystem: its first allowed directory), or leave path_root out"));
                }
                Some(ctx.path(dir))
            }
        };
        let bundle_roles = Self::bundle_roles(
            ctx,
            s.bundle_roles.as_ref(),
            &bundles,
            &format!("servers.{name}"),
        )?;
        Ok(ServerConfig {
            name: name.to_string(),
            session_mode,
            path_root,
            bundle_roles,
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

    /// `<table>.bundle_roles."REF"` for the bundles `bundles` of `table`
    /// (`servers.NAME` or `policy`): each key one of those bundles (written
    /// as in the list: relative paths resolve the same way), a known layer,
    /// roots as `.manifest` writes them.
    pub(super) fn bundle_roles(
        ctx: &Ctx,
        raw: Option<&BTreeMap<String, Spanned<super::raw::RawBundleRole>>>,
        bundles: &[String],
        table: &str,
    ) -> Result<BTreeMap<String, BundleRole>, ConfigError> {
        let mut out = BTreeMap::new();
        for (key, role) in raw.into_iter().flatten() {
            let at = role.span().start;
            let field = format!("{table}.bundle_roles.{key:?}");
            let expanded = super::expand::expand(key, ctx.env)
                .map_err(|var| ctx.at(at, &field, format!("cannot expand {var} in the key")))?;
            let reference = bundle_ref(ctx, expanded, at, &field)?;
            if !bundles.contains(&reference) {
                return Err(ctx.at(
                    at,
                    &field,
                    format!(
                        "{reference} is not one of the bundles of [{table}]; name a bundle exactly as {} lists it",
                        if table == "policy" { "policy.shared_bundles" } else { "its bundle(s)" }
                    ),
                ));
            }
            let r = role.get_ref();
            if let Some(l) = &r.layer
                && crate::decision::layers::Layer::parse(l).is_none()
            {
                return Err(ctx.at(
                    at,
                    &format!("{field}.layer"),
                    format!("unknown layer {l:?}: one of identity, resource, workflow, compliance, override"),
                ));
            }
            let roots = match &r.roots {
                Some(list) if list.is_empty() => {
                    return Err(ctx.at(
                        at,
                        &format!("{field}.roots"),
                        "an empty list permits no root: name the data paths the bundle may own, e.g. [\"mcp/fs\"]",
                    ));
                }
                Some(list) => Some(
                    list.iter()
                        .map(|r| r.trim_matches('/').to_string())
                        .collect(),
                ),
                None => None,
            };
            out.insert(
                reference,
                BundleRole {
                    layer: r.layer.clone(),
                    roots,
                    allow_rollback: r.allow_rollback.unwrap_or(false),
                },
            );
        }
        Ok(out)
    }

    /// `fail_open = true` turns "the policy cannot decide" into allow. A
    /// bundle that failed its signature check, or a registry bundle that
    /// could not be pulled, is exactly that case — and must never let
    /// requests through. So fail_open is refused for a server whose policy
    /// includes a signed or registry bundle (its own or shared).
    pub(super) fn fail_open_only_for_local_unsigned(
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
}
