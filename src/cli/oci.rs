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

/// `bundle pull --server`: builds the server's policy with the pulled layer
/// in place of its configured reference, exactly as a start would (its
/// keys, the bundle's own tests, lint, compile), and only then stores it in
/// the cache under the same (server, ref) a start looks up.
fn store_verified(
    config: &Path,
    server: &str,
    r: &OciRef,
    manifest_digest: &str,
    bytes: Vec<u8>,
) -> anyhow::Result<()> {
    use crate::policy::source::{Offline, Resolve, SHARED_OWNER, raw_from_layer};
    let cfg = Config::load(config).map_err(|e| anyhow::anyhow!("{e}"))?;
    let sc = cfg
        .servers
        .get(server)
        .ok_or_else(|| anyhow::anyhow!("{} has no [servers.{server}]", config.display()))?;
    let wanted = r.to_string();
    // A persona's bundle is checked in that persona's policy for the server.
    let persona = cfg
        .personas
        .reaching(server)
        .find(|p| p.bundles.contains(&wanted));
    let (owner, checked) = if sc.bundles.contains(&wanted) || sc.shadow_bundles.contains(&wanted) {
        (server.to_string(), server.to_string())
    } else if cfg.policy.shared_bundles.contains(&wanted)
        || cfg.policy.shared_shadow_bundles.contains(&wanted)
    {
        (SHARED_OWNER.to_string(), server.to_string())
    } else if let Some(p) = persona {
        (
            crate::policy::persona::owner(&p.name),
            crate::decision::persona::target(server, &p.name),
        )
    } else {
        anyhow::bail!(
            "{wanted} is not a bundle of server {server:?} in {} (servers.{server}.bundle(s) or shadow_bundles, [policy] shared_bundles or shared_shadow_bundles, or a persona's bundles): a start would never use it",
            config.display()
        );
    };
    let owner = owner.as_str();
    struct WithLayer<'a> {
        owner: &'a str,
        reference: &'a str,
        r: &'a OciRef,
        bytes: &'a [u8],
        rest: Offline,
    }
    impl Resolve for WithLayer<'_> {
        fn resolve(
            &self,
            owner: &str,
            reference: &str,
        ) -> Result<std::sync::Arc<crate::bundle::RawBundle>, String> {
            if owner == self.owner && reference == self.reference {
                return raw_from_layer(self.r, self.bytes).map(std::sync::Arc::new);
            }
            self.rest.resolve(owner, reference)
        }
    }
    let cache = crate::bundle::oci::cache::Cache::new(&cfg.oci.cache_root());
    let resolver = WithLayer {
        owner,
        reference: &wanted,
        r,
        bytes: &bytes,
        rest: Offline::new(Some(cache.clone())).with_config(Some(config.to_path_buf())),
    };
    let version =
        crate::decision::Enforcer::check_server(&cfg, &checked, &resolver).map_err(|e| {
            anyhow::anyhow!(
                "not stored in the bundle cache: server {server:?} would refuse it: {e}"
            )
        })?;
    cache.store(owner, &wanted, manifest_digest, &bytes)?;
    say(format!(
        "verified for server {server:?} (policy {version}) and stored in the bundle cache ({}): gavel starts from it when the registry is unreachable",
        cfg.oci.cache_root().display()
    ));
    Ok(())
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
            server,
            registry,
        } => {
            let r = OciRef::parse(&reference)?;
            let reg = Registry::new(&settings(&registry, &r)?).map_err(|e| anyhow::anyhow!(e))?;
            let resolved = reg.resolve(&r).await?;
            let bytes = reg.fetch(&r, &resolved.layer).await?;
            let b = crate::policy::source::bundle_from_layer(&r, &bytes)
                .map_err(|e| anyhow::anyhow!(e))?;
            if let Some(output) = &output {
                crate::atomic_file::write(output, &bytes)
                    .with_context(|| format!("writing {}", output.display()))?;
            }
            say(format!(
                "pulled {r} (manifest {}, layer {}, revision {:?}){}",
                resolved.manifest_digest,
                resolved.layer.digest,
                b.manifest.revision,
                output
                    .as_ref()
                    .map(|o| format!(" to {}", o.display()))
                    .unwrap_or_default()
            ));
            match (server, &registry.config) {
                (Some(server), Some(config)) => {
                    store_verified(config, &server, &r, &resolved.manifest_digest, bytes)?
                }
                _ => say(
                    "its signature is not checked here: run `gavel bundle verify` with the key you trust, or pull with --config and --server to verify it as that server does and fill the bundle cache",
                ),
            }
        }
        _ => unreachable!("only push and pull are dispatched here"),
    }
    Ok(())
}
