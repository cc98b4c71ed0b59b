//! The `[servers.NAME]` tables: transport, bundles and signing, rules,
//! limits; and the rules across servers (prefixes, fail_open).

use super::ctx::*;
use super::raw::RawServer;
use super::values;
use super::*;

impl Config {
    /// Every `[servers.NAME]` table, then the rules across them: at least
    /// one server, at least one enabled, and no two enabled servers with the
    /// same prefix.
    pub(super) fn servers(
        ctx: &Ctx,
        raw: &RawConfig,
    ) -> Result<BTreeMap<String, ServerConfig>, ConfigError> {
        let mut servers = BTreeMap::new();
        for (name, server) in &raw.servers {
            let s = Self::server(ctx, name, server)?;
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
        Ok(servers)
    }

    /// One `[servers.NAME]` table, checked in the order its parts are
    /// listed here (the first mistake met is the one reported).
    pub(super) fn server(
        ctx: &Ctx,
        name: &str,
        spanned: &Spanned<RawServer>,
    ) -> Result<ServerConfig, ConfigError> {
        let s = spanned.get_ref();
        let at = spanned.span().start;
        let f = |k: &str| field(name, k);
        if !valid_name(name) {
            return Err(ctx.at(at, &format!("servers.{name}"), format!(
                "invalid server name: use 1-{SERVER_NAME_MAX} letters, digits, '_' or '-', without \"__\" (gavel's name separator)"
            )));
        }
        let transport = transport(ctx, name, s, at)?;
        let prefix = prefix(ctx, name, s)?;
        let tools = tool_rules(ctx, name, s, at)?;
        // exclude_files drops files from the signature check: a pattern
        // that does not parse is refused here, not discovered at the first
        // verification.
        for g in s.exclude_files.iter().flatten() {
            if let Err(e) = crate::bundle::pathmatch::validate(g) {
                return Err(ctx.at(at, &f("exclude_files"), e.to_string()));
            }
        }
        let bundles = bundles(ctx, name, s)?;
        let shadow_bundles = shadow_bundles(ctx, name, s, &bundles)?;
        let signing = signing(ctx, name, s, at, &bundles)?;
        let session_mode = session_mode(ctx, name, s)?;
        let era = era(ctx, name, s)?;
        let forward_unlisted = unlisted_tools(ctx, name, s)?;
        let path_root = path_root(ctx, name, s)?;
        let all: Vec<String> = bundles.iter().chain(&shadow_bundles).cloned().collect();
        let bundle_roles = Self::bundle_roles(
            ctx,
            s.bundle_roles.as_ref(),
            &all,
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
            shadow_bundles,
            fail_open: s.fail_open.unwrap_or(false),
            limits: limits(ctx, name, s)?,
            signing,
            era,
            forward_unlisted,
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
                && Layer::parse(l).is_none()
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

/// `servers.NAME.KEY`, the dotted field errors name.
fn field(name: &str, k: &str) -> String {
    format!("servers.{name}.{k}")
}

/// `command` (a local stdio server) or `url` (a streamable HTTP server),
/// never both, with the keys that belong to that kind only.
fn transport(
    ctx: &Ctx,
    name: &str,
    s: &RawServer,
    at: usize,
) -> Result<UpstreamTransport, ConfigError> {
    let f = |k: &str| field(name, k);
    match (&s.command, &s.url) {
        (Some(_), Some(url)) => Err(ctx.at(
            url.span().start,
            &f("url"),
            "set either command (a local stdio server) or url (a streamable HTTP server), not both",
        )),
        (None, None) => Err(ctx.at(
            at,
            &format!("servers.{name}"),
            "missing command (a local stdio server) or url (a streamable HTTP server)",
        )),
        (Some(cmd), None) => stdio_transport(ctx, name, s, cmd),
        (None, Some(url)) => http_transport(ctx, name, s, url),
    }
}

/// `command`, `args`, `env` and `cwd`: each expanded and checked as text a
/// process may be given.
fn stdio_transport(
    ctx: &Ctx,
    name: &str,
    s: &RawServer,
    cmd: &Spanned<String>,
) -> Result<UpstreamTransport, ConfigError> {
    let f = |k: &str| field(name, k);
    if let Some(h) = s.headers.as_ref().and_then(|h| h.values().next()) {
        return Err(ctx.at(
            h.span().start,
            &f("headers"),
            "headers apply to url servers only",
        ));
    }
    let command = ctx.expand(cmd, &f("command"))?;
    if command.trim().is_empty() {
        return Err(ctx.at(cmd.span().start, &f("command"), "must not be empty"));
    }
    values::process_text(ctx, &command, cmd.span().start, &f("command"))?;
    Ok(UpstreamTransport::Stdio {
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
    })
}

/// `url` (http or https) and its `headers`.
fn http_transport(
    ctx: &Ctx,
    name: &str,
    s: &RawServer,
    url: &Spanned<String>,
) -> Result<UpstreamTransport, ConfigError> {
    let f = |k: &str| field(name, k);
    for (field, present) in [
        ("args", s.args.is_some()),
        ("env", s.env.is_some()),
        ("cwd", s.cwd.is_some()),
    ] {
        if present {
            return Err(ctx.at(
                url.span().start,
                &f(field),
                format!("{field} applies to command servers only"),
            ));
        }
    }
    let u = ctx.expand(url, &f("url"))?;
    if !(u.starts_with("http://") || u.starts_with("https://")) {
        return Err(ctx.at(
            url.span().start,
            &f("url"),
            "must start with http:// or https://",
        ));
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
    Ok(UpstreamTransport::Http { url: u, headers })
}

/// `prefix`: the server's name unless given; a valid name either way.
fn prefix(ctx: &Ctx, name: &str, s: &RawServer) -> Result<String, ConfigError> {
    match &s.prefix {
        Some(p) if !valid_name(p.get_ref()) => Err(ctx.at(
            p.span().start,
            &field(name, "prefix"),
            "use 1-32 letters, digits, '_' or '-', without \"__\"",
        )),
        Some(p) => Ok(p.get_ref().clone()),
        None => Ok(name.to_string()),
    }
}

/// `tools.allow` / `tools.deny`: globs that must parse.
fn tool_rules(ctx: &Ctx, name: &str, s: &RawServer, at: usize) -> Result<ToolRules, ConfigError> {
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
                    &field(name, &format!("tools.{list}")),
                    format!("invalid glob {g:?}: {e}"),
                ));
            }
        }
    }
    Ok(tools)
}

