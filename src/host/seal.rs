//! Sealed round state: what gavel hands a 2026-07-28 host as an input
//! round's `requestState`, and checks when the host retries (MRTR, SEP-2322;
//! reference `mcp-2026-era.md` §2.3–2.4).
//!
//! The spec makes `requestState` attacker-controlled: the host echoes it,
//! and may alter, replay or move it to another call. gavel never trusts
//! what comes back. A sealed state is
//!
//! ```text
//! gavel1.<base64url(payload JSON)>.<base64url(HMAC-SHA256(key, "gavel1." + payload))>
//! ```
//!
//! The MAC is checked (in constant time) before the payload is parsed, and
//! the whole token is size-checked before the MAC: checking is cheap and
//! nothing unverified is ever read. The payload binds the round to the
//! principal (who asked), the server, the method, the target (tool, prompt
//! or resource) and a digest of the arguments, carries an expiry and a
//! random nonce, and wraps whatever gavel must carry to the retry: the
//! upstream's own `requestState` (relayed byte for byte), or the id of a
//! parked call or an approval. A retry whose arguments changed, that comes
//! from another principal or after the expiry, or whose nonce was already
//! spent, is refused. Single use is the caller's to enforce with the nonce
//! ([`SpentNonces`] in one process; a shared store when instances share
//! work) — the seal alone proves integrity, not freshness.
//!
//! The key is 32 bytes or more: one per process when gavel runs alone
//! ([`SealKey::random`]), the same on every instance when several serve one
//! host behind a load balancer (from config or the environment), so a
//! retry landing on another instance opens there.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

const PREFIX: &str = "gavel1.";

/// The longest sealed state gavel will look at: the largest upstream state
/// it relays (64 KiB, `upstream::rounds::BOUNDS`) grown by base64 and the
/// binding, with room to spare. Anything longer is refused unread.
pub const MAX_SEALED_BYTES: usize = 96 * 1024;

/// Shortest key accepted: HMAC-SHA256's own block of strength.
pub const MIN_KEY_BYTES: usize = 32;

/// The sealing key. Never printed (its `Debug` says only its length).
#[derive(Clone)]
pub struct SealKey(Vec<u8>);

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SealKey({} bytes, redacted)", self.0.len())
    }
}

impl SealKey {
    /// A key of `bytes`, refused when shorter than [`MIN_KEY_BYTES`].
    pub fn new(bytes: Vec<u8>) -> Result<Self, SealError> {
        if bytes.len() < MIN_KEY_BYTES {
            return Err(SealError::ShortKey(bytes.len()));
        }
        Ok(Self(bytes))
    }

    /// A fresh key for one process: its seals open only in it.
    pub fn random() -> Self {
        let mut k = Vec::with_capacity(32);
        k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        k.extend_from_slice(uuid::Uuid::new_v4().as_bytes());
        Self(k)
    }

    fn mac(&self, data: &[u8]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.0).expect("HMAC takes a key of any length");
        m.update(data);
        m
    }
}

/// The environment variable that gives the sealing key (base64, overriding
/// `[serve] round_key_file`).
pub const KEY_ENV: &str = "GAVEL_ROUND_KEY";

/// The key several instances share, from `GAVEL_ROUND_KEY` (`env`, which
/// wins) or `[serve] round_key_file` (`file`): base64 (standard or URL-safe,
/// padded or not, surrounding whitespace ignored) of at least
/// [`MIN_KEY_BYTES`] bytes. `Ok(None)`: neither is set (a random key per
/// process). Every error names where the key came from and never quotes it.
pub fn shared_key(
    env: Option<String>,
    file: Option<&std::path::Path>,
) -> Result<Option<SealKey>, String> {
    let (text, from) = match (env, file) {
        (Some(v), _) => (v, format!("{KEY_ENV} (environment)")),
        (None, Some(f)) => {
            let from = format!("[serve] round_key_file {}", f.display());
            // A key file is small: anything larger is not one.
            let meta = std::fs::metadata(f).map_err(|e| format!("{from}: cannot read it ({e})"))?;
            if meta.len() > 4096 {
                return Err(format!(
                    "{from}: {} bytes is not a key file (base64 of 32 or more random bytes, e.g. `head -c 32 /dev/urandom | base64`)",
                    meta.len()
                ));
            }
            let text =
                std::fs::read_to_string(f).map_err(|e| format!("{from}: cannot read it ({e})"))?;
            (text, from)
        }
        (None, None) => return Ok(None),
    };
    let text = text.trim();
    let bytes = [
        &base64::engine::general_purpose::STANDARD,
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE,
        &B64,
    ]
    .iter()
    .find_map(|e| e.decode(text).ok())
    .ok_or_else(|| {
        format!(
            "{from}: not base64 (write base64 of 32 or more random bytes, e.g. `head -c 32 /dev/urandom | base64`)"
        )
    })?;
    SealKey::new(bytes)
        .map(Some)
        .map_err(|e| format!("{from}: {e}"))
}

