//! `[personas.NAME]`: agent personas (HR-bot, IT-bot, dev-bot). A persona
//! names the agent identities it is for (`agents`: exact ids or globs), the
//! servers it may reach (`servers`) and the bundles it adds to each of those
//! servers' layers (`bundles`, with `bundle_roles` as a server's).
//! `[policy] unmatched_persona` says what an agent that matches no persona
//! gets: nothing (`"deny"`, the default) or the servers' own layers
//! (`"base"`).
//!
//! Which persona an agent is must never be a guess: two personas that could
//! both match one agent id (the same id twice, an id a glob of another
//! persona matches, two globs that overlap) are refused at load, so at most
//! one persona ever matches and the order of the tables means nothing.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::ctx::*;
use super::raw::{RawBundleRole, RawConfig};
use super::{BundleRole, Config, ConfigError, ServerConfig};

/// `[personas.NAME]` as written.
#[derive(Debug, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RawPersona {
    #[serde(default)]
    pub agents: Vec<Spanned<String>>,
    pub servers: Option<Spanned<Vec<String>>>,
    #[serde(default)]
    pub bundles: Vec<Spanned<String>>,
    #[serde(default)]
    pub bundle_roles: BTreeMap<String, Spanned<RawBundleRole>>,
}

/// One persona, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct Persona {
    pub name: String,
    /// Agent ids or globs (`*` matches any run of characters).
    pub agents: Vec<String>,
    /// The servers it may reach; `None`: every server.
    pub servers: Option<Vec<String>>,
    /// Bundle references it adds to each server's layers (as a server's
    /// `bundles`: paths resolved, `oci://` normalized).
    pub bundles: Vec<String>,
    pub bundle_roles: BTreeMap<String, BundleRole>,
}

impl Persona {
    /// Whether this persona may reach `server`.
    pub fn reaches(&self, server: &str) -> bool {
        self.servers
            .as_ref()
            .is_none_or(|s| s.iter().any(|x| x == server))
    }

    /// Whether `agent` is one of this persona's agents.
    pub fn matches(&self, agent: &str) -> bool {
        self.agents.iter().any(|p| glob_match(p, agent))
    }
}

/// `[policy] unmatched_persona`: what an agent matching no persona gets
/// when personas are configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnmatchedPersona {
    /// Every request denied (`persona_unmatched`).
    #[default]
    Deny,
    /// The servers' own and the shared layers, without any persona's.
    Base,
}

impl UnmatchedPersona {
    pub fn as_str(self) -> &'static str {
        match self {
            UnmatchedPersona::Deny => "deny",
            UnmatchedPersona::Base => "base",
        }
    }
}

/// Every persona and the default for agents that match none.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Personas {
    pub by_name: BTreeMap<String, Persona>,
    pub unmatched: UnmatchedPersona,
}

impl Personas {
    /// Whether any persona is configured (else decisions are as without
    /// the feature: no persona label, no restriction).
    pub fn enabled(&self) -> bool {
        !self.by_name.is_empty()
    }

    /// The one persona `agent` matches (ambiguity is refused at load).
    pub fn of(&self, agent: &str) -> Option<&Persona> {
        self.by_name.values().find(|p| p.matches(agent))
    }

    /// The personas that reach `server`.
    pub fn reaching<'a>(&'a self, server: &'a str) -> impl Iterator<Item = &'a Persona> + 'a {
        self.by_name.values().filter(move |p| p.reaches(server))
    }
}

/// `*` matches any run of characters (also none); every other character
/// matches itself. A two-pointer match with backtracking to the last star,
/// on bytes (no allocation on the decision path): a literal byte of the
/// pattern that starts a character never equals a continuation byte, so a
/// match always ends on character boundaries.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut i, mut j) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while j < s.len() {
        if i < p.len() && p[i] != b'*' && p[i] == s[j] {
            i += 1;
            j += 1;
        } else if i < p.len() && p[i] == b'*' {
            star = Some((i, j));
            i += 1;
        } else if let Some((si, sj)) = star {
            i = si + 1;
            j = sj + 1;
            star = Some((si, sj + 1));
        } else {
            return false;
        }
    }
    p[i..].iter().all(|c| *c == b'*')
}

/// Whether some agent id matches both patterns: reachability over pairs of
/// positions (at most (|a|+1)·(|b|+1) states), a star consuming the other
/// side's character or nothing.
pub fn globs_overlap(a: &str, b: &str) -> bool {
    let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
    let mut seen = vec![vec![false; b.len() + 1]; a.len() + 1];
    let mut todo = vec![(0usize, 0usize)];
    while let Some((i, j)) = todo.pop() {
        if std::mem::replace(&mut seen[i][j], true) {
            continue;
        }
        if i == a.len() && j == b.len() {
            return true;
        }
        let (x, y) = (a.get(i).copied(), b.get(j).copied());
        let mut next = Vec::new();
        if x == Some('*') {
            next.push((i + 1, j));
        }
        if y == Some('*') {
            next.push((i, j + 1));
        }
        match (x, y) {
            (Some('*'), Some(c)) if c != '*' => next.push((i, j + 1)),
            (Some(c), Some('*')) if c != '*' => next.push((i + 1, j)),
            (Some(c), Some(d)) if c == d && c != '*' => next.push((i + 1, j + 1)),
            _ => {}
        }
        todo.extend(next.into_iter().filter(|&(i, j)| !seen[i][j]));
    }
    false
}

