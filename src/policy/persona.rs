//! Building personas' policies with the servers' own code path. A persona's
//! policy for a server is that server's policy with the persona's bundles
//! added as layers (server bundles, then the persona's, then the shared
//! ones): resolved, verified under the server's keys, bound, tested and
//! compiled by `build::policy_active` exactly as the server's own, and kept
//! current by the supply, which knows it as the target `SERVER@PERSONA`
//! ([`crate::decision::persona::target`]).
//!
//! A persona's bundles are owned by `(persona NAME)` (the bundle cache and
//! the supply key them so: one pull for every server the persona reaches).
//! Their roles are `personas.NAME.bundle_roles`; a registry bundle without
//! declared roots must keep its roots within `persona/NAME`, the persona's
//! own namespace (the server's `mcp/<server>` belongs to the server's
//! bundles, `gavel` to the shared ones, and overlapping roots are refused).

use std::borrow::Cow;
use std::collections::BTreeMap;

use crate::config::{BundleRole, Config, Persona};
use crate::decision::Enforcer;
use crate::decision::engine::EngineOptions;
use crate::decision::persona::{PersonaPolicies, split_target, target};

use super::source::{Resolve, SHARED_OWNER};

/// The owner of `persona`'s bundles in the supply and the bundle cache.
pub fn owner(persona: &str) -> String {
    format!("(persona {persona})")
}

/// The persona an owner names, if it names one.
pub fn persona_of_owner(owner: &str) -> Option<&str> {
    owner.strip_prefix("(persona ")?.strip_suffix(')')
}

/// The config table of an owner's `bundle_roles` (for messages).
pub fn table_of_owner(owner: &str) -> String {
    match persona_of_owner(owner) {
        Some(p) => format!("personas.{p}"),
        None if owner == SHARED_OWNER => "policy".to_string(),
        None => format!("servers.{owner}"),
    }
}

/// The table and role a persona's bundle `reference` is bound with: the
/// persona's `bundle_roles` entry; a registry bundle without declared roots
/// gets the persona's namespace `persona/NAME`.
pub(super) fn role<'a>(
    persona: &'a Persona,
    reference: &str,
    oci: bool,
) -> (String, Option<Cow<'a, BundleRole>>) {
    let table = format!("personas.{}", persona.name);
    let configured = persona.bundle_roles.get(reference);
    let role = match configured {
        Some(r) if r.roots.is_some() || !oci => Some(Cow::Borrowed(r)),
        _ if !oci => None,
        other => Some(Cow::Owned(BundleRole {
            roots: Some(vec![format!("persona/{}", persona.name)]),
            ..other.cloned().unwrap_or_default()
        })),
    };
    (table, role)
}

/// Every persona's policy for every enabled server it reaches.
pub(super) fn build_all(
    config: &Config,
    opts: &EngineOptions,
    resolver: &dyn Resolve,
) -> anyhow::Result<PersonaPolicies> {
    let mut out = PersonaPolicies::default();
    for (name, server) in config.enabled_servers() {
        for p in config.personas.reaching(name) {
            let active =
                super::build::policy_active(name, server, Some(p), config, opts, resolver)?;
            active.publish(&target(name, &p.name), None);
            out.insert(name, &p.name, active);
        }
    }
    Ok(out)
}

/// Builds the policy of a target `SERVER@PERSONA` anew (hot reload), or
/// `None` when `t` is a plain server name.
pub(super) fn build_target(
    enforcer: &Enforcer,
    t: &str,
    resolver: &dyn Resolve,
) -> Option<anyhow::Result<crate::decision::Active>> {
    build_in(enforcer.config(), t, resolver)
}

/// As [`build_target`], for `config` without an enforcer (`gavel bundle
/// pull --server`'s check).
pub(super) fn build_in(
    config: &Config,
    t: &str,
    resolver: &dyn Resolve,
) -> Option<anyhow::Result<crate::decision::Active>> {
    let (server, persona) = split_target(t)?;
    Some((|| {
        let sc = config
            .servers
            .get(server)
            .ok_or_else(|| anyhow::anyhow!("no server {server:?} in the config"))?;
        let p = config
            .personas
            .by_name
            .get(persona)
            .ok_or_else(|| anyhow::anyhow!("no persona {persona:?} in the config"))?;
        let opts = EngineOptions::from_config(config);
        super::build::policy_active(server, sc, Some(p), config, &opts, resolver)
    })())
}

/// The supply's users of each `(owner, oci ref)`, for personas: a persona
/// target uses its server's registry bundles, the shared ones and its
/// persona's (each reloads it when it changes).
pub(super) fn add_refs(config: &Config, users: &mut BTreeMap<(String, String), Vec<String>>) {
    let oci = |list: &[String]| -> Vec<String> {
        list.iter()
            .filter(|r| r.starts_with("oci://"))
            .cloned()
            .collect()
    };
    for (name, s) in config.enabled_servers() {
        for p in config.personas.reaching(name) {
            let t = target(name, &p.name);
            let owned = oci(&s.bundles).into_iter().map(|r| (name.clone(), r));
            let persona = oci(&p.bundles).into_iter().map(|r| (owner(&p.name), r));
            let shared = oci(&config.policy.shared_bundles)
                .into_iter()
                .map(|r| (SHARED_OWNER.to_string(), r));
            for key in owned.chain(persona).chain(shared) {
                users.entry(key).or_default().push(t.clone());
            }
        }
    }
}

/// The operator's `bundle_roles` entry for a persona owner's bundle.
pub(super) fn bundle_role<'c>(
    config: &'c Config,
    owner: &str,
    reference: &str,
) -> Option<Option<&'c BundleRole>> {
    let p = persona_of_owner(owner)?;
    Some(
        config
            .personas
            .by_name
            .get(p)
            .and_then(|p| p.bundle_roles.get(reference)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_and_targets_round_trip() {
        assert_eq!(persona_of_owner(&owner("hr")), Some("hr"));
        assert_eq!(persona_of_owner("fs"), None);
        assert_eq!(persona_of_owner(SHARED_OWNER), None);
        assert_eq!(table_of_owner(&owner("hr")), "personas.hr");
        assert_eq!(table_of_owner(SHARED_OWNER), "policy");
        assert_eq!(table_of_owner("fs"), "servers.fs");
        assert_eq!(split_target(&target("fs", "hr")), Some(("fs", "hr")));
        assert_eq!(split_target("fs"), None);
    }

    #[test]
    fn a_registry_persona_bundle_is_confined_to_the_personas_namespace() {
        let p = Persona {
            name: "hr".into(),
            agents: vec!["hr-bot".into()],
            servers: None,
            bundles: vec!["oci://r/hr:1".into(), "/b/local".into()],
            bundle_roles: [(
                "/b/local".to_string(),
                BundleRole {
                    layer: Some("identity".into()),
                    ..Default::default()
                },
            )]
            .into(),
        };
        let (table, r) = role(&p, "oci://r/hr:1", true);
        assert_eq!(table, "personas.hr");
        assert_eq!(r.unwrap().roots, Some(vec!["persona/hr".to_string()]));
        let (_, r) = role(&p, "/b/local", false);
        let r = r.unwrap();
        assert_eq!(
            (r.layer.as_deref(), r.roots.clone()),
            (Some("identity"), None)
        );
        assert!(role(&p, "/b/other", false).1.is_none());
    }
}