/// `bundle` (one) or `bundles` (layers), expanded and normalized.
fn bundles(ctx: &Ctx, name: &str, s: &RawServer) -> Result<Vec<String>, ConfigError> {
    let f = |k: &str| field(name, k);
    match (&s.bundle, &s.bundles) {
        (Some(b), Some(_)) => Err(ctx.at(
            b.span().start,
            &f("bundle"),
            "set bundle (one) or bundles (layers), not both",
        )),
        (Some(b), None) => Ok(vec![bundle_ref(
            ctx,
            ctx.expand(b, &f("bundle"))?,
            b.span().start,
            &f("bundle"),
        )?]),
        (None, Some(bs)) => bs
            .get_ref()
            .iter()
            .map(|b| {
                ctx.expand(b, &f("bundles"))
                    .and_then(|e| bundle_ref(ctx, e, b.span().start, &f("bundles")))
            })
            .collect::<Result<_, _>>(),
        (None, None) => Ok(vec![]),
    }
}

/// `shadow_bundles`: expanded and normalized like `bundles`; each must not
/// be a live bundle too, and there must be a live policy to compare with.
fn shadow_bundles(
    ctx: &Ctx,
    name: &str,
    s: &RawServer,
    live: &[String],
) -> Result<Vec<String>, ConfigError> {
    let f = field(name, "shadow_bundles");
    let mut out = Vec::new();
    for b in s.shadow_bundles.iter().flatten() {
        let at = b.span().start;
        let r = bundle_ref(ctx, ctx.expand(b, &f)?, at, &f)?;
        if live.is_empty() {
            return Err(ctx.at(at, &f, format!("server {name:?} has no live bundle (bundle or bundles) for a shadow to run beside: set its bundles, or move {r} there")));
        }
        if live.contains(&r) {
            return Err(ctx.at(at, &f, format!("{r} is also a live bundle of server {name:?}: a shadow bundle runs beside the live ones; remove it from one of the two")));
        }
        out.push(r);
    }
    Ok(out)
}

