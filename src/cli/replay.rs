//! `gavel replay`: the command-line side of `governance::replay`.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, bail};

use crate::bundle::{Bundle, BundleLimits, load_bundle};
use crate::config::Config;
use crate::decision::engine::EngineOptions;
use crate::governance::replay::{Bundles, Replayer, Summary, render};

pub struct Args {
    pub log: PathBuf,
    pub bundles: Vec<String>,
    pub config: Option<PathBuf>,
    pub server: Option<String>,
    /// Only the records of this persona, with its layers (with --config).
    pub persona: Option<String>,
    pub fail_on_flip: Option<u64>,
    pub max_not_replayable: Option<u64>,
    pub json: bool,
}

/// A local bundle, or an `oci://` one pulled now with the config's `[oci]`.
fn load(r: &str, oci: &crate::config::OciSettings) -> anyhow::Result<Arc<Bundle>> {
    if r.starts_with("oci://") {
        return crate::policy::source::pull_now(r, oci)
            .map_err(|e| anyhow::anyhow!("candidate bundle {e}"));
    }
    load_bundle(Path::new(r), &BundleLimits::default())
        .map(Arc::new)
        .with_context(|| format!("candidate bundle {r}"))
}

pub fn run(a: Args) -> anyhow::Result<()> {
    let cfg = a
        .config
        .as_ref()
        .map(|p| super::load_config(p))
        .transpose()?;
    let oci = cfg.as_ref().map(|c| c.oci.clone()).unwrap_or_default();
    let candidates: Vec<Arc<Bundle>> = a
        .bundles
        .iter()
        .map(|b| load(b, &oci))
        .collect::<Result<_, _>>()?;
    let (bundles, opts) = match (&a.config, &cfg) {
        (Some(path), Some(cfg)) => configured(&a, path, cfg, candidates)?,
        _ => candidates_only(candidates)?,
    };
    let summary = replay(&a, bundles, opts)?;
    report(&a, &summary)?;
    gate(&a, &summary)
}

/// Without `--config`: the candidates are the whole policy.
fn candidates_only(candidates: Vec<Arc<Bundle>>) -> anyhow::Result<(Bundles, EngineOptions)> {
    if candidates.is_empty() {
        bail!(
            "give the candidate policy with --bundle (repeat for layers), or --config servers.toml to replay the configured bundles"
        );
    }
    Ok((
        Bundles::Only(candidates),
        EngineOptions {
            eval_timeout: std::time::Duration::from_secs(1),
            strict_input: false,
        },
    ))
}

/// With `--config`: each server's configured layers, a candidate replacing
/// the configured bundle of the same name (and every candidate must
/// replace one).
fn configured(
    a: &Args,
    path: &Path,
    cfg: &Config,
    candidates: Vec<Arc<Bundle>>,
) -> anyhow::Result<(Bundles, EngineOptions)> {
    let mut used = vec![false; candidates.len()];
    let mut pick = |r: &str| -> anyhow::Result<Arc<Bundle>> {
        let b = load(r, &cfg.oci).with_context(|| format!("{}", path.display()))?;
        Ok(match candidates.iter().position(|c| c.name == b.name) {
            Some(i) => {
                used[i] = true;
                candidates[i].clone()
            }
            None => b,
        })
    };
    if let Some(p) = &a.persona {
        let persona = crate::governance::persona::find(cfg, p)?;
        let sets = crate::governance::persona::bundles(cfg, persona, &mut |r| {
            pick(r).map_err(|e| crate::governance::GovernanceError::Usage(format!("{e:#}")))
        })?;
        let per = sets
            .into_iter()
            .filter(|s| !s.bundles.is_empty())
            .map(|s| (s.server, s.bundles))
            .collect();
        return finish_configured(a, path, cfg, &candidates, &used, per);
    }
    let shared: Vec<Arc<Bundle>> = cfg
        .policy
        .shared_bundles
        .iter()
        .map(|r| pick(r))
        .collect::<Result<_, _>>()?;
    let mut per = BTreeMap::new();
    for (name, server) in &cfg.servers {
        let mut set: Vec<Arc<Bundle>> = server
            .bundles
            .iter()
            .map(|r| pick(r))
            .collect::<Result<_, _>>()?;
        if set.is_empty() && shared.is_empty() {
            continue; // static rules only: nothing to replay
        }
        set.extend(shared.iter().cloned());
        per.insert(name.clone(), set);
    }
    finish_configured(a, path, cfg, &candidates, &used, per)
}

