//! Building one server's policy: resolve each bundle reference, verify its
//! signature under the server's trusted keys, run the bundle's own tests (for
//! bundles pulled from a registry), lint and compile into one engine. Used at
//! start and, off to the side of the running engine, on every hot reload.

use std::sync::Arc;

use crate::decision::engine::{EngineOptions, PolicyEngine};
use std::collections::HashMap;

use crate::audit::DecisionLog;
use crate::bundle::Bundle;
use crate::config::{Config, ServerConfig};
use crate::decision::static_rules::StaticRules;
use crate::decision::{Active, Enforcer, Policy, ServerPolicy, ShadowPolicy};
use crate::policy::source::{Resolve, SHARED_OWNER};

/// Constructing the enforcer: every server's policy, the decision log and
/// the state guard.
impl Enforcer {
    /// Builds every server's policy from local files and the bundle cache
    /// (no network). A configured bundle that cannot be loaded makes that
    /// server fail closed (and is logged loudly); `require_bundle` makes a
    /// server without a bundle a startup error.
    pub fn from_config(config: &Config) -> anyhow::Result<Self> {
        Self::from_config_with_clock(config, crate::state::clock::from_env())
    }

    /// As [`Enforcer::from_config`], with the clock rate limits and budgets
    /// read (tests and benchmarks drive it).
    pub fn from_config_with_clock(
        config: &Config,
        clock: std::sync::Arc<dyn crate::state::clock::Clock>,
    ) -> anyhow::Result<Self> {
        let offline = crate::policy::source::Offline::new(Some(
            crate::bundle::oci::cache::Cache::new(&config.oci.cache_root()),
        ));
        Self::with_resolver(config, clock, &offline)
    }

    /// Builds every server's policy, resolving bundle references with
    /// `resolver` (the running supply serves freshly pulled OCI bundles).
    pub fn with_resolver(
        config: &Config,
        clock: std::sync::Arc<dyn crate::state::clock::Clock>,
        resolver: &dyn crate::policy::source::Resolve,
    ) -> anyhow::Result<Self> {
        let opts = EngineOptions::from_config(config);
        let mut servers = HashMap::new();
        for (name, server) in &config.servers {
            let active = server_active(name, server, config, &opts, resolver)?;
            active.publish(name, None);
            if server.fail_open && server.enabled {
                tracing::warn!(server = %name, "fail_open = true: requests are ALLOWED when the policy cannot decide");
            }
            servers.insert(
                name.clone(),
                ServerPolicy {
                    static_rules: StaticRules::new(name, &server.tools)?,
                    active: arc_swap::ArcSwap::from_pointee(active),
                    fail_open: server.fail_open,
                    annotations_trusted: server.annotations_trusted,
                    config_limits: server.limits.clone(),
                    path_root: server
                        .path_root
                        .as_deref()
                        .map(crate::decision::paths::PathRoot::new)
                        .transpose()
                        .map_err(|e| {
                            anyhow::anyhow!("servers.{name}.path_root cannot be used: {e}")
                        })?,
                },
            );
        }
        let log = match &config.log.decisions {
            Some(p) => Some(DecisionLog::open(p, config.log.rotation).map_err(|e| {
                anyhow::anyhow!("cannot open the decision log {}: {e}", p.display())
            })?),
            None => None,
        };
        if let (Some(log), Some(ship)) = (&log, &config.log.ship) {
            crate::audit::ship::start(log, ship.clone(), config.log.rotation.keep)
                .map_err(|e| anyhow::anyhow!("cannot start decision-log shipping: {e}"))?;
        }
        if let Some(log) = &log
            && config.log.on_write_error == crate::config::OnWriteError::Allow
        {
            tracing::warn!(path = %log.path().display(), "[log] on_write_error = \"allow\": a request whose decision record cannot be written is carried out UNRECORDED");
        }
        // A bundle pulled later may bring limits: servers with OCI bundles
        // count as needing the state store from the start.
        let limits_needed = config.servers.values().any(|s| {
            s.bundles.iter().any(|b| b.starts_with("oci://"))
        }) || config
            .policy
            .shared_bundles
            .iter()
            .any(|b| b.starts_with("oci://"))
            || servers.values().any(|s| {
                !s.config_limits.is_empty()
                    || matches!(&s.active.load().policy, Policy::Rego(e) if e.limits().next().is_some())
            });
        // Each persona's policy per server (none without personas).
        let personas = super::persona::build_all(config, &opts, resolver)?;
        let limits_needed = limits_needed
            || personas.has_limits()
            || config
                .personas
                .by_name
                .values()
                .any(|p| p.bundles.iter().any(|b| b.starts_with("oci://")));
        let guard =
            crate::decision::guard::Guard::from_config(config, limits_needed, clock.clone());
        Ok(Self::assemble(config, servers, log, guard, clock).with_personas(personas))
    }

