//! `gavel bundle push` / `gavel bundle pull`: the registry end of the policy
//! loop (build → sign → push → pin). Registry settings come from `--config`
//! (`[oci]`, `[oci.registries.*]`) and `--insecure`; credentials as for
//! `gavel run` (see `bundle::oci::auth`).

use std::path::{Path, PathBuf};

use anyhow::Context;

use super::{BundleCommand, say};
use crate::bundle::oci::{OciRef, Registry};
use crate::config::{Config, OciSettings, RegistrySettings};

#[derive(clap::Args, Debug)]
pub struct RegistryArgs {
    /// Plain HTTP to this registry (a local test registry); TLS otherwise.
    #[arg(long)]
    pub insecure: bool,
    /// Use `[oci]` settings (registries, timeouts, limits) from this config.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

fn settings(args: &RegistryArgs, r: &OciRef) -> anyhow::Result<OciSettings> {
    let mut s = match &args.config {
        Some(p) => Config::load(p).map_err(|e| anyhow::anyhow!("{e}"))?.oci,
        None => OciSettings::default(),
    };
    if args.insecure {
        s.registries
            .entry(r.registry.clone())
            .or_insert_with(RegistrySettings::default)
            .insecure = true;
    }
    Ok(s)
}

/// A `.tar.gz` as is; a directory packed like `gavel bundle build`.
fn tarball(path: &Path) -> anyhow::Result<(Vec<u8>, String)> {
    if path.is_dir() {
        let tmp = tempfile_path();
        crate::bundle::sign::build_tarball(path, &tmp, None)?;
        let bytes = std::fs::read(&tmp);
        let _ = std::fs::remove_file(&tmp);
        return Ok((bytes?, "bundle.tar.gz".into()));
    }
    let bytes = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
    // Refuse what gavel itself would refuse on pull, before it is published.
    crate::bundle::load_bundle_tar_gz(
        "bundle",
        &path.display().to_string(),
        &bytes,
        &Default::default(),
    )?;
    let title = path
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "bundle.tar.gz".into());
    Ok((bytes, title))
}

fn tempfile_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "gavel-push-{}-{}.tar.gz",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ))
}

pub async fn run(command: BundleCommand) -> anyhow::Result<()> {
    match command {
        BundleCommand::Push {
            bundle,
            reference,
            registry,
        } => {
            let r = OciRef::parse(&reference)?;
            let reg = Registry::new(&settings(&registry, &r)?).map_err(|e| anyhow::anyhow!(e))?;
            let (bytes, title) = tarball(&bundle)?;
            let digest = reg.push(&r, &bytes, &title).await?;
            say(format!("pushed {} to {r}", bundle.display()));
            say(format!(
                "pin it: bundle = \"oci://{}/{}@{digest}\"",
                r.registry, r.repository
            ));
        }
        BundleCommand::Pull {
            reference,
            output,
            registry,
        } => {
            let r = OciRef::parse(&reference)?;
            let reg = Registry::new(&settings(&registry, &r)?).map_err(|e| anyhow::anyhow!(e))?;
            let resolved = reg.resolve(&r).await?;
            let bytes = reg.fetch(&r, &resolved.layer).await?;
            let b = crate::bundle::source::bundle_from_layer(&r, &bytes)
                .map_err(|e| anyhow::anyhow!(e))?;
            crate::bundle::oci::cache::write_atomic(&output, &bytes)?;
            say(format!(
                "pulled {r} (manifest {}, layer {}, revision {:?}) to {}",
                resolved.manifest_digest,
                resolved.layer.digest,
                b.manifest.revision,
                output.display()
            ));
            say(
                "its signature is not checked here: run `gavel bundle verify` with the key you trust",
            );
        }
        _ => unreachable!("only push and pull are dispatched here"),
    }
    Ok(())
}
