//! The bundle supply: keeps every `oci://` reference of the config pulled,
//! verified and active, and the last good bundle in service when anything
//! goes wrong.
//!
//! - **Start.** A digest pin found intact in the cache is used without the
//!   network (a digest never moves). So is, for `gavel run`/`serve`
//!   ([`Supply::start_from_cache`]), a tag with a bundle in the cache for
//!   the same server and ref: it is verified again as the policy is built,
//!   and the registry is asked at once in the background — a registry that
//!   accepts connections and never answers cannot hold the host's
//!   `initialize` for `pull_timeout`. Otherwise the registry is asked
//!   (bounded by `oci.pull_timeout`); if it cannot answer, or its bundle
//!   fails any check (verification, own tests, lint, compile), the cached
//!   bundle for the same server and ref is used, and the refusal stays in
//!   the status. Nothing usable → that server fails closed
//!   (`policy_unavailable`, with a remediation naming the ref).
//! - **Poll.** Tags (and refs not obtained yet) are polled after a jittered
//!   delay in `[min_delay, max_delay]`; errors back off (×1.6 from 100 ms,
//!   capped at `max_delay`, ±20 %), as OPA does. A layer digest equal to the
//!   active one, or to the last refused one, is "not modified": nothing is
//!   downloaded or rebuilt (`requests` and `downloads` in the status count
//!   both).
//! - **Activate.** A new layer is built into a new engine off to the side,
//!   for every server using the ref (verify, own tests, lint, compile); only
//!   if all succeed are they swapped in, atomically, and the verified tarball
//!   persisted to the cache. Any failure keeps the last good bundle and is
//!   recorded in the status (`code`, `message`), and that layer is not retried
//!   until the registry serves a different one. The build runs on the
//!   blocking pool: a slow verify, parse or compile never holds the event
//!   loop that answers requests. A tag that moved to an older revision than
//!   the active one is refused as a rollback (`rollback.rs`).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde::Serialize;

mod poll;
mod rollback;

use crate::bundle::RawBundle;
use crate::bundle::oci::cache::Cache;
use crate::bundle::oci::{OciRef, Registry};
use crate::config::{Config, OciSettings};
use crate::decision::Enforcer;
use crate::policy::source::{Offline, Resolve, SHARED_OWNER, raw_from_layer};
use crate::sync::Recover;

/// OPA's bundle status fields (`v1/plugins/bundle/status.go`), per server and
/// reference, plus where the active bytes came from.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RefStatus {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_revision: Option<String>,
    /// `sha256:` of the active bundle layer (the tarball).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_digest: Option<String>,
    /// `sha256:` of the manifest the ref resolved to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest_digest: Option<String>,
    /// `registry` or `cache`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<&'static str>,
    pub last_request: Option<String>,
    pub last_successful_request: Option<String>,
    pub last_successful_download: Option<String>,
    pub last_successful_activation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Key id that verified the active bundle (None: unsigned, or none active).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signer_keyid: Option<String>,
    /// Manifest requests made (the start and every poll).
    pub requests: u64,
    /// Layers downloaded: a layer already active or already refused is not
    /// downloaded again, so this moves only when the registry serves news.
    pub downloads: u64,
}

#[derive(Clone)]
struct Layer {
    manifest_digest: String,
    layer_digest: String,
    bytes: Arc<Vec<u8>>,
    source: &'static str,
}

#[derive(Default)]
struct Entry {
    /// The bytes the active engine was built from (or will be, at start).
    current: Option<Layer>,
    /// A layer that failed activation: not retried until it changes.
    refused: Option<String>,
    /// Started from the cache: ask the registry at once, not after a delay.
    refresh_now: bool,
    status: RefStatus,
}

type Key = (String, String);

/// What a pull found.
enum Pulled {
    /// The ref resolves to a layer to skip (active, or refused): its digest
    /// and the manifest that names it now.
    Unchanged {
        layer: String,
        manifest: String,
    },
    New(Layer),
}

