//! Personas for the governance commands: the layers a persona's requests
//! are decided by on each server it reaches (`gavel explain --persona`,
//! `gavel replay --persona`), the identity its probes speak as, and the
//! persona a logged decision was made as (`labels.persona`).

use std::sync::Arc;

use serde_json::Value;

use super::{GovernanceError, ServerBundles, load_ref};
use crate::bundle::Bundle;
use crate::config::{Config, Identity, Persona};

/// The persona named `name` in `config`, or an error naming the ones there are.
pub fn find<'c>(config: &'c Config, name: &str) -> Result<&'c Persona, GovernanceError> {
    config.personas.by_name.get(name).ok_or_else(|| {
        let known: Vec<&str> = config.personas.by_name.keys().map(String::as_str).collect();
        GovernanceError::Usage(if known.is_empty() {
            format!("persona {name:?}: the config declares no [personas.*]")
        } else {
            format!(
                "persona {name:?} is not declared in the config (personas: {})",
                known.join(", ")
            )
        })
    })
}

/// Every enabled server `persona` reaches, with the layers its requests
/// there are decided by: the server's bundles, the persona's, then the
/// shared ones (the order the enforcer builds). `candidates` replace a
/// configured bundle of the same name (replay).
pub fn bundles(
    config: &Config,
    persona: &Persona,
    pick: &mut dyn FnMut(&str) -> Result<Arc<Bundle>, GovernanceError>,
) -> Result<Vec<ServerBundles>, GovernanceError> {
    let shared = config
        .policy
        .shared_bundles
        .iter()
        .map(|r| pick(r))
        .collect::<Result<Vec<_>, _>>()?;
    let own = persona
        .bundles
        .iter()
        .map(|r| pick(r))
        .collect::<Result<Vec<_>, _>>()?;
    let mut out = Vec::new();
    for (name, server) in config.enabled_servers() {
        if !persona.reaches(name) {
            continue;
        }
        let mut set = server
            .bundles
            .iter()
            .map(|r| pick(r))
            .collect::<Result<Vec<_>, _>>()?;
        set.extend(own.iter().cloned());
        set.extend(shared.iter().cloned());
        out.push(ServerBundles {
            server: name.clone(),
            bundles: set,
            shared: shared.len(),
        });
    }
    Ok(out)
}

/// As [`bundles`], loading every reference as configured.
pub fn configured_bundles(
    config: &Config,
    persona: &Persona,
) -> Result<Vec<ServerBundles>, GovernanceError> {
    bundles(config, persona, &mut |r| load_ref(r, &config.oci))
}

/// The configured identity speaking as one of `persona`'s agents (a glob's
/// stars matched by nothing, which it always matches), so that explain's
/// probes are decided as the persona's requests would be.
pub fn identity(config: &Config, persona: &Persona) -> Identity {
    let mut id = config.identity.clone();
    if !persona.matches(&id.agent.id) {
        id.agent.id = persona.agents[0].replace('*', "");
    }
    id
}

/// The report's key for decisions made as no persona.
pub const NONE: &str = "(none)";

/// The persona a logged decision was made as (`labels.persona`), if any.
pub fn of_record(rec: &Value) -> Option<&str> {
    rec.pointer("/labels/persona").and_then(Value::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::from_toml_str(
            "[servers.fs]\ncommand = \"a\"\n[servers.mail]\ncommand = \"b\"\n\
             [identity.agent]\nid = \"other\"\n\
             [personas.hr]\nagents = [\"hr-*\"]\nservers = [\"mail\"]\n",
            std::path::Path::new("/tmp/servers.toml"),
            &|_| None,
        )
        .unwrap()
    }

    #[test]
    fn a_personas_identity_and_servers() {
        let c = config();
        let hr = find(&c, "hr").unwrap();
        let id = identity(&c, hr);
        assert_eq!(id.agent.id, "hr-");
        assert!(hr.matches(&id.agent.id));
        let sb = configured_bundles(&c, hr).unwrap();
        assert_eq!(sb.len(), 1);
        assert_eq!(sb[0].server, "mail");
        let e = find(&c, "it").unwrap_err().to_string();
        assert!(e.contains("personas: hr"), "{e}");
    }

    #[test]
    fn the_persona_of_a_record_is_its_label() {
        let r = serde_json::json!({"labels": {"persona": "hr"}});
        assert_eq!(of_record(&r), Some("hr"));
        assert_eq!(of_record(&serde_json::json!({"labels": {}})), None);
    }
}
