//! `[serve] allowed_hosts` / `allowed_origins` entries, parsed. The config
//! checks each entry with these functions at load (a typo is an error
//! naming the entry, not a silently useless allow-list entry) and
//! `front::hosts` builds its matcher from them: one parser, so a list the
//! config accepts is a list the server understands. Pure text, no HTTP
//! serving here — config sits below the fronts.

use http::Uri;
use http::uri::Authority;

/// A host as compared: without IPv6 brackets, in lower case.
pub fn normalize_host(h: &str) -> String {
    h.trim_matches('[').trim_matches(']').to_ascii_lowercase()
}

/// `scheme://host[:port]` → (scheme, host, port).
pub fn parse_origin(value: &str) -> Option<(String, String, Option<u16>)> {
    let uri = Uri::try_from(value.trim()).ok()?;
    let scheme = uri.scheme_str()?.to_ascii_lowercase();
    let authority = uri.authority()?;
    Some((
        scheme,
        normalize_host(authority.host()),
        authority.port_u16(),
    ))
}

/// An allowed `Host` entry → (host, port); no port matches any port.
pub fn allowed_host(h: &str) -> Result<(String, Option<u16>), String> {
    // A bare IPv6 address (`::1`) is a host without a port.
    if h.trim().parse::<std::net::Ipv6Addr>().is_ok() {
        return Ok((normalize_host(h.trim()), None));
    }
    let a = Authority::try_from(h.trim()).map_err(|_| {
        format!(
            "allowed host {h:?} is not a host name or host:port (e.g. \"gavel.example\" or \"gavel.example:8443\")"
        )
    })?;
    Ok((normalize_host(a.host()), a.port_u16()))
}

/// An allowed `Origin` entry → `None` for `null` (sandboxed documents),
/// else (scheme, host, port) where no port (or `:*`) matches any port.
pub fn allowed_origin(o: &str) -> Result<Option<(String, String, Option<u16>)>, String> {
    let bad = || {
        format!(
            "allowed origin {o:?} is not scheme://host[:port|:*] (e.g. \"https://app.example\" or \"http://localhost:*\")"
        )
    };
    if o.trim().eq_ignore_ascii_case("null") {
        return Ok(None);
    }
    let (base, any) = match o.trim().strip_suffix(":*") {
        Some(b) => (b, true),
        None => (o.trim(), false),
    };
    let (scheme, host, port) = parse_origin(base).ok_or_else(bad)?;
    if any && port.is_some() {
        return Err(bad());
    }
    Ok(Some((scheme, host, port)))
}