/// Why `p` is not a usable agent pattern.
fn bad_pattern(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        Some("an empty agent id matches no agent")
    } else if p.len() > 256 {
        Some("longer than 256 bytes")
    } else if p.chars().any(|c| c.is_control() || c.is_whitespace()) {
        Some("contains whitespace or a control character")
    } else if p.chars().any(|c| "?[]{}!\\".contains(c)) {
        Some("only `*` is a wildcard (any run of characters); `? [ ] { } ! \\` are not allowed")
    } else if p.contains("**") {
        Some("`**` means the same as `*`; write one star")
    } else if p == "*" {
        Some(
            "`*` alone matches every agent: list the agents of the persona, and use [policy] unmatched_persona for the others",
        )
    } else {
        None
    }
}

impl Config {
    /// Every `[personas.NAME]` table and `[policy] unmatched_persona`; then
    /// the rules across personas (no agent in two) and with the servers
    /// (registry bundles signed, no `fail_open`). Runs after the servers.
    pub(super) fn personas(
        ctx: &Ctx,
        raw: &RawConfig,
        servers: &mut BTreeMap<String, ServerConfig>,
        shared: &[String],
    ) -> Result<Personas, ConfigError> {
        let unmatched = match raw.policy.unmatched_persona.as_ref() {
            None => UnmatchedPersona::default(),
            Some(v) => match v.get_ref().as_str() {
                "deny" => UnmatchedPersona::Deny,
                "base" => UnmatchedPersona::Base,
                other => {
                    return Err(ctx.at(
                        v.span().start,
                        "policy.unmatched_persona",
                        format!("{other:?}: use \"deny\" (an agent of no persona is refused) or \"base\" (it gets the servers' own and the shared layers)"),
                    ));
                }
            },
        };
        let mut by_name = BTreeMap::new();
        for (name, p) in &raw.personas {
            by_name.insert(name.clone(), persona(ctx, name, p, servers)?);
        }
        no_agent_in_two(ctx, raw, &by_name)?;
        for (name, p) in &by_name {
            let at = raw.personas[name].span().start;
            not_loaded_twice(ctx, at, p, servers, shared)?;
            sign_registry_bundles(ctx, raw, at, p, servers)?;
        }
        Ok(Personas { by_name, unmatched })
    }
}

/// One `[personas.NAME]` table.
fn persona(
    ctx: &Ctx,
    name: &str,
    spanned: &Spanned<RawPersona>,
    servers: &BTreeMap<String, ServerConfig>,
) -> Result<Persona, ConfigError> {
    let at = spanned.span().start;
    let p = spanned.get_ref();
    let f = |k: &str| format!("personas.{name}.{k}");
    if !valid_name(name) {
        return Err(ctx.at(at, &format!("personas.{name}"), format!(
            "invalid persona name: use 1-{SERVER_NAME_MAX} letters, digits, '_' or '-', without \"__\""
        )));
    }
    if p.agents.is_empty() {
        return Err(ctx.at(
            at,
            &f("agents"),
            "a persona needs at least one agent id (or glob, e.g. \"hr-*\") to match",
        ));
    }
    let mut agents = Vec::new();
    for a in &p.agents {
        let v = ctx.expand(a, &f("agents"))?;
        if let Some(why) = bad_pattern(&v) {
            return Err(ctx.at(a.span().start, &f("agents"), format!("{v:?}: {why}")));
        }
        agents.push(v);
    }
    let reach = match &p.servers {
        None => None,
        Some(list) if list.get_ref().is_empty() => {
            return Err(ctx.at(list.span().start, &f("servers"), "an empty list reaches no server: name the servers the persona may use, or remove the key to let it reach every server"));
        }
        Some(list) => {
            for s in list.get_ref() {
                if !servers.contains_key(s) {
                    let known: Vec<&str> = servers.keys().map(String::as_str).collect();
                    return Err(ctx.at(list.span().start, &f("servers"), format!(
                        "no [servers.{s}] in the config (servers: {}); name a configured server",
                        known.join(", ")
                    )));
                }
            }
            Some(list.get_ref().clone())
        }
    };
    let bundles: Vec<String> = p
        .bundles
        .iter()
        .map(|b| {
            ctx.expand(b, &f("bundles"))
                .and_then(|e| bundle_ref(ctx, e, b.span().start, &f("bundles")))
        })
        .collect::<Result<_, _>>()?;
    let table = format!("personas.{name}");
    let bundle_roles = Config::bundle_roles(ctx, Some(&p.bundle_roles), &bundles, &table)?;
    Ok(Persona {
        name: name.to_string(),
        agents,
        servers: reach,
        bundles,
        bundle_roles,
    })
}