/// `keys`, `exclude_files` and `require_signature`. A bundle from a
/// registry must be signed unless the config says otherwise in so many
/// words, and a server that trusts keys never accepts an unsigned bundle.
fn signing(
    ctx: &Ctx,
    name: &str,
    s: &RawServer,
    at: usize,
    bundles: &[String],
) -> Result<BundleSigning, ConfigError> {
    let has_keys = s.keys.as_ref().is_some_and(|k| !k.is_empty());
    if has_keys && s.require_signature == Some(false) {
        return Err(ctx.at(
            at,
            &field(name, "require_signature"),
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
            at,
            &field(name, "keys"),
            format!(
                "bundle {r} comes from a registry and must be signed: list the trusted keys (servers.{name}.keys = [\"…\"] with [keys.…] tables), or set require_signature = false to accept it unsigned"
            ),
        ));
    }
    Ok(BundleSigning {
        keys: s.keys.clone().unwrap_or_default(),
        exclude_files: s.exclude_files.clone().unwrap_or_default(),
        require_signature: s.require_signature.unwrap_or(has_keys || oci.is_some()),
    })
}

/// `session_mode`: an upstream per host session (default) or one shared.
fn session_mode(ctx: &Ctx, name: &str, s: &RawServer) -> Result<SessionMode, ConfigError> {
    match s.session_mode.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "per_session")) => Ok(SessionMode::PerSession),
        Some((_, "shared")) => Ok(SessionMode::Shared),
        Some((m, other)) => Err(ctx.at(
            m.span().start,
            &field(name, "session_mode"),
            format!("{other:?}: use \"per_session\" (default: an upstream per host session) or \"shared\" (one for all)"),
        )),
    }
}

/// `era`: how gavel opens the connection (`Era`); default `auto`.
fn era(ctx: &Ctx, name: &str, s: &RawServer) -> Result<Era, ConfigError> {
    match s.era.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "auto")) => Ok(Era::Auto),
        Some((_, "legacy")) => Ok(Era::Legacy),
        Some((_, "modern")) => Ok(Era::Modern),
        Some((m, other)) => Err(ctx.at(
            m.span().start,
            &field(name, "era"),
            format!("{other:?}: use \"auto\" (default: initialize, and server/discover for a server that refuses it as MCP 2026-07-28-only), \"legacy\" (initialize only) or \"modern\" (server/discover only)"),
        )),
    }
}

/// `unlisted_tools`: whether a call to a tool the server does not list is
/// routed to it; default `refuse` (gavel knows nothing of such a tool — no
/// schema, annotations or digest — so forwarding is the operator's choice).
fn unlisted_tools(ctx: &Ctx, name: &str, s: &RawServer) -> Result<bool, ConfigError> {
    match s.unlisted_tools.as_ref().map(|m| (m, m.get_ref().as_str())) {
        None | Some((_, "refuse")) => Ok(false),
        Some((_, "forward")) => Ok(true),
        Some((m, other)) => Err(ctx.at(
            m.span().start,
            &field(name, "unlisted_tools"),
            format!("{other:?}: use \"refuse\" (default: a call to a tool the server does not list gets \"Unknown tool\") or \"forward\" (it is decided by the policy and sent to this server)"),
        )),
    }
}

/// `path_root`: the directory the server resolves relative paths against.
fn path_root(
    ctx: &Ctx,
    name: &str,
    s: &RawServer,
) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let Some(p) = &s.path_root else {
        return Ok(None);
    };
    let dir = ctx.expand(p, &field(name, "path_root"))?;
    if dir.trim().is_empty() {
        return Err(ctx.at(p.span().start, &field(name, "path_root"), "must not be empty: name the directory the server resolves relative paths against (server-filesystem: its first allowed directory), or leave path_root out"));
    }
    Ok(Some(ctx.path(dir)))
}

/// `limits`: rate limits, parsed by the rate limiter's own parser.
fn limits(
    ctx: &Ctx,
    name: &str,
    s: &RawServer,
) -> Result<Vec<crate::state::limits::Limit>, ConfigError> {
    match &s.limits {
        None => Ok(vec![]),
        Some(l) => l
            .get_ref()
            .iter()
            .map(|v| {
                let json = serde_json::to_value(v).map_err(|e| e.to_string())?;
                crate::state::limits::Limit::parse(&json, "servers.toml")
            })
            .collect::<Result<_, _>>()
            .map_err(|e| ctx.at(l.span().start, &field(name, "limits"), e)),
    }
}
