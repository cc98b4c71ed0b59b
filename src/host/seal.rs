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
}

/// A round that opened: everything in it was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Opened {
    pub kind: Kind,
    pub inner: Option<String>,
    /// Spend it once ([`SpentNonces::spend`] or a shared store).
    pub nonce: String,
    pub expires_ms: u64,
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
}

/// Seals a round bound to `binding`, of `kind`, carrying `inner`, valid
/// until `expires_ms` (Unix milliseconds).
pub fn seal(
    key: &SealKey,
    binding: &Binding<'_>,
    kind: Kind,
    inner: Option<String>,
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

/// The gateway's sealer: its key and the nonces it has seen spent. One per
/// process ([`crate::gateway::Gateway::sealer`]).
#[derive(Debug)]
pub struct Sealer {
    key: SealKey,
    spent: SpentNonces,
    ttl: std::time::Duration,
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
        }
    }

    /// Seals a round for `binding`, expiring [`ROUND_TTL`] from now.
    pub fn seal(&self, binding: &Binding<'_>, kind: Kind, inner: Option<String>) -> String {
        let expires = now_ms().saturating_add(self.ttl.as_millis() as u64);
        seal(&self.key, binding, kind, inner, expires)
    }

    /// Opens `token` for `binding` and spends its nonce: a round answers
    /// once in this process.
    pub fn open_once(&self, token: &str, binding: &Binding<'_>) -> Result<Opened, SealError> {
        let now = now_ms();
        let opened = open(&self.key, token, binding, now)?;
        self.spent.spend(&opened, now)?;
        Ok(opened)
    }
}

#[cfg(test)]
#[path = "seal_tests.rs"]
mod tests;
