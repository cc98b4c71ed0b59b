//! The effective config as TOML, secrets masked: what `gavel config check`
//! prints. Masking runs on expanded values, so a secret pulled from the
//! environment never prints either.

use toml::{Table, Value};

use std::collections::BTreeMap;

use super::{
    Config, Identity, KeyConfig, Limits, LogSettings, PolicySettings, ServerConfig,
    UpstreamTransport,
};

// The masking rules for printed config (secret-looking names, URLs,
// headers) live with the decision log's in `audit::mask`: one home for
// what counts as a secret.
pub use crate::audit::mask::{is_config_secret_name as is_secret_name, mask_header, mask_url};

fn strings(v: &[String]) -> Value {
    Value::Array(v.iter().cloned().map(Value::String).collect())
}

fn secs(d: std::time::Duration) -> Value {
    Value::String(humantime::format_duration(d).to_string())
}

/// The whole config as TOML, one table per section as the file has them.
pub fn render(c: &Config) -> String {
    let mut root = Table::new();
    let servers: Table = c
        .servers
        .iter()
        .map(|(name, s)| (name.clone(), Value::Table(server(s))))
        .collect();
    let keys = keys(&c.keys);
    if !keys.is_empty() {
        root.insert("keys".into(), Value::Table(keys));
    }
    root.insert("identity".into(), Value::Table(identity(&c.identity)));
    root.insert("limits".into(), Value::Table(limits(&c.limits)));
    root.insert("log".into(), Value::Table(log(&c.log)));
    if let Some(l) = c.metrics_listen {
        let mut m = Table::new();
        m.insert("listen".into(), Value::String(l.to_string()));
        root.insert("metrics".into(), Value::Table(m));
    }
    root.insert("policy".into(), Value::Table(policy(&c.policy)));
    root.insert("servers".into(), Value::Table(servers));
    super::persona::render(&c.personas, &mut root);
    stateful(c, &mut root);
    root.insert("oci".into(), Value::Table(oci(&c.oci)));
    root.insert("serve".into(), Value::Table(c.serve.render()));
    if let Some(t) = &c.telemetry {
        root.insert(
            "telemetry".into(),
            Value::Table(super::telemetry::render(t)),
        );
    }
    if c.agent_tools == super::AgentToolsMode::Beside {
        let mut a = Table::new();
        a.insert("enabled".into(), Value::Boolean(true));
        root.insert("agent_tools".into(), Value::Table(a));
    }
    toml::to_string_pretty(&root).unwrap_or_default()
}

/// One `[servers.NAME]` table: environment variables with secret names,
/// URL credentials and header values masked.
fn server(s: &ServerConfig) -> Table {
    let mut t = Table::new();
    transport(&mut t, &s.transport);
    t.insert("enabled".into(), Value::Boolean(s.enabled));
    t.insert("prefix".into(), Value::String(s.prefix.clone()));
    t.insert("startup_timeout".into(), secs(s.startup_timeout));
    t.insert("call_timeout".into(), secs(s.call_timeout));
    t.insert("restart_max_backoff".into(), secs(s.restart_max_backoff));
    t.insert(
        "annotations_trusted".into(),
        Value::Boolean(s.annotations_trusted),
    );
    t.insert("fail_open".into(), Value::Boolean(s.fail_open));
    t.insert(
        "session_mode".into(),
        Value::String(
            match s.session_mode {
                crate::config::SessionMode::PerSession => "per_session",
                crate::config::SessionMode::Shared => "shared",
            }
            .into(),
        ),
    );
    t.insert("era".into(), Value::String(s.era.as_str().into()));
    if s.forward_unlisted {
        t.insert("unlisted_tools".into(), Value::String("forward".into()));
    }
    t.insert("bundles".into(), strings(&s.bundles));
    if !s.shadow_bundles.is_empty() {
        t.insert("shadow_bundles".into(), strings(&s.shadow_bundles));
    }
    if !s.bundle_roles.is_empty() {
        t.insert("bundle_roles".into(), bundle_roles(&s.bundle_roles));
    }
    let mut tools = Table::new();
    tools.insert("allow".into(), strings(&s.tools.allow));
    tools.insert("deny".into(), strings(&s.tools.deny));
    t.insert("tools".into(), Value::Table(tools));
    if !s.limits.is_empty() {
        let l: Vec<Value> = s.limits.iter().map(limit).collect();
        t.insert("limits".into(), Value::Array(l));
    }
    t
}