    /// Builds `server`'s policy anew with `resolver`, off to the side. The
    /// caller activates it only if it is usable ([`Enforcer::activate`]).
    pub fn build_server(
        &self,
        server: &str,
        resolver: &dyn crate::policy::source::Resolve,
    ) -> anyhow::Result<Active> {
        // A persona target `SERVER@PERSONA`: that persona's policy.
        if let Some(built) = super::persona::build_target(self, server, resolver) {
            return built;
        }
        let sc = self
            .config()
            .servers
            .get(server)
            .ok_or_else(|| anyhow::anyhow!("no server {server:?} in the config"))?;
        let opts = EngineOptions::from_config(self.config());
        server_active(server, sc, self.config(), &opts, resolver)
    }
}

impl Enforcer {
    /// Builds `server`'s policy exactly as a start would (resolve, verify
    /// signatures, the bundle's own tests, lint, compile) but without an
    /// enforcer around it — no decision log opened, no state store: what
    /// `gavel bundle pull --server` checks before it fills the cache.
    /// Returns the policy version, or why it is unusable.
    pub fn check_server(
        config: &Config,
        server: &str,
        resolver: &dyn Resolve,
    ) -> anyhow::Result<String> {
        let active = match super::persona::build_in(config, server, resolver) {
            // A persona target `SERVER@PERSONA`: that persona's policy.
            Some(built) => built?,
            None => {
                let sc = config
                    .servers
                    .get(server)
                    .ok_or_else(|| anyhow::anyhow!("no [servers.{server}] in the config"))?;
                let opts = EngineOptions::from_config(config);
                server_active(server, sc, config, &opts, resolver)?
            }
        };
        if let Some(ShadowPolicy::Unavailable(why)) = &active.shadow {
            anyhow::bail!("its shadow policy: {why}");
        }
        match active.policy {
            Policy::Unavailable(why) => Err(anyhow::anyhow!(why)),
            Policy::Rego(e) => Ok(e.policy_version().to_string()),
            Policy::None => Ok("none".into()),
        }
    }
}

impl Enforcer {
    /// The operator's `bundle_roles` entry for a bundle reference of `owner`
    /// (a server, a persona's owner, or [`SHARED_OWNER`]).
    pub fn bundle_role(&self, owner: &str, reference: &str) -> Option<&crate::config::BundleRole> {
        if let Some(role) = super::persona::bundle_role(self.config(), owner, reference) {
            role
        } else if owner == SHARED_OWNER {
            self.config().policy.bundle_roles.get(reference)
        } else {
            self.config()
                .servers
                .get(owner)
                .and_then(|s| s.bundle_roles.get(reference))
        }
    }
}

impl Active {
    /// The key id that verified the active bundle named `bundle`, if it was
    /// signed (per bundle: a server's layers can have different signers).
    pub fn signer(&self, bundle: &str) -> Option<String> {
        self.signers
            .iter()
            .find(|(n, _)| n == bundle)
            .map(|(_, k)| k.clone())
    }
}