pub struct Supply {
    registry: Registry,
    cache: Cache,
    settings: OciSettings,
    entries: Mutex<BTreeMap<Key, Entry>>,
    /// Which servers each (owner, ref) feeds.
    users: BTreeMap<Key, Vec<String>>,
    /// The config file (named in remediations).
    config_path: Option<std::path::PathBuf>,
}

fn now() -> String {
    humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string()
}

impl Supply {
    /// Every (owner, ref) of the config's enabled servers, and their users.
    fn refs(config: &Config) -> BTreeMap<Key, Vec<String>> {
        let mut users: BTreeMap<Key, Vec<String>> = BTreeMap::new();
        for (name, s) in config.enabled_servers() {
            // Shadow bundles are pulled and hot-reloaded like live ones.
            for r in s
                .bundles
                .iter()
                .chain(&s.shadow_bundles)
                .filter(|r| r.starts_with("oci://"))
            {
                users
                    .entry((name.clone(), r.clone()))
                    .or_default()
                    .push(name.clone());
            }
            for r in config
                .policy
                .shared_bundles
                .iter()
                .chain(&config.policy.shared_shadow_bundles)
                .filter(|r| r.starts_with("oci://"))
            {
                users
                    .entry((SHARED_OWNER.to_string(), r.clone()))
                    .or_default()
                    .push(name.clone());
            }
        }
        // Each persona's policy for a server is a user too.
        crate::policy::persona::add_refs(config, &mut users);
        users
    }

    /// Whether the config names any OCI bundle (else no supply is needed).
    pub fn needed(config: &Config) -> bool {
        !Self::refs(config).is_empty()
    }

    /// Obtains every reference once (registry, else cache), bounded by
    /// `oci.pull_timeout` each, in parallel: what `config check` verifies.
    pub async fn start(config: &Config) -> anyhow::Result<Arc<Self>> {
        Self::start_with(config, false).await
    }

    /// As [`Supply::start`], but a reference with a bundle in the cache (for
    /// the same server and ref) starts from it without waiting for the
    /// registry, which the poll loop asks at once: `gavel run` and `serve`.
    pub async fn start_from_cache(config: &Config) -> anyhow::Result<Arc<Self>> {
        Self::start_with(config, true).await
    }