/// Every candidate must have replaced a configured bundle; the options from
/// the config.
fn finish_configured(
    a: &Args,
    path: &Path,
    cfg: &Config,
    candidates: &[Arc<Bundle>],
    used: &[bool],
    per: BTreeMap<String, Vec<Arc<Bundle>>>,
) -> anyhow::Result<(Bundles, EngineOptions)> {
    if let Some(i) = used.iter().position(|u| !u) {
        bail!(
            "candidate bundle {} (name {:?}) replaces no bundle in {}: a candidate replaces the configured bundle with the same directory or file name",
            a.bundles[i],
            candidates[i].name,
            path.display()
        );
    }
    Ok((
        Bundles::PerServer(per),
        EngineOptions {
            eval_timeout: cfg
                .policy
                .eval_timeout
                .max(std::time::Duration::from_secs(1)),
            strict_input: cfg.policy.strict_input,
        },
    ))
}

/// Re-decides every record of the log, counting lines on a terminal.
fn replay(a: &Args, bundles: Bundles, opts: EngineOptions) -> anyhow::Result<Summary> {
    let file = std::fs::File::open(&a.log)
        .with_context(|| format!("cannot open the decision log {}", a.log.display()))?;
    let mut r = Replayer::new(bundles, a.server.clone(), opts).with_persona(a.persona.clone());
    let tty = std::io::stderr().is_terminal();
    r.run(std::io::BufReader::new(file), |n| {
        if tty {
            eprint!("\rreplayed {n} lines…");
        }
    })
    .with_context(|| format!("replaying {}", a.log.display()))?;
    if tty {
        eprintln!();
    }
    Ok(r.summary)
}

/// The summary on stdout (text or JSON); a warning on stderr for the
/// records that could not be replayed faithfully.
fn report(a: &Args, s: &Summary) -> anyhow::Result<()> {
    if a.json {
        let mut v = serde_json::to_value(s)?;
        v["flips"] = s.flips().into();
        super::say(v);
    } else {
        super::say(render(s).trim_end());
    }
    let nr = s.not_replayable_total();
    if nr > 0 {
        let why: Vec<String> = s
            .not_replayable
            .iter()
            .map(|(k, v)| format!("{k}: {v}"))
            .collect();
        eprintln!(
            "WARNING: {nr} of {} decision records could not be replayed faithfully ({}); the candidate was not checked against them",
            s.total,
            why.join(", ")
        );
    }
    Ok(())
}

/// `--max-not-replayable` and `--fail-on-flip`: the CI gate.
fn gate(a: &Args, s: &Summary) -> anyhow::Result<()> {
    let nr = s.not_replayable_total();
    if let Some(limit) = a.max_not_replayable
        && nr > limit
    {
        bail!("{nr} records could not be replayed (allowed: {limit})");
    }
    if let Some(limit) = a.fail_on_flip {
        if nr > 0 && s.replayed() == 0 {
            bail!(
                "no decision record could be replayed ({nr} not replayable): zero flips would vouch for nothing"
            );
        }
        if s.flips() > limit {
            bail!("{} decisions flipped (allowed: {limit})", s.flips());
        }
        if s.malformed > 0 {
            bail!(
                "{} lines of {} are not decision records: the gate cannot vouch for them",
                s.malformed,
                a.log.display()
            );
        }
    }
    Ok(())
}