/// What building one server's policy reads: the server, the whole config
/// (shared bundles, `[policy]` keys and roles) and where bundles come from.
struct Building<'a> {
    name: &'a str,
    server: &'a ServerConfig,
    config: &'a Config,
    resolver: &'a dyn Resolve,
    /// The persona whose policy this is (its bundles added), if any.
    persona: Option<&'a crate::config::Persona>,
    /// The `[policy]` keys, as the signing settings shared bundles use.
    shared_signing: crate::config::BundleSigning,
}

pub(super) fn server_active(
    name: &str,
    server: &ServerConfig,
    config: &Config,
    opts: &EngineOptions,
    resolver: &dyn Resolve,
) -> anyhow::Result<Active> {
    policy_active(name, server, None, config, opts, resolver)
}

/// Server `name`'s policy, with `persona`'s bundles as layers between the
/// server's and the shared ones when given (`policy/persona.rs`).
pub(super) fn policy_active(
    name: &str,
    server: &ServerConfig,
    persona: Option<&crate::config::Persona>,
    config: &Config,
    opts: &EngineOptions,
    resolver: &dyn Resolve,
) -> anyhow::Result<Active> {
    let mut signers = Vec::new();
    let persona_bundles = persona.map(|p| p.bundles.as_slice()).unwrap_or_default();
    let persona_owner = persona.map(|p| super::persona::owner(&p.name));
    if server.bundles.is_empty()
        && persona_bundles.is_empty()
        && config.policy.shared_bundles.is_empty()
    {
        if config.policy.require_bundle && server.enabled {
            anyhow::bail!(
                "server {name:?} has no policy bundle and [policy] require_bundle = true: add servers.{name}.bundle"
            );
        }
        if server.enabled {
            tracing::warn!(server = %name, "no policy bundle: static rules only (decisions logged with policy \"none\")");
        }
        return Ok(Active {
            policy: Policy::None,
            signers,
            shadow: None,
        });
    }
    let building = Building {
        name,
        server,
        config,
        resolver,
        persona,
        shared_signing: crate::config::BundleSigning {
            keys: config.policy.keys.clone(),
            exclude_files: vec![],
            require_signature: true,
        },
    };
    let mut live = Vec::new();
    let built = (|| {
        let persona_owner = persona_owner.as_deref().unwrap_or_default();
        let refs = server
            .bundles
            .iter()
            .map(|r| (name, r))
            .chain(persona_bundles.iter().map(|r| (persona_owner, r)))
            .chain(
                config
                    .policy
                    .shared_bundles
                    .iter()
                    .map(|r| (SHARED_OWNER, r)),
            );
        live = building.load_all(refs, &mut signers)?;
        PolicyEngine::build(name, live.clone(), opts).map_err(|e| e.to_string())
    })();
    let policy = match built {
        Ok(engine) => {
            for w in engine.warnings() {
                tracing::warn!(server = %name, "policy lint: {w}");
            }
            tracing::info!(server = %name, persona = ?persona.map(|p| &p.name), policy = %engine.policy_version(), "policy loaded");
            Policy::Rego(Arc::new(engine))
        }
        Err(e) => {
            tracing::error!(server = %name, persona = ?persona.map(|p| &p.name), "policy unavailable, every request to this server is denied: {e}");
            Policy::Unavailable(e)
        }
    };
    // A shadow needs a live Rego policy to be compared with.
    let shadow = match &policy {
        Policy::Rego(engine) => building.shadow(opts, live, engine),
        _ => None,
    };
    Ok(Active {
        policy,
        signers,
        shadow,
    })
}