/// What a sealed round is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A modern upstream's own round, relayed: `inner` is its state.
    Relay,
    /// A legacy upstream's server→client request, parked while the host
    /// answers: `inner` names the parked call.
    Parked,
    /// gavel's own approval question: `inner` names the approval.
    Approval,
    /// A legacy upstream's -32042 (URL elicitation required) turned into
    /// URL-mode elicitations: the retry re-issues the original call
    /// (`front/session/url_round.rs`); `inner` lists the round's keys.
    Reissue,
}

/// What a round is bound to: a retry must match every field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding<'a> {
    /// The authenticated principal (HTTP: the token's user and agent;
    /// stdio: the host's identity).
    pub principal: &'a str,
    pub server: &'a str,
    /// `tools/call`, `prompts/get` or `resources/read`.
    pub method: &'a str,
    /// The tool or prompt name or resource URI, as the host named it.
    pub target: &'a str,
    /// [`args_digest`] of the request's arguments.
    pub args: [u8; 32],
}

/// A digest of a request's arguments: SHA-256 of their JSON with keys
/// sorted (serde_json's map is ordered), so the same arguments always give
/// the same digest whatever order the host wrote them in.
pub fn args_digest(args: Option<&serde_json::Map<String, Value>>) -> [u8; 32] {
    let bytes = match args {
        Some(a) => serde_json::to_vec(a).unwrap_or_default(),
        None => b"null".to_vec(),
    };
    Sha256::digest(&bytes).into()
}

#[derive(Serialize, Deserialize)]
struct Payload {
    k: Kind,
    /// principal, server, method, target
    p: String,
    s: String,
    m: String,
    t: String,
    /// Arguments digest, hex.
    d: String,
    /// Expiry, Unix milliseconds.
    e: u64,
    /// Nonce, hex (16 random bytes).
    n: String,
    /// What the retry needs (upstream state, parked call id, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    i: Option<String>,
    /// The round's number among the rounds of one request (1 for the
    /// first): counted here, under the MAC, so a host cannot reset the cap
    /// on rounds (`upstream::rounds::MAX_INPUT_ROUNDS`). Absent in a state
    /// sealed before rounds were counted: taken as the first.
    #[serde(default = "first_round")]
    r: u32,
}

fn first_round() -> u32 {
    1
}

/// A round that opened: everything in it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub kind: Kind,
    pub inner: Option<String>,
    /// Spend it once ([`SpentNonces::spend`] or a shared store).
    pub nonce: String,
    pub expires_ms: u64,
    /// The round's number among its request's rounds (1 for the first).
    pub round: u32,
}

/// Why a sealed state was refused. Every message says what the host must
/// do: start the request again without the state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SealError {
    #[error(
        "the sealing key is {0} bytes; gavel needs at least {MIN_KEY_BYTES} (generate one with `head -c 32 /dev/urandom | base64`)"
    )]
    ShortKey(usize),
    #[error(
        "requestState is {0} bytes, longer than any gavel issues ({MAX_SEALED_BYTES}); send the request again without it"
    )]
    TooLong(usize),
    #[error(
        "requestState is not one gavel issued (malformed or altered); send the request again without it"
    )]
    Forged,
    #[error("requestState expired; send the request again without it")]
    Expired,
    #[error(
        "requestState was issued for another {0} (the retry must repeat the original request exactly); send the request again without it"
    )]
    Mismatch(&'static str),
    #[error(
        "requestState was already used (a round's state answers once); send the request again without it"
    )]
    Replayed,
    #[error(
        "too many input rounds are open at once ({0}); finish or abandon some, then send the request again"
    )]
    Full(usize),
    /// The store shared by every instance, where rounds are spent, could
    /// not say whether this one was (fail closed: it may have been).
    #[error(
        "whether this input round was already answered cannot be checked ({0}); gavel refuses the retry rather than risk answering a round twice — send the request again without requestState once the state store answers"
    )]
    Unavailable(String),
}

/// Seals a request's first round bound to `binding`, of `kind`, carrying
/// `inner`, valid until `expires_ms` (Unix milliseconds).
pub fn seal(
    key: &SealKey,
    binding: &Binding<'_>,
    kind: Kind,
    inner: Option<String>,
    expires_ms: u64,
) -> String {
    seal_numbered(key, binding, (kind, inner, 1), expires_ms)
}