/// `command`/`args`/`env`/`cwd` or `url`/`headers`, into the server's table.
fn transport(t: &mut Table, transport: &UpstreamTransport) {
    match transport {
        UpstreamTransport::Stdio {
            command,
            args,
            env,
            cwd,
        } => {
            t.insert("command".into(), Value::String(command.clone()));
            t.insert("args".into(), strings(args));
            if !env.is_empty() {
                let e: Table = env
                    .iter()
                    .map(|(k, v)| {
                        (
                            k.clone(),
                            Value::String(if is_secret_name(k) {
                                "***".into()
                            } else {
                                v.clone()
                            }),
                        )
                    })
                    .collect();
                t.insert("env".into(), Value::Table(e));
            }
            if let Some(cwd) = cwd {
                t.insert("cwd".into(), Value::String(cwd.display().to_string()));
            }
        }
        UpstreamTransport::Http { url, headers } => {
            t.insert("url".into(), Value::String(mask_url(url)));
            if !headers.is_empty() {
                let h: Table = headers
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(mask_header(v))))
                    .collect();
                t.insert("headers".into(), Value::Table(h));
            }
        }
    }
}

fn identity(id: &Identity) -> Table {
    let mut identity = Table::new();
    let mut agent = Table::new();
    agent.insert("id".into(), Value::String(id.agent.id.clone()));
    agent.insert("scope".into(), strings(&id.agent.scope));
    if let Some(t) = &id.agent.owner_team {
        agent.insert("owner_team".into(), Value::String(t.clone()));
    }
    let mut user = Table::new();
    user.insert("id".into(), Value::String(id.user.id.clone()));
    user.insert("groups".into(), strings(&id.user.groups));
    user.insert(
        "data_classifications_authorized".into(),
        strings(&id.user.data_classifications_authorized),
    );
    let mut env = Table::new();
    if let Some(r) = &id.environment.region {
        env.insert("region".into(), Value::String(r.clone()));
    }
    env.insert(
        "is_production".into(),
        Value::Boolean(id.environment.is_production),
    );
    let labels: Table = id
        .environment
        .labels
        .iter()
        .map(|(k, v)| (k.clone(), Value::String(v.clone())))
        .collect();
    env.insert("labels".into(), Value::Table(labels));
    identity.insert("agent".into(), Value::Table(agent));
    identity.insert("user".into(), Value::Table(user));
    identity.insert("environment".into(), Value::Table(env));
    identity
}

fn limits(l: &Limits) -> Table {
    let mut limits = Table::new();
    limits.insert(
        "max_message_bytes".into(),
        Value::Integer(l.max_message_bytes as i64),
    );
    limits.insert(
        "max_stderr_line_bytes".into(),
        Value::Integer(l.max_stderr_line_bytes as i64),
    );
    limits.insert(
        "stderr_tail_lines".into(),
        Value::Integer(l.stderr_tail_lines as i64),
    );
    limits
}

fn policy(p: &PolicySettings) -> Table {
    let mut policy = Table::new();
    policy.insert("shared_bundles".into(), strings(&p.shared_bundles));
    if !p.shared_shadow_bundles.is_empty() {
        policy.insert(
            "shared_shadow_bundles".into(),
            strings(&p.shared_shadow_bundles),
        );
    }
    if !p.keys.is_empty() {
        policy.insert("keys".into(), strings(&p.keys));
    }
    policy.insert("require_bundle".into(), Value::Boolean(p.require_bundle));
    policy.insert("strict_input".into(), Value::Boolean(p.strict_input));
    policy.insert("eval_timeout".into(), secs(p.eval_timeout));
    policy.insert("approval_timeout".into(), secs(p.approval_timeout));
    if !p.bundle_roles.is_empty() {
        policy.insert("bundle_roles".into(), bundle_roles(&p.bundle_roles));
    }
    policy
}