impl Building<'_> {
    /// The bundles `refs` name, in order, each loaded by [`Building::load_one`];
    /// the signers of those that verified are added to `signers`.
    fn load_all<'r>(
        &self,
        refs: impl Iterator<Item = (&'r str, &'r String)>,
        signers: &mut Vec<(String, String)>,
    ) -> Result<Vec<Arc<Bundle>>, String> {
        let mut bundles = Vec::new();
        for (owner, r) in refs {
            let (b, signer) = self.load_one(owner, r).map_err(|e| {
                if owner == SHARED_OWNER {
                    format!("shared bundle {e}")
                } else if let Some(p) = super::persona::persona_of_owner(owner) {
                    format!("persona {p:?}: {e}")
                } else {
                    e
                }
            })?;
            if let Some(keyid) = signer {
                signers.push((b.name.clone(), keyid));
            }
            bundles.push(b);
        }
        Ok(bundles)
    }

    /// The shadow policy (`shadow_bundles`, `[policy] shared_shadow_bundles`;
    /// `decision::shadow`): the live bundles with each shadow bundle in place
    /// of the live one of the same name (directory or file name, as `gavel
    /// replay --config` replaces), or beside them. Loaded like live bundles
    /// (signatures under the same keys, roles, a registry bundle's own
    /// tests); a shadow that cannot be built is unavailable and logged —
    /// the live policy is untouched.
    /// The shadow takes from the live evaluation the values of the layers
    /// both share (`engine::lend`), so it evaluates only its own bundles.
    fn shadow(
        &self,
        opts: &EngineOptions,
        live: Vec<Arc<Bundle>>,
        live_engine: &PolicyEngine,
    ) -> Option<ShadowPolicy> {
        let (name, server, config) = (self.name, self.server, self.config);
        if server.shadow_bundles.is_empty() && config.policy.shared_shadow_bundles.is_empty() {
            return None;
        }
        let refs = server.shadow_bundles.iter().map(|r| (name, r)).chain(
            config
                .policy
                .shared_shadow_bundles
                .iter()
                .map(|r| (SHARED_OWNER, r)),
        );
        let built = self.load_all(refs, &mut Vec::new()).and_then(|shadows| {
            let mut bundles = live;
            for b in shadows {
                match bundles.iter().position(|l| l.name == b.name) {
                    Some(i) => bundles[i] = b,
                    None => bundles.push(b),
                }
            }
            let mut engine = PolicyEngine::build(name, bundles, opts).map_err(|e| e.to_string())?;
            engine.borrow_from(live_engine);
            Ok(engine)
        });
        Some(match built {
            Ok(engine) => {
                tracing::info!(server = %name, shadow = %engine.policy_version(), "shadow policy loaded (evaluated beside the live one, never deciding)");
                ShadowPolicy::Rego(Arc::new(engine))
            }
            Err(e) => {
                tracing::error!(server = %name, "shadow policy unavailable, no shadow evaluation (the live policy is not affected): {e}");
                ShadowPolicy::Unavailable(e)
            }
        })
    }
}

impl Building<'_> {
    /// One bundle of server `name`'s policy, in the order that keeps untrusted
    /// bytes away from the parsers: its files are read (bounded, nesting
    /// pre-scanned, nothing parsed), its signature verified under the keys that
    /// apply, and only then is it parsed, bound to what the operator says it is
    /// for (`bind`) and — from a registry — made to pass its own tests. Returns
    /// the bundle and the key id that verified it.
    fn load_one(&self, owner: &str, r: &str) -> Result<(Arc<Bundle>, Option<String>), String> {
        let (name, server, config) = (self.name, self.server, self.config);
        let raw = self.resolver.resolve(owner, r)?;
        let oci = r.starts_with("oci://");
        let shared = owner == SHARED_OWNER;
        // Everything a server names is verified with its keys. Shared
        // bundles: with the [policy] keys when those are set; else with
        // the server's own keys when it lists any or the bundle comes
        // from a registry (a server that trusts signers never runs an
        // unsigned bundle); only a local shared bundle for a server
        // without keys is taken as it is.
        let signing = if !shared {
            Some((&server.signing, format!("servers.{name}")))
        } else if !config.policy.keys.is_empty() {
            Some((&self.shared_signing, "policy".to_string()))
        } else if oci || !server.signing.keys.is_empty() {
            Some((&server.signing, format!("servers.{name}")))
        } else {
            None
        };
        let signer = match signing {
            Some((signing, whose)) => verify_signature(&raw, signing, &whose, config)?,
            None => None,
        };
        let mut b = raw.parse().map_err(|e| e.to_string())?;
        let (table, role) = match self.persona {
            _ if shared => (
                "policy".to_string(),
                config
                    .policy
                    .bundle_roles
                    .get(r)
                    .map(std::borrow::Cow::Borrowed),
            ),
            Some(p) if super::persona::persona_of_owner(owner).is_some() => {
                super::persona::role(p, r, oci)
            }
            _ => (
                format!("servers.{name}"),
                server.bundle_roles.get(r).map(std::borrow::Cow::Borrowed),
            ),
        };
        super::bind::bind(
            &mut b,
            &super::bind::Place {
                table,
                server: name,
                shared,
                oci,
                reference: r,
                role: role.as_deref(),
            },
        )?;
        let b = Arc::new(b);
        if oci {
            own_tests_pass(&b)?;
        }
        Ok((b, signer))
    }
}