/// [`seal`] for the round numbered `round` of its request (`kind`,
/// `inner`, `round`).
pub fn seal_numbered(
    key: &SealKey,
    binding: &Binding<'_>,
    (kind, inner, round): (Kind, Option<String>, u32),
    expires_ms: u64,
) -> String {
    let payload = Payload {
        k: kind,
        p: binding.principal.to_string(),
        s: binding.server.to_string(),
        m: binding.method.to_string(),
        t: binding.target.to_string(),
        d: hex::encode(binding.args),
        e: expires_ms,
        n: hex::encode(uuid::Uuid::new_v4().as_bytes()),
        i: inner,
        r: round,
    };
    let body = B64.encode(serde_json::to_vec(&payload).expect("a payload serializes"));
    let signed = format!("{PREFIX}{body}");
    let tag = B64.encode(key.mac(signed.as_bytes()).finalize().into_bytes());
    format!("{signed}.{tag}")
}

/// Opens `token` for a retry bound to `binding` at `now_ms`: size, then
/// MAC, then parse, then expiry and binding. The nonce is not spent here.
pub fn open(
    key: &SealKey,
    token: &str,
    binding: &Binding<'_>,
    now_ms: u64,
) -> Result<Opened, SealError> {
    if token.len() > MAX_SEALED_BYTES {
        return Err(SealError::TooLong(token.len()));
    }
    let rest = token.strip_prefix(PREFIX).ok_or(SealError::Forged)?;
    let (body, tag) = rest.rsplit_once('.').ok_or(SealError::Forged)?;
    let tag = B64.decode(tag).map_err(|_| SealError::Forged)?;
    key.mac(&token.as_bytes()[..PREFIX.len() + body.len()])
        .verify_slice(&tag)
        .map_err(|_| SealError::Forged)?;
    let bytes = B64.decode(body).map_err(|_| SealError::Forged)?;
    let p: Payload = serde_json::from_slice(&bytes).map_err(|_| SealError::Forged)?;
    if now_ms >= p.e {
        return Err(SealError::Expired);
    }
    let checks = [
        (p.p == binding.principal, "principal (caller)"),
        (p.s == binding.server, "server"),
        (p.m == binding.method, "method"),
        (p.t == binding.target, "tool, prompt or resource"),
        (p.d == hex::encode(binding.args), "set of arguments"),
    ];
    if let Some((_, what)) = checks.iter().find(|(ok, _)| !ok) {
        return Err(SealError::Mismatch(what));
    }
    Ok(Opened {
        kind: p.k,
        inner: p.i,
        nonce: p.n,
        expires_ms: p.e,
        round: p.r,
    })
}

/// Nonces spent in this process, each kept until its round would have
/// expired anyway. Bounded: when `cap` unexpired nonces are held, spending
/// another is refused ([`SealError::Full`]) rather than forgetting one — a
/// forgotten nonce would make its round replayable.
#[derive(Debug)]
pub struct SpentNonces {
    cap: usize,
    spent: Mutex<HashMap<String, u64>>,
}

impl SpentNonces {
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            spent: Mutex::new(HashMap::new()),
        }
    }

    /// Spends `opened`'s nonce at `now_ms`: Ok once, [`SealError::Replayed`]
    /// after.
    pub fn spend(&self, opened: &Opened, now_ms: u64) -> Result<(), SealError> {
        let mut spent = self.spent.lock().unwrap_or_else(|p| p.into_inner());
        if spent.contains_key(&opened.nonce) {
            return Err(SealError::Replayed);
        }
        if spent.len() >= self.cap {
            spent.retain(|_, exp| *exp > now_ms);
            if spent.len() >= self.cap {
                return Err(SealError::Full(self.cap));
            }
        }
        spent.insert(opened.nonce.clone(), opened.expires_ms);
        Ok(())
    }
}

/// How long a host has to answer a round gavel sealed: long enough for a
/// person to read a question and answer it.
pub const ROUND_TTL: std::time::Duration = std::time::Duration::from_secs(10 * 60);

/// Unexpired spent nonces one process keeps ([`SpentNonces`]).
pub const MAX_OPEN_ROUNDS: usize = 65_536;

/// Where rounds are spent when several instances share one key: a store
/// they all reach (Redis, `[state]`), so a round answered on one instance
/// is refused on every other.
pub trait SharedSpends: Send + Sync {
    /// Marks `nonce` spent for `ttl_ms`: Ok(true) the first time, Ok(false)
    /// when it already was; Err when the store cannot say. Blocking (a
    /// network round trip): called off the event loop.
    fn spend(&self, nonce: &str, ttl_ms: u64) -> Result<bool, String>;
}

impl SharedSpends for crate::state::redis::RedisStore {
    fn spend(&self, nonce: &str, ttl_ms: u64) -> Result<bool, String> {
        self.set_once(&format!("gavel:round:{nonce}"), ttl_ms)
            .map_err(|e| e.to_string())
    }
}

