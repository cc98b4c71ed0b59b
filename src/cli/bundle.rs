//! `gavel bundle build|sign|verify|inspect`: the local bundle tooling (the
//! registry commands, `push`/`pull`, are in `cli::oci`; `gavel test` is
//! `cli::test`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::bundle::{load_bundle, sign, verify};

use super::{BundleCommand, say};

fn read_key(path: &Path) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading key {}", path.display()))?
        .trim_end_matches('\n')
        .to_string())
}

/// The key file of `--key`, checked for `algorithm` (an HMAC secret must
/// be as long as its hash).
fn read_secret(key: &Path, algorithm: &str) -> anyhow::Result<String> {
    let secret = read_key(key)?;
    crate::config::check_hmac_secret(algorithm, secret.as_bytes())
        .map_err(|why| anyhow::anyhow!("--key {}: {why}", key.display()))?;
    Ok(secret)
}

pub fn bundle_command(command: BundleCommand) -> anyhow::Result<()> {
    match command {
        BundleCommand::Build {
            dir,
            output,
            revision,
        } => {
            let digest = sign::build_tarball(&dir, &output, revision.as_deref())?;
            say(format!("built {} ({digest})", output.display()));
            Ok(())
        }
        BundleCommand::Sign {
            bundle,
            key,
            algorithm,
            keyid,
            scope,
        } => sign_command(
            &bundle,
            &key,
            &algorithm,
            keyid.as_deref(),
            scope.as_deref(),
        ),
        BundleCommand::Verify(args) => verify_command(args),
        BundleCommand::Inspect { bundle } => inspect(&bundle),
        BundleCommand::Push { .. } | BundleCommand::Pull { .. } => {
            unreachable!("registry commands are async: dispatched to cli::oci")
        }
    }
}

/// `gavel bundle sign`.
fn sign_command(
    bundle: &Path,
    key: &Path,
    algorithm: &str,
    keyid: Option<&str>,
    scope: Option<&str>,
) -> anyhow::Result<()> {
    let secret = read_secret(key, algorithm)?;
    match sign::sign_bundle(bundle, algorithm, &secret, keyid, scope)? {
        None => say(format!(
            "signed {} (wrote .signatures.json)",
            bundle.display()
        )),
        Some(digest) => say(format!(
            "signed {} (.signatures.json inside; now {digest})",
            bundle.display()
        )),
    }
    Ok(())
}

// `gavel bundle verify`'s arguments (the command's help is the `Verify`
// variant's doc).
#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    pub bundle: PathBuf,
    #[arg(long)]
    pub key: PathBuf,
    #[arg(long, default_value = "RS256")]
    pub algorithm: String,
    /// Key id to use (default: the token's `kid`).
    #[arg(long, default_value = "")]
    pub keyid: String,
    #[arg(long, default_value = "")]
    pub scope: String,
    #[arg(long)]
    pub exclude: Vec<String>,
}

/// `gavel bundle verify`: the signature checked with one key, as a server
/// trusting that key would check it.
fn verify_command(a: VerifyArgs) -> anyhow::Result<()> {
    let b = load_bundle(&a.bundle, &Default::default())?;
    let id = if a.keyid.is_empty() {
        "default".to_string()
    } else {
        a.keyid.clone()
    };
    let mut cfg = verify::VerificationConfig {
        keyid: a.keyid.clone(),
        scope: a.scope,
        exclude_files: a.exclude,
        ..Default::default()
    };
    let secret = read_secret(&a.key, &a.algorithm)?;
    let vk = verify::VerificationKey {
        algorithm: a.algorithm,
        key: secret,
        scope: None,
    };
    cfg.keys.insert(id, vk.clone());
    // Without --keyid the token's kid picks the key: register it under that id too.
    if a.keyid.is_empty()
        && let Some(kid) = signed_kid(&b)
    {
        cfg.keys.insert(kid, vk);
    }
    match verify::verify_bundle(&b, Some(&cfg), "")? {
        Some(v) => say(format!(
            "verified {}: keyid {:?}, scope {:?}, {} files",
            a.bundle.display(),
            v.keyid,
            v.scope,
            b.files.len()
        )),
        None => anyhow::bail!("{} is not signed", a.bundle.display()),
    }
    Ok(())
}

/// `gavel bundle inspect`: manifest, digest, files and signature, as JSON.
fn inspect(bundle: &Path) -> anyhow::Result<()> {
    let b = load_bundle(bundle, &Default::default())?;
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