/// A bundle that ships `test_*` rules must pass them before it decides
/// anything (like a CI gate, at activation).
fn own_tests_pass(b: &Bundle) -> Result<(), String> {
    let report = crate::bundle::testrun::run_tests(b).map_err(|e| e.to_string())?;
    if report.failed() > 0 {
        let failed: Vec<String> = report
            .results
            .iter()
            .filter(|r| {
                matches!(
                    r.outcome,
                    crate::bundle::testrun::Outcome::Fail | crate::bundle::testrun::Outcome::Error
                )
            })
            .map(|r| format!("{} ({})", r.full_name(), r.why()))
            .collect();
        return Err(format!(
            "bundle {}: {} of its own {} tests fail: {}",
            b.source,
            report.failed(),
            report.results.len(),
            failed.join(", ")
        ));
    }
    Ok(())
}

/// Verifies a bundle's signature under the trusted keys of `signing`
/// (`whose`: the config table they come from, `servers.NAME` or `policy`,
/// for messages), before the bundle is used at all.
pub(super) fn verify_signature(
    b: &crate::bundle::RawBundle,
    signing: &crate::config::BundleSigning,
    whose: &str,
    config: &Config,
) -> Result<Option<String>, String> {
    use crate::bundle::verify::{VerificationConfig, VerificationKey, verify_raw};
    let s = signing;
    let cfg = (!s.keys.is_empty()).then(|| VerificationConfig {
        keys: s
            .keys
            .iter()
            .filter_map(|k| {
                config.keys.get(k).map(|kc| {
                    (
                        k.clone(),
                        VerificationKey {
                            algorithm: kc.algorithm.clone(),
                            key: kc.material.clone(),
                            scope: kc.scope.clone(),
                        },
                    )
                })
            })
            .collect(),
        exclude_files: s.exclude_files.clone(),
        ..Default::default()
    });
    if b.signatures().is_some() && cfg.is_none() {
        return Err(format!(
            "bundle {} is signed but {whose}.keys names no key to verify it",
            b.source
        ));
    }
    match verify_raw(b, cfg.as_ref(), "") {
        Ok(Some(v)) => {
            tracing::info!(keys = %whose, bundle = %b.name, keyid = %v.keyid, "bundle signature verified");
            Ok(Some(v.keyid))
        }
        Ok(None) if s.require_signature => Err(format!(
            "bundle {} is not signed and {whose} requires a signature ({})",
            b.source,
            if s.keys.is_empty() {
                "require_signature".to_string()
            } else {
                format!("keys {}", s.keys.join(", "))
            }
        )),
        Ok(None) => Ok(None),
        Err(e) => Err(format!(
            "bundle {} failed signature verification: {e}",
            b.source
        )),
    }
}

#[cfg(test)]
#[path = "build_tests.rs"]
mod tests;