fn log(l: &LogSettings) -> Table {
    let mut log = Table::new();
    if let Some(f) = &l.file {
        log.insert("file".into(), Value::String(f.display().to_string()));
    }
    if let Some(level) = &l.level {
        log.insert("level".into(), Value::String(level.clone()));
    }
    if let Some(f) = &l.decisions {
        log.insert("decisions".into(), Value::String(f.display().to_string()));
    }
    log.insert(
        "max_arg_bytes".into(),
        Value::Integer(l.max_arg_bytes as i64),
    );
    log.insert("secret_fields".into(), strings(&l.secret_fields));
    log.insert(
        "rotate_bytes".into(),
        Value::Integer(l.rotation.bytes as i64),
    );
    log.insert("rotate_keep".into(), Value::Integer(l.rotation.keep as i64));
    log.insert(
        "on_write_error".into(),
        Value::String(l.on_write_error.as_str().into()),
    );
    if let Some(ship) = &l.ship {
        log.insert("ship".into(), Value::Table(ship_table(ship)));
    }
    log
}

/// `[log.ship]`: the URL's credentials and every header value masked.
fn ship_table(s: &crate::audit::ship::ShipSettings) -> Table {
    let mut t = Table::new();
    t.insert("url".into(), Value::String(mask_url(&s.url)));
    t.insert("resource".into(), Value::String(s.resource.clone()));
    t.insert(
        "headers".into(),
        Value::Table(
            s.headers
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(mask_header(v))))
                .collect(),
        ),
    );
    t.insert(
        "upload_size_limit_bytes".into(),
        Value::Integer(s.upload_size_limit_bytes as i64),
    );
    t.insert("min_delay".into(), secs(s.min_delay));
    t.insert("max_delay".into(), secs(s.max_delay));
    t.insert("timeout".into(), secs(s.timeout));
    t.insert(
        "max_spool_bytes".into(),
        Value::Integer(s.max_spool_bytes as i64),
    );
    t.insert("at_bound".into(), Value::String(s.at_bound.as_str().into()));
    t
}

fn keys(keys: &BTreeMap<String, KeyConfig>) -> Table {
    keys.iter()
        .map(|(name, k)| {
            let mut t = Table::new();
            t.insert("algorithm".into(), Value::String(k.algorithm.clone()));
            // Public keys are not secret, HMAC secrets are: mask both alike.
            t.insert("key".into(), Value::String("***".into()));
            if let Some(s) = &k.scope {
                t.insert("scope".into(), Value::String(s.clone()));
            }
            (name.clone(), Value::Table(t))
        })
        .collect()
}

fn limit(l: &crate::state::limits::Limit) -> Value {
    use crate::state::limits::Scope;
    let mut t = Table::new();
    let scope = match &l.scope {
        Scope::Tool(tool) => {
            t.insert("tool".into(), Value::String(tool.clone()));
            "tool"
        }
        Scope::Server => "server",
        Scope::User => "user",
        Scope::Agent => "agent",
    };
    t.insert("scope".into(), Value::String(scope.into()));
    t.insert("rate".into(), Value::Float(l.rate.rate));
    t.insert("per".into(), Value::String(format!("{}s", l.rate.period_s)));
    t.insert("burst".into(), Value::Integer(l.rate.burst as i64));
    Value::Table(t)
}

/// `[budget]`, `[state]`, `[auth]` — secrets (Redis passwords, key material)
/// masked; key files and variables named, never read out.
fn stateful(c: &Config, root: &mut Table) {
    if let Some(b) = &c.budget {
        let mut t = Table::new();
        let per = match b.per {
            crate::config::BudgetPer::User => "user",
            crate::config::BudgetPer::Agent => "agent",
            crate::config::BudgetPer::UserAgent => "user_agent",
        };
        t.insert("per".into(), Value::String(per.into()));
        t.insert(
            "period".into(),
            Value::String(
                serde_json::to_value(b.period)
                    .ok()
                    .and_then(|v| v.as_str().map(String::from))
                    .unwrap_or_default(),
            ),
        );
        t.insert("utc_offset".into(), Value::String(b.calendar.offset_text()));
        t.insert(
            "week_starts".into(),
            Value::String(b.calendar.week_start_name().into()),
        );
        if let Some(n) = b.calls {
            t.insert("calls".into(), Value::Integer(n as i64));
        }
        if let Some(n) = b.tokens {
            t.insert("tokens".into(), Value::Integer(n as i64));
        }
        root.insert("budget".into(), Value::Table(t));
    }
    let mut st = Table::new();
    match &c.redis_url {
        Some(u) => {
            st.insert("backend".into(), Value::String("redis".into()));
            st.insert("redis_url".into(), Value::String(mask_url(u)));
        }
        None => {
            st.insert("backend".into(), Value::String("sqlite".into()));
            if let Some(p) = &c.state_path {
                st.insert("path".into(), Value::String(p.display().to_string()));
            }
        }
    }
    root.insert("state".into(), Value::Table(st));
    if let Some(a) = &c.auth {
        let mut t = Table::new();
        t.insert("issuer".into(), Value::String(a.issuer.clone()));
        t.insert("audience".into(), Value::String(a.audience.clone()));
        t.insert("algorithm".into(), Value::String(a.algorithm.clone()));
        let (k, v) = match &a.key {
            crate::config::AuthKey::PemFile(p) => ("key_file", p.display().to_string()),
            crate::config::AuthKey::SecretEnv(e) => ("key_env", e.clone()),
            crate::config::AuthKey::JwksFile(p) => ("jwks_file", p.display().to_string()),
            crate::config::AuthKey::JwksUrl { url, .. } => ("jwks_url", mask_url(url)),
        };
        t.insert(k.into(), Value::String(v));
        t.insert("leeway".into(), secs(a.leeway));
        t.insert("user_claim".into(), Value::String(a.user_claim.clone()));
        t.insert("groups_claim".into(), Value::String(a.groups_claim.clone()));
        t.insert("agent_claim".into(), Value::String(a.agent_claim.clone()));
        if let Some(cl) = &a.classifications_claim {
            t.insert("classifications_claim".into(), Value::String(cl.clone()));
        }
        root.insert("auth".into(), Value::Table(t));
    }
}

