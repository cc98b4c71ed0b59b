//! Building one server's policy: resolve each bundle reference, verify its
//! signature under the server's trusted keys, run the bundle's own tests (for
//! bundles pulled from a registry), lint and compile into one engine. Used at
//! start and, off to the side of the running engine, on every hot reload.

use std::sync::Arc;

use super::engine::{EngineOptions, PolicyEngine};
use super::{Active, Policy};
use crate::bundle::Bundle;
use crate::bundle::source::{Resolve, SHARED_OWNER};
use crate::config::{Config, ServerConfig};

impl super::Enforcer {
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
        let sc = config
            .servers
            .get(server)
            .ok_or_else(|| anyhow::anyhow!("no [servers.{server}] in the config"))?;
        let opts = EngineOptions {
            eval_timeout: config.policy.eval_timeout,
            strict_input: config.policy.strict_input,
        };
        match server_active(server, sc, config, &opts, resolver)?.policy {
            Policy::Unavailable(why) => Err(anyhow::anyhow!(why)),
            Policy::Rego(e) => Ok(e.policy_version().to_string()),
            Policy::None => Ok("none".into()),
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

pub(super) fn server_active(
    name: &str,
    server: &ServerConfig,
    config: &Config,
    opts: &EngineOptions,
    resolver: &dyn Resolve,
) -> anyhow::Result<Active> {
    let mut signers = Vec::new();
    if server.bundles.is_empty() && config.policy.shared_bundles.is_empty() {
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
        });
    }
    let shared_signing = crate::config::BundleSigning {
        keys: config.policy.keys.clone(),
        exclude_files: vec![],
        require_signature: true,
    };
    let built = (|| {
        let mut bundles = Vec::new();
        let refs = server.bundles.iter().map(|r| (name, r)).chain(
            config
                .policy
                .shared_bundles
                .iter()
                .map(|r| (SHARED_OWNER, r)),
        );
        for (owner, r) in refs {
            let b = resolver.resolve(owner, r).map_err(|e| {
                if owner == SHARED_OWNER {
                    format!("shared bundle {e}")
                } else {
                    e
                }
            })?;
            let oci = r.starts_with("oci://");
            // Everything a server names is verified with its keys. Shared
            // bundles: with the [policy] keys when those are set; else with
            // the server's own keys when it lists any or the bundle comes
            // from a registry (a server that trusts signers never runs an
            // unsigned bundle); only a local shared bundle for a server
            // without keys is taken as it is.
            let signing = if owner != SHARED_OWNER {
                Some((&server.signing, format!("servers.{name}")))
            } else if !config.policy.keys.is_empty() {
                Some((&shared_signing, "policy".to_string()))
            } else if oci || !server.signing.keys.is_empty() {
                Some((&server.signing, format!("servers.{name}")))
            } else {
                None
            };
            if let Some((signing, whose)) = signing
                && let Some(keyid) = verify_signature(&b, signing, &whose, config)?
            {
                signers.push((b.name.clone(), keyid));
            }
            if oci {
                own_tests_pass(&b)?;
            }
            bundles.push(b);
        }
        PolicyEngine::build(name, bundles, opts).map_err(|e| e.to_string())
    })();
    let policy = match built {
        Ok(engine) => {
            for w in engine.warnings() {
                tracing::warn!(server = %name, "policy lint: {w}");
            }
            tracing::info!(server = %name, policy = %engine.policy_version(), "policy loaded");
            Policy::Rego(Arc::new(engine))
        }
        Err(e) => {
            tracing::error!(server = %name, "policy unavailable, every request to this server is denied: {e}");
            Policy::Unavailable(e)
        }
    };
    Ok(Active { policy, signers })
}

/// A bundle that ships `test_*` rules must pass them before it decides
/// anything (like a CI gate, at activation).
fn own_tests_pass(b: &Bundle) -> Result<(), String> {
    let report = crate::bundle::testrun::run_tests(b).map_err(|e| e.to_string())?;
    if report.failed() > 0 {
        let failed: Vec<String> = report
            .results
            .iter()
            .filter(|r| !r.passed)
            .map(|r| format!("{} ({})", r.name, r.error.as_deref().unwrap_or("false")))
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
    b: &Bundle,
    signing: &crate::config::BundleSigning,
    whose: &str,
    config: &Config,
) -> Result<Option<String>, String> {
    use crate::bundle::verify::{VerificationConfig, VerificationKey, verify_bundle};
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
    if b.signatures.is_some() && cfg.is_none() {
        return Err(format!(
            "bundle {} is signed but {whose}.keys names no key to verify it",
            b.source
        ));
    }
    match verify_bundle(b, cfg.as_ref(), "") {
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
