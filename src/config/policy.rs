//! `[policy]`: the bundles every server shares (their keys and roles), the
//! rules that apply to all policy (require a bundle, strict input, time
//! limits), and what shared registry bundles demand of every server.

use super::ctx::*;
use super::raw::{RawConfig, RawPolicy};
use super::*;

impl PolicySettings {
    pub(super) fn parse(
        ctx: &Ctx,
        p: &RawPolicy,
        keys: &BTreeMap<String, KeyConfig>,
    ) -> Result<PolicySettings, ConfigError> {
        let shared_bundles: Vec<String> = p
            .shared_bundles
            .iter()
            .map(|b| {
                ctx.expand(b, "policy.shared_bundles")
                    .and_then(|e| bundle_ref(ctx, e, b.span().start, "policy.shared_bundles"))
            })
            .collect::<Result<_, _>>()?;
        let shared_shadow_bundles: Vec<String> = p
            .shared_shadow_bundles
            .iter()
            .map(|b| {
                ctx.expand(b, "policy.shared_shadow_bundles").and_then(|e| {
                    bundle_ref(ctx, e, b.span().start, "policy.shared_shadow_bundles")
                })
            })
            .collect::<Result<_, _>>()?;
        if let Some((b, at)) = p
            .shared_shadow_bundles
            .iter()
            .zip(&shared_shadow_bundles)
            .find_map(|(raw, r)| shared_bundles.contains(r).then_some((r, raw.span().start)))
        {
            return Err(ctx.at(
                at,
                "policy.shared_shadow_bundles",
                format!("{b} is also in policy.shared_bundles: a shadow bundle runs beside the live ones; remove it from one of the two"),
            ));
        }
        let keys = shared_keys(ctx, p, keys)?;
        let eval_timeout = ctx.duration(
            &p.eval_timeout,
            "policy.eval_timeout",
            PolicySettings::default().eval_timeout,
        )?;
        let approval_timeout = ctx.duration(
            &p.approval_timeout,
            "policy.approval_timeout",
            PolicySettings::default().approval_timeout,
        )?;
        let all: Vec<String> = shared_bundles
            .iter()
            .chain(&shared_shadow_bundles)
            .cloned()
            .collect();
        let bundle_roles = Config::bundle_roles(ctx, Some(&p.bundle_roles), &all, "policy")?;
        Ok(PolicySettings {
            shared_bundles,
            shared_shadow_bundles,
            keys,
            require_bundle: p.require_bundle,
            strict_input: p.strict_input,
            eval_timeout,
            approval_timeout,
            bundle_roles,
        })
    }
}

/// `policy.keys`: the keys that sign the shared bundles, each defined by a
/// `[keys.…]` table; an empty list is refused (it would trust no key).
fn shared_keys(
    ctx: &Ctx,
    p: &RawPolicy,
    keys: &BTreeMap<String, KeyConfig>,
) -> Result<Vec<String>, ConfigError> {
    let Some(k) = &p.keys else {
        return Ok(vec![]);
    };
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
    Ok(k.get_ref().clone())
}

/// Shared bundles from a registry bind every server as its own would:
/// signed unless a server says require_signature = false — or signed by
/// the [policy] keys, when those are given.
pub(super) fn sign_shared_registry_bundles(
    ctx: &Ctx,
    raw: &RawConfig,
    servers: &mut BTreeMap<String, ServerConfig>,
    policy: &PolicySettings,
) -> Result<(), ConfigError> {
    let Some(r) = policy
        .shared_bundles
        .iter()
        .find(|b| b.starts_with("oci://"))
    else {
        return Ok(());
    };
    if !policy.keys.is_empty() {
        return Ok(());
    }
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
    Ok(())
}
