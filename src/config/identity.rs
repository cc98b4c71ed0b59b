//! `[identity]`: the agent, user and environment gavel reports to policy
//! when no bearer token says otherwise (always, over stdio).

use super::ctx::*;
use super::*;

impl Config {
    pub(super) fn identity(ctx: &Ctx, r: &raw::RawIdentity) -> Result<Identity, ConfigError> {
        let list = |v: &[Spanned<String>], field: &str| -> Result<Vec<String>, ConfigError> {
            v.iter().map(|x| ctx.expand(x, field)).collect()
        };
        let one =
            |v: &Option<Spanned<String>>, field: &str| -> Result<Option<String>, ConfigError> {
                v.as_ref().map(|x| ctx.expand(x, field)).transpose()
            };
        Ok(Identity {
            agent: AgentIdentity {
                id: one(&r.agent.id, "identity.agent.id")?
                    .unwrap_or_else(|| AgentIdentity::default().id),
                scope: list(&r.agent.scope, "identity.agent.scope")?,
                owner_team: one(&r.agent.owner_team, "identity.agent.owner_team")?,
            },
            user: UserIdentity {
                id: one(&r.user.id, "identity.user.id")?
                    .unwrap_or_else(|| UserIdentity::default().id),
                groups: list(&r.user.groups, "identity.user.groups")?,
                data_classifications_authorized: list(
                    &r.user.data_classifications_authorized,
                    "identity.user.data_classifications_authorized",
                )?,
            },
            environment: EnvironmentIdentity {
                region: one(&r.environment.region, "identity.environment.region")?,
                is_production: r.environment.is_production,
                labels: r
                    .environment
                    .labels
                    .iter()
                    .map(|(k, v)| {
                        Ok((
                            k.clone(),
                            ctx.expand(v, &format!("identity.environment.labels.{k}"))?,
                        ))
                    })
                    .collect::<Result<_, ConfigError>>()?,
            },
        })
    }
}