/// The gateway's sealer: its key and the nonces it has seen spent. One per
/// process ([`crate::gateway::Gateway::sealer`]).
pub struct Sealer {
    key: SealKey,
    spent: SpentNonces,
    ttl: std::time::Duration,
    /// Where [`Sealer::spend`] spends when instances share the key.
    shared: Option<std::sync::Arc<dyn SharedSpends>>,
    /// The time expiries are counted in (gavel's clock: a test moves it).
    clock: Option<std::sync::Arc<dyn crate::state::clock::Clock>>,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer")
            .field("key", &self.key)
            .field("ttl", &self.ttl)
            .field("shared", &self.shared.is_some())
            .finish_non_exhaustive()
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Sealer {
    pub fn new(key: SealKey) -> Self {
        Self {
            key,
            spent: SpentNonces::new(MAX_OPEN_ROUNDS),
            ttl: ROUND_TTL,
            shared: None,
            clock: None,
        }
    }

    /// Spends rounds in `shared` too ([`Sealer::spend`]).
    pub fn with_shared(mut self, shared: std::sync::Arc<dyn SharedSpends>) -> Self {
        self.shared = Some(shared);
        self
    }

    /// Counts expiries on `clock` (gavel's, injectable) instead of the
    /// system's.
    pub fn with_clock(mut self, clock: std::sync::Arc<dyn crate::state::clock::Clock>) -> Self {
        self.clock = Some(clock);
        self
    }

    fn now_ms(&self) -> u64 {
        match &self.clock {
            Some(c) => (c.now() * 1000.0).max(0.0) as u64,
            None => now_ms(),
        }
    }

    /// Seals round number `round` of a request (1 for its first) for
    /// `binding`, expiring [`ROUND_TTL`] from now. The caller keeps the
    /// count within the cap (`front/session/host_round.rs`,
    /// `HostRound::next_round`).
    pub fn seal(
        &self,
        binding: &Binding<'_>,
        kind: Kind,
        inner: Option<String>,
        round: u32,
    ) -> String {
        let expires = self.now_ms().saturating_add(self.ttl.as_millis() as u64);
        seal_numbered(&self.key, binding, (kind, inner, round), expires)
    }

    /// Opens `token` for `binding` without spending it: the caller checks
    /// what else the retry carries first, then [`Sealer::spend`]s it.
    pub fn open(&self, token: &str, binding: &Binding<'_>) -> Result<Opened, SealError> {
        open(&self.key, token, binding, self.now_ms())
    }

    /// Spends an opened round: in this process, and, when instances share
    /// the key and a store ([`Sealer::with_shared`]), in that store too, so
    /// the round answers once across all of them. A store that cannot be
    /// reached refuses the round ([`SealError::Unavailable`]).
    pub async fn spend(&self, opened: &Opened) -> Result<(), SealError> {
        let now = self.now_ms();
        self.spent.spend(opened, now)?;
        let Some(shared) = self.shared.clone() else {
            return Ok(());
        };
        let nonce = opened.nonce.clone();
        // The store's own expiry: at least a second, so a round opened at
        // its last millisecond is still remembered past it.
        let ttl = opened.expires_ms.saturating_sub(now).max(1000);
        let spent = tokio::task::spawn_blocking(move || shared.spend(&nonce, ttl))
            .await
            .map_err(|e| SealError::Unavailable(e.to_string()))?;
        match spent {
            Ok(true) => Ok(()),
            Ok(false) => Err(SealError::Replayed),
            Err(e) => Err(SealError::Unavailable(e)),
        }
    }
}

/// What a message between instances is signed under, apart from rounds
/// (a state can never pass for a message, nor a message for a state).
const MESSAGE_DOMAIN: &[u8] = b"gavel-bus1\0";

impl Sealer {
    /// `body` signed for another instance that shares the key
    /// (`front/session/handoff.rs`): the MAC, then the body. Only an
    /// instance with this key can make one a receiver accepts.
    pub fn sign_message(&self, body: &[u8]) -> Vec<u8> {
        let mut m = self.key.mac(MESSAGE_DOMAIN);
        m.update(body);
        let mut out = m.finalize().into_bytes().to_vec();
        out.extend_from_slice(body);
        out
    }

    /// The body of a signed message, when its MAC is this key's (checked
    /// in constant time, before anything reads the body).
    pub fn open_message<'a>(&self, signed: &'a [u8]) -> Option<&'a [u8]> {
        let (tag, body) = signed.split_at_checked(32)?;
        let mut m = self.key.mac(MESSAGE_DOMAIN);
        m.update(body);
        m.verify_slice(tag).ok()?;
        Some(body)
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
