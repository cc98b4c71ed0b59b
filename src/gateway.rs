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
}

impl Gateway {
    pub fn new(config: Config) -> anyhow::Result<Arc<Self>> {
        let enforcer = Enforcer::from_config(&config)?;
        Ok(Arc::new(Self {
            config: Arc::new(config),
            enforcer: Arc::new(enforcer),
            shutdown: CancellationToken::new(),
            approvals: crate::state::approval::Remembered::new(crate::state::clock::from_env()),
        }))
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
