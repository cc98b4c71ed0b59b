//! What one gavel process shares across host sessions: the config, the
//! enforcer (with its policy supply), the `shared` upstreams and the shutdown
//! signal. Both fronts (stdio, streamable HTTP) open a
//! `front::session::Session` over it per host connection; the gateway knows
//! nothing of sessions or fronts (it sits below them, ARCHITECTURE.md
//! "Layers").

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::decision::Enforcer;
use crate::policy::start::{Pull, start_enforcer};
use crate::sync::Recover;

pub struct Gateway {
    pub config: Arc<Config>,
    pub enforcer: Arc<Enforcer>,
    pub shutdown: CancellationToken,
    /// Keeps `oci://` bundles pulled and active (None without any).
    pub supply: Option<Arc<crate::policy::supply::Supply>>,
    /// `session_mode = "shared"` upstreams, started by the first session that
    /// needs one and stopped with the gateway.
    shared: std::sync::Mutex<SharedUpstreams>,
    /// What `gavel explain` says, for the agent tools (`gavel__why`, the
    /// `gavel://policy/…` resources): set by the cli, which may use
    /// `governance` (the fronts, below it, may not).
    policy_texts: std::sync::OnceLock<Arc<dyn PolicyTexts>>,
    /// Seals the state of the input rounds gavel hands a 2026-07-28 host
    /// (`host::seal`) and spends each round once.
    pub sealer: Arc<crate::host::seal::Sealer>,
    /// The Redis every instance shares (`[state]`), when it is Redis: what
    /// rounds are spent in and what instances hand each other work over
    /// (`state::bus`).
    pub redis: Option<Arc<crate::state::redis::RedisStore>>,
}

/// The plain-language texts the agent tools serve, written by `gavel
/// explain`'s code (`crate::governance`, above the fronts): injected into
/// the gateway by the cli ([`Gateway::set_policy_texts`]). Both may read
/// bundles and the decision log: call them off the event loop.
pub trait PolicyTexts: Send + Sync {
    /// `gavel explain --config … --server SERVER` as `identity` sees it.
    fn server_policy(
        &self,
        config: &Config,
        server: &str,
        identity: &crate::config::Identity,
    ) -> Result<String, String>;
    /// `gavel explain --decision ID --config …`.
    fn decision(&self, config: &Config, id: &str) -> Result<String, String>;
}

#[derive(Default)]
struct SharedUpstreams {
    upstreams: std::collections::BTreeMap<String, Arc<crate::upstream::Upstream>>,
    supervisors: Vec<tokio::task::JoinHandle<()>>,
}

/// SIGHUP reopens the decision log (after `logrotate` moved it), whichever
/// front serves: installed here, once per process, so that `gavel serve` —
/// a daemon an operator signals like any other — is not killed by the
/// signal's default action. The handler is registered before this returns
/// (before any front listens); the task ends with the gateway.
fn watch_hangup(enforcer: Arc<Enforcer>, shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut hup = signal(SignalKind::hangup())
        .map_err(|e| anyhow::anyhow!("cannot install the SIGHUP handler: {e}"))?;
    tokio::spawn(async move {
        loop {
            tokio::select! {
                r = hup.recv() => {
                    if r.is_none() {
                        break;
                    }
                    match enforcer.decision_log() {
                        Some(log) => log.reopen(),
                        None => tracing::info!("SIGHUP: no decision log configured, nothing to reopen"),
                    }
                }
                _ = shutdown.cancelled() => break,
            }
        }
    });
    Ok(())
}

/// The shared input-round key, when one is configured: `GAVEL_ROUND_KEY`,
/// else `[serve] round_key_file` (`host::seal::shared_key`). Also what
/// `gavel config check` reads, so it refuses what a start would.
pub fn round_key(config: &Config) -> anyhow::Result<Option<crate::host::seal::SealKey>> {
    use crate::host::seal::{KEY_ENV, shared_key};
    let env = std::env::var(KEY_ENV).ok().filter(|v| !v.trim().is_empty());
    shared_key(env, config.serve.round_key_file.as_deref())
        .map_err(|e| anyhow::anyhow!("the input-round sealing key: {e}"))
}

/// The sealer of input rounds (`host::seal`): the shared key when one is
/// configured (`GAVEL_ROUND_KEY`, else `[serve] round_key_file`), else a
/// random one for this process; rounds spent in Redis too when `[state]`
/// is Redis (instances that share the key share the spent rounds);
/// expiries on gavel's clock.
fn sealer(
    config: &Config,
    clock: Arc<dyn crate::state::clock::Clock>,
    redis: Option<&Arc<crate::state::redis::RedisStore>>,
) -> anyhow::Result<crate::host::seal::Sealer> {
    use crate::host::seal::{SealKey, Sealer};
    let key = round_key(config)?;
    let shared = key.is_some();
    let mut sealer = Sealer::new(key.unwrap_or_else(SealKey::random)).with_clock(clock);
    if let Some(store) = redis {
        sealer = sealer.with_shared(store.clone());
    } else if shared {
        tracing::warn!(
            "a shared input-round key is set but [state] is not Redis: each instance remembers only the rounds answered on it, so a round answered on one instance could be answered again on another; use backend = \"redis\" when several instances share the key"
        );
    }
    Ok(sealer)
}

