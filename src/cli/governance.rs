//! The governance commands: `gavel explain` (a bundle, or every server of a
//! config, in plain language; or one logged decision with the inputs that
//! mattered) and `gavel report` (a decision log as one self-contained HTML
//! page). The work is in `crate::governance`; this only wires arguments.

use std::path::PathBuf;

use anyhow::Context;

use crate::config::Config;
use crate::governance::doc::{Doc, Format};
use crate::governance::{self, ServerBundles};

#[derive(clap::Args, Debug)]
pub struct ExplainArgs {
    /// Bundle directories or .tar.gz files, composed as one server's layers.
    pub bundles: Vec<PathBuf>,
    /// Bundle to explain or re-evaluate with (same as the positional form; repeat for layers).
    #[arg(long = "bundle")]
    pub bundle_flags: Vec<PathBuf>,
    /// Explain every enabled server of this config (its bundles and the shared ones, with its identity).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// With --config: only this server.
    #[arg(long)]
    pub server: Option<String>,
    /// With --config: as this persona's agents see it (the servers it
    /// reaches, their layers with the persona's bundles added).
    #[arg(long)]
    pub persona: Option<String>,
    /// Explain one logged decision (its decision_id) instead of a bundle.
    #[arg(long)]
    pub decision: Option<String>,
    /// The decision log holding --decision (default: the config's [log] decisions).
    #[arg(long)]
    pub log: Option<PathBuf>,
    /// At most this many re-evaluations for --decision.
    #[arg(long, default_value_t = governance::counterfactual::DEFAULT_BUDGET)]
    pub budget: usize,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

pub fn explain(a: ExplainArgs) -> anyhow::Result<()> {
    let mut paths = a.bundles.clone();
    paths.extend(a.bundle_flags.iter().cloned());
    if a.config.is_some() && !paths.is_empty() {
        anyhow::bail!("give either bundles or --config, not both");
    }
    if a.server.is_some() && (a.config.is_none() || a.decision.is_some()) {
        anyhow::bail!(
            "--server picks a server of --config when explaining a policy; a decision names its own server"
        );
    }
    if a.persona.is_some() && (a.config.is_none() || a.decision.is_some()) {
        anyhow::bail!(
            "--persona picks a persona of --config when explaining a policy; a decision names its own persona"
        );
    }
    let config = match &a.config {
        Some(p) => Some(super::load_config(p)?),
        None => None,
    };
    let mut doc = Doc::default();
    if let Some(id) = &a.decision {
        explain_decision(&mut doc, &a, id, config.as_ref(), &paths)?;
    } else {
        explain_policy(&mut doc, &a, config.as_ref(), &paths)?;
    }
    print!("{}", doc.render(a.format)); // stdout-ok
    Ok(())
}

/// `--decision ID`: why one logged decision came out as it did, against
/// the bundles of `--config` (the decision's server) or of `paths`.
fn explain_decision(
    doc: &mut Doc,
    a: &ExplainArgs,
    id: &str,
    config: Option<&Config>,
    paths: &[PathBuf],
) -> anyhow::Result<()> {
    let log = a
        .log
        .clone()
        .or_else(|| config.and_then(|c| c.log.decisions.clone()))
        .ok_or_else(|| {
            anyhow::anyhow!(
                "--decision needs --log <decisions.jsonl> (or a --config whose [log] names one)"
            )
        })?;
    let (line, record) = crate::audit::read::find_decision(&log, id)?;
    if record.get("result_of").is_some() {
        governance::explain_result::explain_result(doc, &record, line);
        return Ok(());
    }
    let server = governance::explain_decision::server_of(&record).to_string();
    let sb: Option<ServerBundles> = match config {
        Some(c) => {
            // Decided as a persona: its layers, not only the server's.
            let all = match governance::persona::of_record(&record) {
                Some(p) => {
                    governance::persona::configured_bundles(c, governance::persona::find(c, p)?)?
                }
                None => governance::bundles_from_config(c)?,
            };
            let found = all.into_iter().find(|s| s.server == server);
            if found.is_none() {
                anyhow::bail!(
                    "decision {id} was made for server {server:?}, which {} does not enable; pass its bundles with --bundle",
                    a.config
                        .as_ref()
                        .map(|p| p.display().to_string())
                        .unwrap_or_default()
                );
            }
            found
        }
        None if paths.is_empty() => None,
        None => Some(governance::bundles_from_paths(paths)?),
    };
    governance::explain_decision::explain_record(
        doc,
        &governance::explain_decision::Explain {
            record: &record,
            line,
            bundles: sb.as_ref(),
            config,
            budget: a.budget,
        },
    )?;
    governance::explain_result::explain_results_of(doc, &log, id)?;
    Ok(())
}

/// What a policy allows: each server of `--config` (or `--server` only),
/// or the bundles of `paths`, then the shared bundles.
fn explain_policy(
    doc: &mut Doc,
    a: &ExplainArgs,
    config: Option<&Config>,
    paths: &[PathBuf],
) -> anyhow::Result<()> {
    if a.log.is_some() {
        anyhow::bail!("--log is only used with --decision <id>");
    }
    let persona = match (config, &a.persona) {
        (Some(c), Some(p)) => Some(governance::persona::find(c, p)?),
        _ => None,
    };
    let servers = match config {
        Some(c) => {
            let mut all = match persona {
                Some(p) => governance::persona::configured_bundles(c, p)?,
                None => governance::bundles_from_config(c)?,
            };
            if let Some(only) = &a.server {
                all.retain(|s| &s.server == only);
                if all.is_empty() {
                    anyhow::bail!("server {only:?} is not an enabled server of the config");
                }
            }
            all
        }
        None => vec![governance::bundles_from_paths(paths)?],
    };
    let persona_identity = config
        .zip(persona)
        .map(|(c, p)| governance::persona::identity(c, p));
    let identity = persona_identity.as_ref().or(config.map(|c| &c.identity));
    if let Some(p) = persona {
        doc.heading(1, format!("Persona `{}`", p.name));
        doc.para(format!(
            "Agents {} reach {}; each server below is decided by its own bundles, the persona's ({}) and the shared ones. Probes speak as agent `{}`.",
            p.agents.iter().map(|a| format!("`{a}`")).collect::<Vec<_>>().join(", "),
            p.servers.as_ref().map_or("every server".to_string(), |s| s.join(", ")),
            if p.bundles.is_empty() { "none".to_string() } else { p.bundles.join(", ") },
            identity.map(|i| i.agent.id.as_str()).unwrap_or("?")
        ));
    }
    for sb in &servers {
        use governance::explain::Probe;
        let engine = (!sb.bundles.is_empty()).then(|| governance::build_engine(sb, config));
        let why;
        let probe = match &engine {
            None => Probe::Skip,
            Some(Ok(e)) => Probe::Engine(e),
            Some(Err(e)) => {
                why = e.to_string();
                Probe::Unavailable(&why)
            }
        };
        governance::explain::explain_server(doc, sb, probe, identity)?;
    }
    if let Some(sb) = servers.iter().find(|s| s.shared > 0) {
        governance::explain::explain_shared(doc, &sb.bundles[sb.bundles.len() - sb.shared..])?;
    }
    Ok(())
}

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// The decision log (JSON lines).
    pub log: PathBuf,
    /// Where to write the HTML page.
    #[arg(long, short)]
    pub output: PathBuf,
}

pub fn report(a: ReportArgs) -> anyhow::Result<()> {
    let report = crate::governance::report::Report::from_log(&a.log)?;
    if let Some(line) = report.torn_tail {
        eprintln!(
            "warning: {}:{line}: the last record was cut off while it was written (a crash or a full disk); it is not counted",
            a.log.display()
        );
    }
    let page = crate::governance::report_html::render(&report);
    crate::atomic_file::write(&a.output, page.as_bytes())
        .with_context(|| format!("writing {}", a.output.display()))?;
    super::say(format!(
        "wrote {}: {} decisions ({} denied), {} approval steps, {} shadow divergences, from {}",
        a.output.display(),
        report.split.total(),
        report.split.denied,
        report.approval_steps,
        report.shadow.total,
        a.log.display()
    ));
    Ok(())
}
