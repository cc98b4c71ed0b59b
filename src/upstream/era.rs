//! Which MCP era gavel speaks to one upstream (`servers.NAME.era`), and what
//! it remembers of each upstream's era between starts.
//!
//! The legacy era opens with `initialize` (MCP 2024-11-05 … 2025-11-25); the
//! modern one (2026-07-28) has no handshake: gavel asks `server/discover`
//! and every request carries its own `_meta`. rmcp connects either way
//! (`ClientLifecycleMode::Initialize` / `Discover`).
//!
//! `auto` (the default) opens with `initialize`. Every server that predates
//! 2026-07-28 and every dual-era server accepts it, so no existing setup
//! sees anything new — no probe a silent legacy server would make gavel wait
//! 10 s for (rmcp's `Auto` probe timeout), no unknown method a strict one
//! would exit on — and a dual-era server stays on the era in which gavel
//! relays its list changes, elicitation and sampling to a legacy host. A
//! server that refuses `initialize` as 2026-07-28-only (`-32022`, what the
//! spec asks of it), or closes the connection on it, is connected again
//! with `server/discover`. The era that
//! worked is remembered for the server's command or URL in this process, so
//! a restart goes straight to it; a remembered era that fails is forgotten,
//! so a server that changed era is found again on the next start.
//!
//! `legacy` and `modern` allow one era only. An upstream that refuses it is
//! an [`EraMismatch`]: permanent until the config changes, so gavel stops
//! restarting it and says why (`gavel status`, and the answer to every
//! request for that server).

use std::collections::HashMap;
use std::sync::Mutex;

use rmcp::model::{
    ClientCapabilities, ElicitationCapability, ErrorCode, LoggingLevel, ProtocolVersion,
    RequestMetaObject, RootsCapabilities,
};
use rmcp::service::{ClientInitializeError, ClientLifecycleMode};

use crate::config::{Era, ServerConfig, UpstreamTransport};
use crate::sync::Recover;

/// The era a connection was opened in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spoken {
    /// `initialize`, MCP ≤ 2025-11-25.
    Legacy,
    /// `server/discover` and per-request `_meta`, MCP 2026-07-28.
    Modern,
}

impl Spoken {
    pub fn as_str(self) -> &'static str {
        match self {
            Spoken::Legacy => "legacy",
            Spoken::Modern => "modern",
        }
    }

    /// How rmcp opens a connection in this era. Modern: 2026-07-28, the one
    /// modern revision gavel knows.
    pub fn lifecycle(self) -> ClientLifecycleMode {
        match self {
            Spoken::Legacy => ClientLifecycleMode::Initialize,
            Spoken::Modern => ClientLifecycleMode::Discover {
                preferred_versions: vec![ProtocolVersion::V_2026_07_28],
            },
        }
    }

    fn other(self) -> Spoken {
        match self {
            Spoken::Legacy => Spoken::Modern,
            Spoken::Modern => Spoken::Legacy,
        }
    }
}

/// An upstream that does not speak the era gavel must use with it.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("server {server:?} cannot be used: {reason}")]
pub struct EraMismatch {
    pub server: String,
    pub reason: String,
}

/// What a failed opening says about the upstream's era: its refusal of
/// the era gavel tried, in words.
#[derive(Debug, Clone, PartialEq)]
pub struct Refusal {
    pub tried: Spoken,
    pub said: String,
}

/// The eras a start tries, in order: one, or two when the first may be
/// refused for the other.
pub fn plan(cfg: &ServerConfig) -> Vec<Spoken> {
    match cfg.era {
        Era::Legacy => vec![Spoken::Legacy],
        Era::Modern => vec![Spoken::Modern],
        Era::Auto => {
            let first = remembered(cfg).unwrap_or(Spoken::Legacy);
            vec![first, first.other()]
        }
    }
}