impl Gateway {
    /// Builds the enforcer. With `oci://` bundles, pulls them first (each
    /// bounded by `oci.pull_timeout`, falling back to the cache) and starts
    /// polling them for changes. Watches SIGHUP ([`watch_hangup`]).
    pub async fn start(config: Config) -> anyhow::Result<Arc<Self>> {
        let clock = crate::state::clock::from_env();
        // A bad round key stops gavel before anything starts.
        let redis = match &config.redis_url {
            Some(url) => Some(Arc::new(crate::state::redis::RedisStore::open(url, true)?)),
            None => None,
        };
        let sealer = Arc::new(sealer(&config, clock.clone(), redis.as_ref())?);
        let shutdown = CancellationToken::new();
        // A cached bundle starts at once; the registry is asked in the
        // background (a stalled registry never holds `initialize`).
        let (enforcer, supply) = start_enforcer(&config, clock, Pull::CacheFirst).await?;
        let enforcer = Arc::new(enforcer);
        if let Some(t) = &config.telemetry {
            enforcer.set_tracer(crate::telemetry::Tracer::start(t.clone())?);
            tracing::info!(endpoint = %crate::audit::mask::mask_url(&t.endpoint), "telemetry: spans exported over OTLP/HTTP");
        }
        if let Some(supply) = &supply {
            supply.started(&enforcer);
            supply.spawn_polling(enforcer.clone(), shutdown.clone());
        }
        watch_hangup(enforcer.clone(), shutdown.clone())?;
        Ok(Arc::new(Self {
            config: Arc::new(config),
            enforcer,
            shutdown,
            supply,
            shared: Default::default(),
            policy_texts: Default::default(),
            sealer,
            redis,
        }))
    }

    /// The shared upstream for `name`, attaching `owner`; the first caller
    /// starts it with the deps `make` builds (its host's capabilities are the
    /// ones the upstream sees).
    pub fn shared_upstream(
        &self,
        cfg: &crate::config::ServerConfig,
        owner: &Arc<crate::upstream::shared::Owner>,
        make: impl FnOnce(crate::upstream::supervisor::ChangeSink) -> crate::upstream::SupervisorDeps,
    ) -> Arc<crate::upstream::Upstream> {
        let mut sh = self.shared.lock().recover();
        if let Some(up) = sh.upstreams.get(&cfg.name) {
            if let Some(route) = &up.shared {
                route.attach(owner);
            }
            // The new session builds its name table from the lists already there.
            let _ = owner
                .changed
                .try_send(crate::upstream::supervisor::Changed {
                    server: cfg.name.clone(),
                    notice: None,
                });
            return up.clone();
        }
        let up = crate::upstream::Upstream::new_shared(cfg.clone());
        let route = up.shared.clone().expect("a shared upstream has a route");
        route.attach(owner);
        let mut deps = make(crate::upstream::supervisor::ChangeSink::Shared(route));
        deps.shutdown = self.shutdown.child_token();
        sh.supervisors
            .push(crate::upstream::spawn_supervisor(up.clone(), deps));
        sh.upstreams.insert(cfg.name.clone(), up.clone());
        up
    }

    /// Stops the shared upstreams (bounded wait).
    pub async fn stop_shared(&self) {
        self.shutdown.cancel();
        let handles: Vec<_> = self.shared.lock().recover().supervisors.drain(..).collect();
        crate::upstream::supervisor::join_bounded(handles).await;
    }

    /// Per server: the policy (`Enforcer::status_json`) and, for `oci://`
    /// bundles, OPA's bundle status fields under `oci`.
    pub fn policy_status_json(&self) -> serde_json::Value {
        let mut v = self.enforcer.status_json();
        if let (Some(supply), Some(obj)) = (&self.supply, v.as_object_mut())
            && let serde_json::Value::Object(per) = supply.status_json()
        {
            for (server, refs) in per {
                // A persona's policy (`SERVER@PERSONA`) sits under its server.
                let at = match crate::decision::persona::split_target(&server) {
                    Some((s, p)) => obj
                        .get_mut(s)
                        .and_then(|s| s.get_mut("personas")?.get_mut(p)),
                    None => obj.get_mut(&server),
                };
                if let Some(s) = at.and_then(|s| s.as_object_mut()) {
                    s.insert("oci".into(), refs);
                }
            }
        }
        v
    }

    /// Installs the texts of the agent tools (once; a second call is
    /// ignored).
    pub fn set_policy_texts(&self, texts: Arc<dyn PolicyTexts>) {
        let _ = self.policy_texts.set(texts);
    }

    /// The texts of the agent tools, when the cli installed them.
    pub fn policy_texts(&self) -> Option<&Arc<dyn PolicyTexts>> {
        self.policy_texts.get()
    }

    /// Whether names get `<prefix>__`: decided by the config alone (how many
    /// servers are enabled), never by how many happen to be running.
    pub fn prefixed(&self) -> bool {
        self.config.enabled_servers().count() > 1
    }
}
