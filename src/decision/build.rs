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
            // Local shared bundles are trusted as before; everything a server
            // names, and everything from a registry, is verified.
            if (owner != SHARED_OWNER || oci)
                && let Some(keyid) = verify_signature(&b, name, server, config)?
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

/// Verifies a bundle's signature under the server's trusted keys, before the
/// bundle is used at all.
pub(super) fn verify_signature(
    b: &Bundle,
    server: &str,
    sc: &crate::config::ServerConfig,
    config: &Config,
) -> Result<Option<String>, String> {
    use crate::bundle::verify::{VerificationConfig, VerificationKey, verify_bundle};
    let s = &sc.signing;
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
            "bundle {} is signed but servers.{server}.keys names no key to verify it",
            b.source
        ));
    }
    match verify_bundle(b, cfg.as_ref(), "") {
        Ok(Some(v)) => {
            tracing::info!(server = %server, bundle = %b.name, keyid = %v.keyid, "bundle signature verified");
            Ok(Some(v.keyid))
        }
        Ok(None) if s.require_signature => Err(format!(
            "bundle {} is not signed and servers.{server}.require_signature is true",
            b.source
        )),
        Ok(None) => Ok(None),
        Err(e) => Err(format!(
            "bundle {} failed signature verification: {e}",
            b.source
        )),
    }
}
