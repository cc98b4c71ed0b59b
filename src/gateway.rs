//! What one gavel process shares across host sessions: the config, the
//! enforcer, and the shutdown signal. A front (stdio today, streamable HTTP
//! later) asks it for a [`Session`] per host connection.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decision::Enforcer;
use crate::front::session::Session;

pub struct Gateway {
    pub config: Arc<Config>,
    pub enforcer: Arc<Enforcer>,
    pub shutdown: CancellationToken,
    /// Human approvals remembered by this process (`front::approval`).
    pub approvals: crate::state::approval::Remembered,
    /// Keeps `oci://` bundles pulled and active (None without any).
    pub supply: Option<Arc<crate::bundle::supply::Supply>>,
}

impl Gateway {
    /// Builds the enforcer. With `oci://` bundles, pulls them first (each
    /// bounded by `oci.pull_timeout`, falling back to the cache) and starts
    /// polling them for changes.
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        let clock = crate::state::clock::from_env();
        let shutdown = CancellationToken::new();
        let (enforcer, supply) = if crate::bundle::supply::Supply::needed(&config) {
            let supply = crate::bundle::supply::Supply::start(&config).await?;
            let enforcer = Arc::new(Enforcer::with_resolver(
                &config,
                clock.clone(),
                supply.as_ref(),
            )?);
            supply.started(&enforcer);
            supply.spawn_polling(enforcer.clone(), shutdown.clone());
            (enforcer, Some(supply))
        } else {
            (
                Arc::new(Enforcer::from_config_with_clock(&config, clock.clone())?),
                None,
            )
        };
        Ok(Arc::new(Self {
            config: Arc::new(config),
            enforcer,
            shutdown,
            approvals: crate::state::approval::Remembered::new(clock),
            supply,
        }))
    }

    /// Per server: the policy (`Enforcer::status_json`) and, for `oci://`
    /// bundles, OPA's bundle status fields under `oci`.
    pub fn policy_status_json(&self) -> serde_json::Value {
        let mut v = self.enforcer.status_json();
        if let (Some(supply), Some(obj)) = (&self.supply, v.as_object_mut())
            && let serde_json::Value::Object(per) = supply.status_json()
        {
            for (server, refs) in per {
                if let Some(s) = obj.get_mut(&server).and_then(|s| s.as_object_mut()) {
                    s.insert("oci".into(), refs);
                }
            }
        }
        v
    }

    /// A new host session (one per stdio process; one per HTTP session).
    pub fn session(self: &Arc<Self>) -> Session {
        Session::new(self.clone())
    }

    /// Whether names get `<prefix>__`: decided by the config alone (how many
    /// servers are enabled), never by how many happen to be running.
    pub fn prefixed(&self) -> bool {
        self.config.enabled_servers().count() > 1
    }
}
