//! The texts of the agent tools (`gavel__why`, `gavel://policy/…`): what
//! `gavel explain --decision` and `gavel explain --config … --server …`
//! print, as plain text, for the fronts to serve. Installed into the
//! gateway by the cli ([`crate::gateway::PolicyTexts`]): the fronts sit
//! below governance and may not call it themselves.

use crate::config::{Config, Identity};

use super::doc::{Doc, Format};

/// `gavel explain`'s code behind [`crate::gateway::PolicyTexts`].
pub struct ExplainTexts;

/// Re-evaluations one `gavel__why` may spend on its counterfactuals (the
/// command line's default).
const WHY_BUDGET: usize = super::counterfactual::DEFAULT_BUDGET;

impl crate::gateway::PolicyTexts for ExplainTexts {
    /// The server's own layers and the shared ones, in words. The per-tool
    /// probe of `gavel explain` is left out: it would name tools the
    /// policy mentions that this caller's `tools/list` may not show.
    fn server_policy(
        &self,
        config: &Config,
        server: &str,
        identity: &Identity,
    ) -> Result<String, String> {
        let all = super::bundles_from_config(config).map_err(|e| e.to_string())?;
        let sb = all
            .iter()
            .find(|s| s.server == server)
            .ok_or_else(|| format!("server {server:?} is not an enabled server of the config"))?;
        let mut doc = Doc::default();
        super::explain::explain_server(&mut doc, sb, super::explain::Probe::Skip, Some(identity))
            .map_err(|e| e.to_string())?;
        if sb.shared > 0 {
            super::explain::explain_shared(&mut doc, &sb.bundles[sb.bundles.len() - sb.shared..])
                .map_err(|e| e.to_string())?;
        }
        Ok(doc.render(Format::Text))
    }

    /// One logged decision in words, re-evaluated against the config's
    /// bundles for its server.
    fn decision(&self, config: &Config, id: &str) -> Result<String, String> {
        let log = config.log.decisions.as_ref().ok_or(
            "no decision log is configured ([log] decisions), so past decisions cannot be explained",
        )?;
        let (line, record) =
            crate::audit::read::find_decision(log, id).map_err(|e| e.to_string())?;
        let server = super::explain_decision::server_of(&record).to_string();
        let all = super::bundles_from_config(config).map_err(|e| e.to_string())?;
        let sb = all.into_iter().find(|s| s.server == server);
        let mut doc = Doc::default();
        super::explain_decision::explain_record(
            &mut doc,
            &super::explain_decision::Explain {
                record: &record,
                line,
                bundles: sb.as_ref(),
                config: Some(config),
                budget: WHY_BUDGET,
            },
        )
        .map_err(|e| e.to_string())?;
        Ok(doc.render(Format::Text))
    }
}