    async fn start_with(config: &Config, cache_first: bool) -> anyhow::Result<Arc<Self>> {
        let registry = Registry::new(&config.oci).map_err(|e| anyhow::anyhow!(e))?;
        let users = Self::refs(config);
        let supply = Arc::new(Self {
            registry,
            cache: Cache::new(&config.oci.cache_root()),
            settings: config.oci.clone(),
            entries: Mutex::new(
                users
                    .keys()
                    .map(|k| {
                        let e = Entry {
                            status: RefStatus {
                                name: k.1.clone(),
                                ..Default::default()
                            },
                            ..Default::default()
                        };
                        (k.clone(), e)
                    })
                    .collect(),
            ),
            users,
            config_path: config.source.clone(),
        });
        let keys: Vec<Key> = supply.users.keys().cloned().collect();
        futures::future::join_all(keys.iter().map(|k| supply.obtain_at_start(k, cache_first)))
            .await;
        Ok(supply)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<Key, Entry>> {
        self.entries.lock().recover()
    }

    fn record_error(&self, key: &Key, code: &str, message: String) {
        tracing::error!(bundle = %key.1, owner = %key.0, "{message}");
        if let Some(e) = self.lock().get_mut(key) {
            e.status.code = Some(code.to_string());
            e.status.message = Some(message);
        }
    }

    async fn obtain_at_start(&self, key: &Key, cache_first: bool) {
        let Ok(r) = OciRef::parse(&key.1) else { return };
        if let Some(pin) = &r.digest
            && let Ok(Some((rec, bytes))) = self.cache.load(&key.0, &key.1, Some(pin))
        {
            tracing::info!(bundle = %key.1, "digest pin found in the bundle cache; not asking the registry");
            self.set_current(key, rec.manifest_digest, Arc::new(bytes), "cache");
            return;
        }
        if cache_first
            && r.digest.is_none()
            && let Some(layer) = self.cached_layer(key, &r)
        {
            tracing::info!(bundle = %key.1, "starting from the cached bundle; the registry is asked in the background");
            if let Some(e) = self.lock().get_mut(key) {
                e.current = Some(layer);
                e.refresh_now = true;
            }
            return;
        }
        match self.pull(key, &r, &[]).await {
            Ok(Pulled::New(layer)) => {
                if let Some(e) = self.lock().get_mut(key) {
                    e.current = Some(layer);
                }
            }
            Ok(Pulled::Unchanged { .. }) => {}
            Err(msg) => {
                self.record_error(key, "bundle_error", msg);
                if let Some(layer) = self.cached_layer(key, &r) {
                    tracing::warn!(bundle = %key.1, "registry unavailable: starting from the cached bundle");
                    if let Some(e) = self.lock().get_mut(key) {
                        e.current = Some(layer);
                    }
                }
            }
        }
    }

    /// The cached bundle for `key` (same server and ref; for a digest pin,
    /// that digest), as a layer; a damaged cache entry is reported.
    fn cached_layer(&self, key: &Key, r: &OciRef) -> Option<Layer> {
        match self.cache.load(&key.0, &key.1, r.digest.as_deref()) {
            Ok(Some((rec, bytes))) => Some(Layer {
                manifest_digest: rec.manifest_digest,
                layer_digest: rec.layer_digest,
                bytes: Arc::new(bytes),
                source: "cache",
            }),
            Ok(None) => None,
            Err(e) => {
                self.record_error(key, "bundle_error", e.to_string());
                None
            }
        }
    }

    fn set_current(
        &self,
        key: &Key,
        manifest_digest: String,
        bytes: Arc<Vec<u8>>,
        source: &'static str,
    ) {
        if let Some(e) = self.lock().get_mut(key) {
            e.current = Some(Layer {
                manifest_digest,
                layer_digest: crate::bundle::oci::manifest::sha256_digest(&bytes),
                bytes,
                source,
            });
        }
    }

    /// Resolves and, unless the layer is one of `skip` (the active one, the
    /// last refused one), downloads. Updates the request/download status
    /// fields.
    async fn pull(&self, key: &Key, r: &OciRef, skip: &[&str]) -> Result<Pulled, String> {
        let t = now();
        if let Some(e) = self.lock().get_mut(key) {
            e.status.last_request = Some(t.clone());
            e.status.requests += 1;
        }
        let resolved = self.registry.resolve(r).await.map_err(|e| e.to_string())?;
        if let Some(e) = self.lock().get_mut(key) {
            e.status.last_successful_request = Some(t.clone());
        }
        if skip.contains(&resolved.layer.digest.as_str()) {
            return Ok(Pulled::Unchanged {
                layer: resolved.layer.digest,
                manifest: resolved.manifest_digest,
            });
        }
        let bytes = self
            .registry
            .fetch(r, &resolved.layer)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(e) = self.lock().get_mut(key) {
            e.status.last_successful_download = Some(now());
            e.status.downloads += 1;
        }
        Ok(Pulled::New(Layer {
            manifest_digest: resolved.manifest_digest,
            layer_digest: resolved.layer.digest,
            bytes: Arc::new(bytes),
            source: "registry",
        }))
    }

    /// After the enforcer is built at start: persist what activated, record
    /// activation or the reason it failed. A registry layer that failed to
    /// build is refused (not downloaded again until the registry serves
    /// another) and the cached bundle for the same server and ref, if any,
    /// is activated in its place: any failure keeps the last good bundle.
    pub fn started(&self, enforcer: &Enforcer) {
        let keys: Vec<(Key, Vec<String>)> = self
            .users
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        for (key, servers) in keys {
            let failed: Vec<String> = servers
                .iter()
                .filter_map(|s| {
                    enforcer
                        .active(s)
                        .and_then(|a| a.unavailable().map(|w| format!("{s}: {w}")))
                })
                .collect();
            let current = self.lock().get(&key).and_then(|e| e.current.clone());
            match current {
                Some(layer) if !failed.is_empty() && layer.source == "registry" => {
                    self.refuse_at_start(&key, &servers, layer, failed, enforcer)
                }
                _ => self.after_activation(&key, &servers, failed, enforcer),
            }
        }
    }

    /// The registry served `layer` at start and it did not build: refuse it,
    /// and start from the cache when the cache has a bundle that builds.
    fn refuse_at_start(
        &self,
        key: &Key,
        servers: &[String],
        layer: Layer,
        failed: Vec<String>,
        enforcer: &Enforcer,
    ) {
        let mut message = format!(
            "layer {} of {} was not activated: {}",
            layer.layer_digest,
            key.1,
            failed.join("; ")
        );
        let cached = OciRef::parse(&key.1)
            .ok()
            .and_then(|r| self.cached_layer(key, &r))
            .filter(|c| c.layer_digest != layer.layer_digest);
        if let Some(e) = self.lock().get_mut(key) {
            e.refused = Some(layer.layer_digest.clone());
            // Nothing else resolves the refused bytes as if they were good.
            e.current = None;
        }
        match cached.map(|c| (self.build_all(key, &c, enforcer), c)) {
            Some((Ok(built), c)) => {
                tracing::warn!(bundle = %key.1, "the registry's bundle was refused: starting from the cached bundle");
                if let Some(e) = self.lock().get_mut(key) {
                    e.current = Some(c);
                }
                for (s, a) in built {
                    enforcer.activate(&s, a);
                }
                self.after_activation(key, servers, vec![], enforcer);
                message.push_str("; the cached bundle for this ref is active");
            }
            Some((Err(also), _)) => {
                message.push_str(&format!(
                    "; the cached bundle does not build either: {}",
                    also.join("; ")
                ));
            }
            None => message.push_str("; no cached bundle for this ref"),
        }
        self.record_error(key, "bundle_error", message);
    }

    fn after_activation(
        &self,
        key: &Key,
        servers: &[String],
        failed: Vec<String>,
        enforcer: &Enforcer,
    ) {
        let current = self.lock().get(key).and_then(|e| e.current.clone());
        let Some(layer) = current else {
            return;
        };
        if !failed.is_empty() {
            self.record_error(key, "bundle_error", failed.join("; "));
            return;
        }
        if layer.source == "registry"
            && let Err(e) = self
                .cache
                .store(&key.0, &key.1, &layer.manifest_digest, &layer.bytes)
        {
            tracing::warn!(bundle = %key.1, "cannot persist the bundle for an offline start: {e}");
        }
        let name = OciRef::parse(&key.1)
            .map(|r| r.repository)
            .unwrap_or_default();
        let active = servers.first().and_then(|s| enforcer.active(s));
        let revision = active.as_ref().and_then(|a| a.bundle_revision(&name));
        let signer = active.as_ref().and_then(|a| a.signer(&name));
        if let Some(e) = self.lock().get_mut(key) {
            e.status.active_revision = revision;
            e.status.signer_keyid = signer;
            e.status.active_digest = Some(layer.layer_digest.clone());
            e.status.manifest_digest = Some(layer.manifest_digest.clone());
            e.status.source = Some(layer.source);
            e.status.last_successful_activation = Some(now());
            // A successful activation clears an earlier download error only
            // if this activation came from the registry.
            if layer.source == "registry" {
                e.status.code = None;
                e.status.message = None;
            }
        }
    }

    /// Builds every user server of `key` with `layer` in its place, off to
    /// the side; all or nothing.
    fn build_all(
        &self,
        key: &Key,
        layer: &Layer,
        enforcer: &Enforcer,
    ) -> Result<Vec<(String, crate::decision::Active)>, Vec<String>> {
        let servers = self.users.get(key).cloned().unwrap_or_default();
        let overlay = Overlay {
            supply: self,
            key,
            layer,
        };
        let mut built = Vec::new();
        let mut failed = Vec::new();
        for s in &servers {
            match enforcer.build_server(s, &overlay) {
                Ok(a) => match a.unavailable() {
                    None => built.push((s.clone(), a)),
                    Some(why) => failed.push(format!("{s}: {why}")),
                },
                Err(e) => failed.push(format!("{s}: {e}")),
            }
        }
        if failed.is_empty() {
            Ok(built)
        } else {
            Err(failed)
        }
    }

    /// Builds every user server with the candidate layer; swaps all in only
    /// if all build.
    fn try_activate(&self, key: &Key, layer: Layer, enforcer: &Enforcer) {
        let servers = self.users.get(key).cloned().unwrap_or_default();
        let built = match self.build_all(key, &layer, enforcer).and_then(|built| {
            match self.rollback(key, &built, enforcer) {
                Some(why) => Err(vec![why]),
                None => Ok(built),
            }
        }) {
            Ok(built) => built,
            Err(failed) => {
                let msg = format!(
                    "layer {} of {} was not activated; the last good bundle stays active: {}",
                    layer.layer_digest,
                    key.1,
                    failed.join("; ")
                );
                if let Some(e) = self.lock().get_mut(key) {
                    e.refused = Some(layer.layer_digest.clone());
                }
                self.record_error(key, "bundle_error", msg);
                return;
            }
        };
        if let Some(e) = self.lock().get_mut(key) {
            e.current = Some(layer);
            e.refused = None;
        }
        for (s, a) in built {
            enforcer.activate(&s, a);
        }
        self.after_activation(key, &servers, vec![], enforcer);
    }

    /// Per server: the status of each OCI reference it uses.
    pub fn status_json(&self) -> serde_json::Value {
        let entries = self.lock();
        let mut out = serde_json::Map::new();
        for (key, servers) in &self.users {
            let Some(e) = entries.get(key) else { continue };
            for s in servers {
                let list = out
                    .entry(s.clone())
                    .or_insert_with(|| serde_json::Value::Array(vec![]));
                if let serde_json::Value::Array(a) = list {
                    a.push(serde_json::to_value(&e.status).unwrap_or_default());
                }
            }
        }
        serde_json::Value::Object(out)
    }
}

impl Resolve for Supply {
    fn resolve(&self, owner: &str, reference: &str) -> Result<Arc<RawBundle>, String> {
        if reference.starts_with("oci://") {
            let current = self
                .lock()
                .get(&(owner.to_string(), reference.to_string()))
                .and_then(|e| e.current.clone());
            if let Some(l) = current {
                let r = OciRef::parse(reference).map_err(|e| e.to_string())?;
                return raw_from_layer(&r, &l.bytes).map(Arc::new);
            }
            let why = self
                .lock()
                .get(&(owner.to_string(), reference.to_string()))
                .and_then(|e| e.status.message.clone());
            if let Some(why) = why {
                return Err(format!(
                    "{reference} could not be pulled ({why}) and is not in the bundle cache; gavel keeps retrying; or: {}",
                    crate::policy::source::pull_hint(reference, owner, self.config_path.as_deref())
                ));
            }
        }
        Offline::new(Some(self.cache.clone()))
            .with_config(self.config_path.clone())
            .resolve(owner, reference)
    }
}

/// The supply's view with one candidate layer in place of the current one.
struct Overlay<'a> {
    supply: &'a Supply,
    key: &'a Key,
    layer: &'a Layer,
}

impl Resolve for Overlay<'_> {
    fn resolve(&self, owner: &str, reference: &str) -> Result<Arc<RawBundle>, String> {
        if owner == self.key.0 && reference == self.key.1 {
            let r = OciRef::parse(reference).map_err(|e| e.to_string())?;
            return raw_from_layer(&r, &self.layer.bytes).map(Arc::new);
        }
        self.supply.resolve(owner, reference)
    }
}