/// Reads a failed opening in era `tried`: `Some` when the upstream refused
/// that era (it answered, and the answer is about the era), `None` for
/// every other failure (a crash, a timeout, a transport error), which is a
/// start failure like any other.
pub fn refusal(tried: Spoken, e: &ClientInitializeError) -> Option<Refusal> {
    let said = match (tried, e) {
        // -32022 is a 2026-07-28 code: a legacy server never sends it, and
        // a modern-only one answers `initialize` with it.
        (Spoken::Legacy, ClientInitializeError::JsonRpcError(d))
            if d.code == ErrorCode::UNSUPPORTED_PROTOCOL_VERSION =>
        {
            let supported = d
                .data
                .as_ref()
                .and_then(|v| v.get("supported"))
                .map(|s| format!(", supporting {s}"))
                .unwrap_or_default();
            format!(
                "it refused initialize as a MCP 2026-07-28 server ({}: {}{supported})",
                d.code.0, d.message
            )
        }
        // rmcp's Discover mode ends with the correlated error a legacy
        // server answers `server/discover` with (-32601, -32602, …); the
        // two modern rejections are about the request, not the era.
        (Spoken::Modern, ClientInitializeError::JsonRpcError(d))
            if d.code != ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY
                && d.code != ErrorCode::HEADER_MISMATCH =>
        {
            format!(
                "it does not speak MCP 2026-07-28: server/discover was answered {}: {}",
                d.code.0, d.message
            )
        }
        (
            Spoken::Modern,
            ClientInitializeError::NoCompatibleProtocolVersion {
                server_supported, ..
            },
        ) => format!(
            "it does not speak MCP 2026-07-28: it supports only {}",
            server_supported
                .iter()
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        _ => return None,
    };
    Some(Refusal { tried, said })
}

/// Whether a failed opening ended with the connection closed (a child that
/// exited, a transport that broke): what a strict server may do on a
/// request of the era it does not speak, so `auto` tries the other one.
pub fn closed(e: &ClientInitializeError) -> bool {
    matches!(
        e,
        ClientInitializeError::ConnectionClosed(_) | ClientInitializeError::TransportError { .. }
    )
}

/// The mismatch to report once every era `cfg` allows was refused.
pub fn mismatch(cfg: &ServerConfig, refusals: &[Refusal]) -> EraMismatch {
    let said: Vec<&str> = refusals.iter().map(|r| r.said.as_str()).collect();
    let fix = match cfg.era {
        Era::Legacy => {
            "; servers.{name}.era = \"legacy\" allows initialize only: set era = \"auto\" (or \"modern\") to reach it with server/discover"
        }
        Era::Modern => {
            "; servers.{name}.era = \"modern\" allows server/discover only: set era = \"auto\" (or \"legacy\") to reach it with initialize"
        }
        Era::Auto => "; it speaks neither era gavel knows (MCP 2024-11-05 … 2026-07-28)",
    };
    EraMismatch {
        server: cfg.name.clone(),
        reason: format!(
            "{}{}",
            said.join("; and "),
            fix.replace("{name}", &cfg.name)
        ),
    }
}

/// What gavel remembers: per server and command (or URL), the era its last
/// start used. Process-wide, so that every host session's upstream and
/// every restart share it.
static REMEMBERED: Mutex<Option<HashMap<String, Spoken>>> = Mutex::new(None);

/// The server as the memory knows it: its name and how it is reached (a
/// changed command or URL is another server).
fn key(cfg: &ServerConfig) -> String {
    match &cfg.transport {
        UpstreamTransport::Stdio { command, args, .. } => {
            format!("{}\0stdio\0{command}\0{}", cfg.name, args.join("\0"))
        }
        UpstreamTransport::Http { url, .. } => format!("{}\0http\0{url}", cfg.name),
    }
}

pub fn remembered(cfg: &ServerConfig) -> Option<Spoken> {
    REMEMBERED
        .lock()
        .recover()
        .as_ref()
        .and_then(|m| m.get(&key(cfg)).copied())
}

pub fn remember(cfg: &ServerConfig, era: Spoken) {
    REMEMBERED
        .lock()
        .recover()
        .get_or_insert_with(HashMap::new)
        .insert(key(cfg), era);
}

pub fn forget(cfg: &ServerConfig) {
    if let Some(m) = REMEMBERED.lock().recover().as_mut() {
        m.remove(&key(cfg));
    }
}

/// `_meta` keys that describe the host's connection to gavel (MCP
/// 2026-07-28 §`_meta`): its protocol version, identity, capabilities, log
/// level and a listen stream's id. They never travel upstream: on the hop to
/// the upstream gavel is the client, and rmcp stamps that hop's own values
/// on a modern connection — the host's would overwrite them (rmcp extends
/// its stamp with the forwarded `_meta`), and a legacy upstream that gets
/// the 2026 envelope may refuse the request.
const HOST_CONNECTION_KEYS: &[&str] = &[
    "io.modelcontextprotocol/protocolVersion",
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/clientCapabilities",
    "io.modelcontextprotocol/logLevel",
    "io.modelcontextprotocol/subscriptionId",
];

/// The host's `_meta` as it may travel upstream: everything but
/// [`HOST_CONNECTION_KEYS`] (trace context, vendor keys and the progress
/// token — which rmcp replaces with its own — pass).
pub fn upstream_meta(host: &RequestMetaObject) -> RequestMetaObject {
    let mut meta = host.clone();
    for k in HOST_CONNECTION_KEYS {
        meta.0.0.remove(*k);
    }
    meta
}

/// The capabilities gavel declares on a legacy host's request to a modern
/// upstream: what it can honour for this request (reference §2.2) — the
/// host's own elicitation, sampling and roots, which gavel asks it for
/// when the upstream's input round needs them (`rounds`). Nothing else:
/// no tasks, no extensions, no roots `listChanged` (gone in 2026-07-28). An
/// `elicitation` object naming no mode is form mode, said explicitly.
pub fn relayable(host: &ClientCapabilities) -> ClientCapabilities {
    let mut caps = ClientCapabilities::default();
    caps.elicitation = host.elicitation.clone().map(|e| {
        if e.form.is_none() && e.url.is_none() {
            ElicitationCapability::new().with_form(Default::default())
        } else {
            e
        }
    });
    caps.sampling = host.sampling.clone();
    caps.roots = host.roots.as_ref().map(|_| RootsCapabilities::default());
    caps
}

const CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
const LOG_LEVEL: &str = "io.modelcontextprotocol/logLevel";

/// gavel's own per-request keys on a legacy host's request to a modern
/// upstream (rmcp stamps version and client info): the capabilities
/// gavel can honour ([`relayable`]), and the level the host set with
/// `logging/setLevel`, if it did and the upstream logs — a modern server
/// sends log messages for a request only when it carries a level.
pub fn stamp_legacy_host(
    meta: &mut RequestMetaObject,
    host: &ClientCapabilities,
    level: Option<LoggingLevel>,
) {
    let caps = serde_json::to_value(relayable(host)).unwrap_or_default();
    meta.0.0.insert(CLIENT_CAPABILITIES.into(), caps);
    if let Some(level) = level.and_then(|l| serde_json::to_value(l).ok()) {
        meta.0.0.insert(LOG_LEVEL.into(), level);
    }
}

/// The capabilities a 2026-07-28 request declares in its own `_meta`
/// (`None` for a request of the `initialize` era, whatever rmcp made up
/// as its peer's info).
pub fn modern_request_capabilities(meta: &RequestMetaObject) -> Option<ClientCapabilities> {
    meta.protocol_version()
        .filter(|v| !v.has_initialize())
        .and_then(|_| meta.client_capabilities())
}

/// gavel's capabilities on a 2026-07-28 host's request to a modern
/// upstream: what it can relay of the capabilities this very request
/// declares ([`relayable`]) — the upstream's input rounds are passed to
/// the host, which answers them itself — and this request's own log level,
/// when it set one and the upstream logs (B13: the upstream's log messages
/// for the request are passed to the request's caller,
/// `host::questions::InFlight::log_sink`).
pub fn stamp_modern_host(
    meta: &mut RequestMetaObject,
    host: &ClientCapabilities,
    level: Option<LoggingLevel>,
) {
    let caps = serde_json::to_value(relayable(host)).unwrap_or_default();
    meta.0.0.insert(CLIENT_CAPABILITIES.into(), caps);
    if let Some(level) = level.and_then(|l| serde_json::to_value(l).ok()) {
        meta.0.0.insert(LOG_LEVEL.into(), level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ErrorData;
    use serde_json::json;

    fn cfg(name: &str, era: Era) -> ServerConfig {
        let mut c =
            crate::config::Config::single_stdio_server(name, "node".into(), vec!["s.mjs".into()])
                .unwrap()
                .servers
                .remove(name)
                .unwrap();
        c.era = era;
        c
    }

    #[test]
    fn auto_starts_legacy_then_remembers_per_command() {
        let a = cfg("era-test-a", Era::Auto);
        assert_eq!(plan(&a), vec![Spoken::Legacy, Spoken::Modern]);
        remember(&a, Spoken::Modern);
        assert_eq!(plan(&a), vec![Spoken::Modern, Spoken::Legacy]);
        // Another command under the same name is another server.
        let mut moved = a.clone();
        if let UpstreamTransport::Stdio { args, .. } = &mut moved.transport {
            args.push("--other".into());
        }
        assert_eq!(remembered(&moved), None);
        forget(&a);
        assert_eq!(plan(&a), vec![Spoken::Legacy, Spoken::Modern]);
        // A fixed era ignores the memory.
        remember(&a, Spoken::Modern);
        assert_eq!(plan(&cfg("era-test-a", Era::Legacy)), vec![Spoken::Legacy]);
        assert_eq!(plan(&cfg("era-test-a", Era::Modern)), vec![Spoken::Modern]);
        forget(&a);
    }

    #[test]
    fn refusals_are_era_answers_only() {
        let modern_only = ClientInitializeError::JsonRpcError(ErrorData::new(
            ErrorCode::UNSUPPORTED_PROTOCOL_VERSION,
            "Unsupported protocol version",
            Some(json!({"supported": ["2026-07-28"], "requested": "2025-11-25"})),
        ));
        let r = refusal(Spoken::Legacy, &modern_only).unwrap();
        assert!(
            r.said.contains("-32022") && r.said.contains("2026-07-28"),
            "{}",
            r.said
        );
        // The same answer to discover is version negotiation, not legacy.
        assert_eq!(
            refusal(Spoken::Modern, &modern_only).map(|r| r.tried),
            Some(Spoken::Modern)
        );
        let not_found = ClientInitializeError::JsonRpcError(ErrorData::new(
            ErrorCode::METHOD_NOT_FOUND,
            "Method not found",
            None,
        ));
        assert!(
            refusal(Spoken::Modern, &not_found)
                .unwrap()
                .said
                .contains("-32601")
        );
        // A legacy server's ordinary initialize error is not an era answer.
        assert_eq!(refusal(Spoken::Legacy, &not_found), None);
        let capability = ClientInitializeError::JsonRpcError(ErrorData::new(
            ErrorCode::MISSING_REQUIRED_CLIENT_CAPABILITY,
            "needs sampling",
            None,
        ));
        assert_eq!(refusal(Spoken::Modern, &capability), None);
        let eof = ClientInitializeError::ConnectionClosed("eof".into());
        assert_eq!(refusal(Spoken::Legacy, &eof), None);
        assert_eq!(refusal(Spoken::Modern, &eof), None);
        assert!(closed(&eof));
        assert!(!closed(&not_found) && !closed(&modern_only));
    }

    #[test]
    fn a_mismatch_names_the_server_what_it_said_and_the_fix() {
        let r = Refusal {
            tried: Spoken::Legacy,
            said: "it refused initialize as a MCP 2026-07-28 server".into(),
        };
        let m = mismatch(&cfg("notes", Era::Legacy), &[r]);
        let text = m.to_string();
        assert!(
            text.starts_with("server \"notes\" cannot be used: it refused initialize"),
            "{text}"
        );
        assert!(text.contains("servers.notes.era = \"legacy\""), "{text}");
        assert!(text.contains("set era = \"auto\""), "{text}");
    }

    #[test]
    fn a_legacy_host_is_declared_upstream_with_what_gavel_can_relay() {
        let host: ClientCapabilities = serde_json::from_value(json!({
            "elicitation": {},
            "sampling": {"tools": {}},
            "roots": {"listChanged": true},
            "experimental": {"x": {}},
        }))
        .unwrap();
        let mut meta = RequestMetaObject::default();
        stamp_legacy_host(&mut meta, &host, Some(LoggingLevel::Warning));
        assert_eq!(
            serde_json::to_value(&meta).unwrap(),
            json!({
                "io.modelcontextprotocol/clientCapabilities": {
                    "elicitation": {"form": {}},
                    "sampling": {"tools": {}},
                    "roots": {},
                },
                "io.modelcontextprotocol/logLevel": "warning",
            })
        );
        let mut meta = RequestMetaObject::default();
        stamp_legacy_host(&mut meta, &ClientCapabilities::default(), None);
        assert_eq!(
            serde_json::to_value(&meta).unwrap(),
            json!({"io.modelcontextprotocol/clientCapabilities": {}})
        );
    }

    #[test]
    fn a_modern_hosts_request_declares_upstream_what_it_declared_that_gavel_can_relay() {
        let host: ClientCapabilities = serde_json::from_value(json!({
            "elicitation": {"url": {}},
            "tasks": {},
            "experimental": {"x": {}},
        }))
        .unwrap();
        let mut meta = RequestMetaObject::default();
        stamp_modern_host(&mut meta, &host, None);
        assert_eq!(
            serde_json::to_value(&meta).unwrap(),
            json!({"io.modelcontextprotocol/clientCapabilities": {"elicitation": {"url": {}}}})
        );
        // The request's own level, when it set one (and the upstream logs).
        stamp_modern_host(&mut meta, &host, Some(LoggingLevel::Info));
        assert_eq!(meta.0.0["io.modelcontextprotocol/logLevel"], "info");
    }

    #[test]
    fn connection_keys_of_the_host_stay_behind() {
        let host: RequestMetaObject = serde_json::from_value(json!({
            "progressToken": 7,
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
            "dev.gavel/cumulative_tokens": 12,
            "io.modelcontextprotocol/protocolVersion": "2026-07-28",
            "io.modelcontextprotocol/clientInfo": {"name": "host", "version": "1"},
            "io.modelcontextprotocol/clientCapabilities": {"sampling": {}},
            "io.modelcontextprotocol/logLevel": "debug",
            "io.modelcontextprotocol/subscriptionId": 3,
        }))
        .unwrap();
        let up = serde_json::to_value(upstream_meta(&host)).unwrap();
        assert_eq!(
            up,
            json!({
                "progressToken": 7,
                "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
                "dev.gavel/cumulative_tokens": 12,
            })
        );
    }
}
