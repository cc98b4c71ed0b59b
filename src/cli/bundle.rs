//! `gavel bundle build|sign|verify|inspect` and `gavel test`: the local
//! bundle tooling (the registry commands, `push`/`pull`, are in `cli::oci`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{BundleCommand, say};

fn read_key(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading key {}", path.display()))?
        .trim_end_matches('\n')
        .to_string())
}

pub fn bundle_command(command: BundleCommand) -> anyhow::Result<()> {
    use crate::bundle::{load_bundle, sign, verify};
    match command {
        BundleCommand::Build {
            dir,
            output,
            revision,
        } => {
            let digest = sign::build_tarball(&dir, &output, revision.as_deref())?;
            say(format!("built {} ({digest})", output.display()));
        }
        BundleCommand::Sign {
            bundle,
            key,
            algorithm,
            keyid,
            scope,
        } => {
            let secret = read_key(&key)?;
            crate::config::check_hmac_secret(&algorithm, secret.as_bytes())
                .map_err(|why| anyhow::anyhow!("--key {}: {why}", key.display()))?;
            match sign::sign_bundle(
                &bundle,
                &algorithm,
                &secret,
                keyid.as_deref(),
                scope.as_deref(),
            )? {
                None => say(format!(
                    "signed {} (wrote .signatures.json)",
                    bundle.display()
                )),
                Some(digest) => say(format!(
                    "signed {} (.signatures.json inside; now {digest})",
                    bundle.display()
                )),
            }
        }
        BundleCommand::Verify {
            bundle,
            key,
            algorithm,
            keyid,
            scope,
            exclude,
        } => {
            let b = load_bundle(&bundle, &Default::default())?;
            let id = if keyid.is_empty() {
                "default".to_string()
            } else {
                keyid.clone()
            };
            let mut cfg = verify::VerificationConfig {
                keyid: keyid.clone(),
                scope,
                exclude_files: exclude,
                ..Default::default()
            };
            let secret = read_key(&key)?;
            crate::config::check_hmac_secret(&algorithm, secret.as_bytes())
                .map_err(|why| anyhow::anyhow!("--key {}: {why}", key.display()))?;
            let vk = verify::VerificationKey {
                algorithm,
                key: secret,
                scope: None,
            };
            cfg.keys.insert(id, vk.clone());
            // Without --keyid the token's kid picks the key: register it under that id too.
            if keyid.is_empty()
                && let Some(kid) = signed_kid(&b)
            {
                cfg.keys.insert(kid, vk);
            }
            match verify::verify_bundle(&b, Some(&cfg), "")? {
                Some(v) => say(format!(
                    "verified {}: keyid {:?}, scope {:?}, {} files",
                    bundle.display(),
                    v.keyid,
                    v.scope,
                    b.files.len()
                )),
                None => anyhow::bail!("{} is not signed", bundle.display()),
            }
        }
        BundleCommand::Inspect { bundle } => {
            let b = load_bundle(&bundle, &Default::default())?;
            let info = serde_json::json!({
                "source": b.source,
                "digest": b.digest,
                "revision": b.manifest.revision,
                "roots": b.manifest.roots,
                "metadata": b.manifest.metadata,
                "modules": b.modules.iter().map(|m| &m.path).collect::<Vec<_>>(),
                "files": b.files.iter().map(|f| serde_json::json!({"path": f.path, "bytes": f.bytes.len()})).collect::<Vec<_>>(),
                "signed": b.signatures.is_some(),
                "signature_kid": signed_kid(&b),
            });
            say(serde_json::to_string_pretty(&info)?);
        }
        BundleCommand::Push { .. } | BundleCommand::Pull { .. } => {
            unreachable!("registry commands are async: dispatched to cli::oci")
        }
    }
    Ok(())
}

/// The `kid` header of a bundle's signature (unverified: for display and key choice).
fn signed_kid(b: &crate::bundle::Bundle) -> Option<String> {
    use base64::Engine as _;
    let raw: serde_json::Value = serde_json::from_slice(b.signatures.as_ref()?).ok()?;
    let token = raw["signatures"].get(0)?.as_str()?;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(token.split('.').next()?)
        .ok()?;
    let h: serde_json::Value = serde_json::from_slice(&header).ok()?;
    h["kid"].as_str().map(String::from)
}

pub fn test_bundles(paths: &[PathBuf]) -> anyhow::Result<()> {
    let mut failed = 0;
    let mut passed = 0;
    for p in paths {
        let bundle = crate::bundle::load_bundle(p, &crate::bundle::BundleLimits::default())?;
        let lint = crate::bundle::lint::lint(&bundle, false)?;
        for w in &lint.warnings {
            println!("WARN {w}"); // stdout-ok
        }
        for e in &lint.errors {
            println!("FAIL lint {e}"); // stdout-ok
        }
        failed += lint.errors.len();
        let report = crate::bundle::testrun::run_tests(&bundle)?;
        for r in &report.results {
            match &r.error {
                None => println!("PASS {} ({})", r.name, r.file), // stdout-ok
                Some(e) => println!("FAIL {} ({}): {e}", r.name, r.file), // stdout-ok
            }
        }
        passed += report.passed();
        failed += report.failed();
    }
    println!("{passed} passed, {failed} failed"); // stdout-ok
    if failed > 0 {
        anyhow::bail!("{failed} policy test(s) failed");
    }
    if passed == 0 {
        anyhow::bail!("no test_* rules found");
    }
    Ok(())
}