/// No agent id may match two personas: the same id twice, an id another
/// persona's glob matches, or two globs some id matches both of.
fn no_agent_in_two(
    ctx: &Ctx,
    raw: &RawConfig,
    by_name: &BTreeMap<String, Persona>,
) -> Result<(), ConfigError> {
    let all: Vec<(&str, &str)> = by_name
        .values()
        .flat_map(|p| p.agents.iter().map(move |a| (p.name.as_str(), a.as_str())))
        .collect();
    for (i, (pa, a)) in all.iter().enumerate() {
        for (pb, b) in &all[i + 1..] {
            if pa == pb || !globs_overlap(a, b) {
                continue;
            }
            let what = if a == b {
                format!("agent {a:?} is listed by both persona {pa:?} and persona {pb:?}")
            } else {
                format!(
                    "agent patterns {a:?} (persona {pa:?}) and {b:?} (persona {pb:?}) can match the same agent id"
                )
            };
            return Err(ctx.at(
                raw.personas[*pb].span().start,
                &format!("personas.{pb}.agents"),
                format!(
                    "{what}: an agent must belong to one persona; make the ids or globs disjoint"
                ),
            ));
        }
    }
    Ok(())
}

/// A persona's bundle is added to the layers of each server it reaches: one
/// that already is a layer there (the server's own, or shared) would be
/// loaded twice, its roots overlapping themselves.
fn not_loaded_twice(
    ctx: &Ctx,
    at: usize,
    p: &Persona,
    servers: &BTreeMap<String, ServerConfig>,
    shared: &[String],
) -> Result<(), ConfigError> {
    for b in &p.bundles {
        let owner = if shared.contains(b) {
            Some("[policy] shared_bundles".to_string())
        } else {
            servers
                .iter()
                .find(|(n, s)| p.reaches(n) && s.bundles.contains(b))
                .map(|(n, _)| format!("servers.{n}.bundle(s)"))
        };
        if let Some(owner) = owner {
            return Err(ctx.at(at, &format!("personas.{}.bundles", p.name), format!(
                "{b} is already in {owner}: it would be loaded twice for the persona; list it in one place"
            )));
        }
    }
    Ok(())
}

/// A persona's registry bundle joins the policy of every server it reaches,
/// so it is bound as that server's own would be: signed unless the server
/// says `require_signature = false`, and never on a `fail_open` server.
fn sign_registry_bundles(
    ctx: &Ctx,
    raw: &RawConfig,
    at: usize,
    p: &Persona,
    servers: &mut BTreeMap<String, ServerConfig>,
) -> Result<(), ConfigError> {
    let Some(r) = p.bundles.iter().find(|b| b.starts_with("oci://")) else {
        return Ok(());
    };
    for (name, server) in servers.iter_mut().filter(|(n, _)| p.reaches(n)) {
        if server.fail_open {
            return Err(ctx.at(at, &format!("personas.{}.bundles", p.name), format!(
                "bundle {r} comes from a registry and server {name:?} is fail_open = true: a registry bundle that fails its checks must never let requests through; remove fail_open or keep the persona off that server"
            )));
        }
        let rs = raw.servers[name].get_ref();
        if rs.require_signature.is_none() {
            if server.signing.keys.is_empty() {
                return Err(ctx.at(at, &format!("servers.{name}.keys"), format!(
                    "bundle {r} of persona {:?} comes from a registry and must be signed: list the keys server {name:?} trusts, or set require_signature = false",
                    p.name
                )));
            }
            server.signing.require_signature = true;
        }
    }
    Ok(())
}

/// `config check`: `[personas.NAME]` tables, and `unmatched_persona` in
/// `[policy]`, when personas are configured.
pub(super) fn render(p: &Personas, root: &mut toml::Table) {
    use toml::Value;
    if !p.enabled() {
        return;
    }
    let strings = |v: &[String]| Value::Array(v.iter().cloned().map(Value::String).collect());
    if let Some(Value::Table(policy)) = root.get_mut("policy") {
        policy.insert(
            "unmatched_persona".into(),
            Value::String(p.unmatched.as_str().into()),
        );
    }
    let mut t = toml::Table::new();
    for (name, persona) in &p.by_name {
        let mut e = toml::Table::new();
        e.insert("agents".into(), strings(&persona.agents));
        if let Some(s) = &persona.servers {
            e.insert("servers".into(), strings(s));
        }
        e.insert("bundles".into(), strings(&persona.bundles));
        if !persona.bundle_roles.is_empty() {
            e.insert(
                "bundle_roles".into(),
                super::render::bundle_roles(&persona.bundle_roles),
            );
        }
        t.insert(name.clone(), Value::Table(e));
    }
    root.insert("personas".into(), Value::Table(t));
}

#[cfg(test)]
#[path = "persona_tests.rs"]
mod tests;