/// `[oci]`: registry passwords are never in the config (only the name of
/// the variable holding one), so nothing here needs masking.
fn oci(o: &crate::config::OciSettings) -> Table {
    let mut t = Table::new();
    t.insert(
        "cache_dir".into(),
        Value::String(o.cache_root().display().to_string()),
    );
    t.insert("min_delay".into(), secs(o.min_delay));
    t.insert("max_delay".into(), secs(o.max_delay));
    t.insert("pull_timeout".into(), secs(o.pull_timeout));
    t.insert(
        "max_bundle_bytes".into(),
        Value::Integer(o.max_bundle_bytes as i64),
    );
    let mut regs = Table::new();
    for (host, r) in &o.registries {
        let mut rt = Table::new();
        rt.insert("insecure".into(), Value::Boolean(r.insecure));
        if let Some(u) = &r.username {
            rt.insert("username".into(), Value::String(u.clone()));
        }
        if let Some(e) = &r.password_env {
            rt.insert("password_env".into(), Value::String(e.clone()));
        }
        if let Some(ca) = &r.ca_file {
            rt.insert("ca_file".into(), Value::String(ca.display().to_string()));
        }
        regs.insert(host.clone(), Value::Table(rt));
    }
    if !regs.is_empty() {
        t.insert("registries".into(), Value::Table(regs));
    }
    t
}

/// `bundle_roles` as written (nothing in them is secret).
pub(super) fn bundle_roles(
    roles: &std::collections::BTreeMap<String, crate::config::BundleRole>,
) -> Value {
    let t: Table = roles
        .iter()
        .map(|(r, role)| {
            let mut e = Table::new();
            if let Some(l) = &role.layer {
                e.insert("layer".into(), Value::String(l.clone()));
            }
            if let Some(roots) = &role.roots {
                e.insert("roots".into(), strings(roots));
            }
            e.insert("allow_rollback".into(), Value::Boolean(role.allow_rollback));
            (r.clone(), Value::Table(e))
        })
        .collect();
    Value::Table(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `config check` masks by the same spelling-blind names as the
    /// decision log (plus its broader words): variables and query
    /// parameters named `…JWT…`, `bearer`, `privateKey`, `x-api-key`.
    #[test]
    fn config_check_masks_secret_names_in_any_spelling() {
        for name in [
            "GITHUB_JWT",
            "MY_BEARER",
            "privateKey",
            "x-api-key",
            "GCP_CREDENTIALS",
            "SESSION_ID",
            "DB_PASSWORD",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in ["HOME", "PATH", "LOG_LEVEL"] {
            assert!(!is_secret_name(name), "{name}");
        }
        assert_eq!(
            mask_url("https://u:p@h.example/x?jwt=abc&bearer=def&accessKey=ghi&page=2"),
            "https://***@h.example/x?jwt=***&bearer=***&accessKey=***&page=2"
        );
    }
}
