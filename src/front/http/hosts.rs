//! DNS-rebinding and cross-origin protection for `gavel serve`, applied to
//! every route before anything else answers: the bearer-token check (whose
//! 401 would otherwise be served to a rebinding page), the `server/discover`
//! refusal and the protected-resource metadata. rmcp checks the same lists
//! again for `/mcp`; this check matches the way rmcp does (a host entry
//! without a port matches any port; an origin entry with `:*` matches any
//! port) so the two never disagree, only run in a different place.

use axum::extract::Request;
use axum::http::{HeaderMap, StatusCode, Uri, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::config::hosts::{allowed_host, allowed_origin, normalize_host, parse_origin};

/// The accepted `Host` and `Origin` values, parsed once.
#[derive(Debug, Clone)]
pub struct Allowed {
    hosts: Vec<(String, Option<u16>)>,
    origins: Vec<AllowedOrigin>,
}

#[derive(Debug, Clone, PartialEq)]
enum AllowedOrigin {
    Null,
    Tuple {
        scheme: String,
        host: String,
        /// None: any port (`:*`, or no port given).
        port: Option<u16>,
    },
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Allowed {
    /// Entries that do not parse are reported by name: a typo in an allow
    /// list must not silently allow nothing (or everything).
    pub fn new(hosts: &[String], origins: &[String]) -> anyhow::Result<Self> {
        let hosts = hosts
            .iter()
            .map(|h| allowed_host(h).map_err(anyhow::Error::msg))
            .collect::<anyhow::Result<_>>()?;
        let origins = origins
            .iter()
            .map(|o| {
                Ok(match allowed_origin(o).map_err(anyhow::Error::msg)? {
                    None => AllowedOrigin::Null,
                    Some((scheme, host, port)) => AllowedOrigin::Tuple { scheme, host, port },
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(Allowed { hosts, origins })
    }

    fn host_ok(&self, host: &str, port: Option<u16>) -> bool {
        self.hosts
            .iter()
            .any(|(h, p)| *h == host && p.is_none_or(|p| Some(p) == port))
    }

    fn origin_ok(&self, value: &str) -> bool {
        if value.trim().eq_ignore_ascii_case("null") {
            return self.origins.contains(&AllowedOrigin::Null);
        }
        let Some((scheme, host, port)) = parse_origin(value) else {
            return false;
        };
        let port = port.or_else(|| default_port(&scheme));
        self.origins.iter().any(|a| match a {
            AllowedOrigin::Null => false,
            AllowedOrigin::Tuple {
                scheme: s,
                host: h,
                port: p,
            } => *s == scheme && *h == host && p.is_none_or(|p| Some(p) == port),
        })
    }

    /// Why a request is refused, or None.
    pub fn refusal(&self, uri: &Uri, headers: &HeaderMap) -> Option<(StatusCode, String)> {
        // Two `Host`s (or `Origin`s) are two answers to one question: this
        // check would read the first, rmcp or a proxy in front perhaps
        // another. RFC 9112 §3.2: a request with more than one Host is 400.
        for (name, shown) in [(header::HOST, "Host"), (header::ORIGIN, "Origin")] {
            if headers.get_all(&name).iter().nth(1).is_some() {
                tracing::warn!("refused a request with more than one {shown} header");
                return Some((
                    StatusCode::BAD_REQUEST,
                    format!("Bad Request: more than one {shown} header; send exactly one"),
                ));
            }
        }
        // An absolute-form target names the host too; it must be the same.
        if let (Some(target), Some(host)) = (uri.authority(), headers.get(header::HOST))
            && !host
                .as_bytes()
                .eq_ignore_ascii_case(target.as_str().as_bytes())
        {
            return Some((
                StatusCode::BAD_REQUEST,
                "Bad Request: the request target names another host than the Host header".into(),
            ));
        }
        let authority = match headers.get(header::HOST) {
            Some(h) => {
                let parsed = h
                    .to_str()
                    .ok()
                    .and_then(|s| axum::http::uri::Authority::try_from(s).ok());
                match parsed {
                    Some(a) => a,
                    None => {
                        return Some((
                            StatusCode::BAD_REQUEST,
                            "Bad Request: the Host header is not a host or host:port".into(),
                        ));
                    }
                }
            }
            None => match uri.authority() {
                Some(a) => a.clone(),
                None => {
                    return Some((
                        StatusCode::BAD_REQUEST,
                        "Bad Request: missing Host header".into(),
                    ));
                }
            },
        };
        let host = normalize_host(authority.host());
        if !self.host_ok(&host, authority.port_u16()) {
            tracing::warn!(host = %authority, "refused a request with a Host that is not allowed (possible DNS rebinding)");
            return Some((
                StatusCode::FORBIDDEN,
                format!(
                    "Forbidden: Host {authority} is not allowed (add it with --allowed-host or [serve] allowed_hosts if this server is really reached under that name)"
                ),
            ));
        }
        if let Some(origin) = headers.get(header::ORIGIN) {
            let ok = origin.to_str().is_ok_and(|o| self.origin_ok(o));
            if !ok {
                tracing::warn!(origin = ?origin, "refused a request from a browser Origin that is not allowed");
                return Some((
                    StatusCode::FORBIDDEN,
                    format!(
                        "Forbidden: Origin {} is not allowed (add it with --allowed-origin or [serve] allowed_origins)",
                        String::from_utf8_lossy(origin.as_bytes())
                    ),
                ));
            }
        }
        None
    }
}

/// The axum middleware: the outermost layer of `gavel serve`'s router.
pub async fn check(allowed: std::sync::Arc<Allowed>, req: Request, next: Next) -> Response {
    match allowed.refusal(req.uri(), req.headers()) {
        Some((status, why)) => (status, why).into_response(),
        None => next.run(req).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    fn allowed() -> Allowed {
        Allowed::new(
            &[
                "localhost".into(),
                "127.0.0.1".into(),
                "::1".into(),
                "gavel.example:8443".into(),
            ],
            &[
                "http://localhost:*".into(),
                "https://app.example".into(),
                "https://exact.example:9000".into(),
            ],
        )
        .unwrap()
    }

    /// Two Host (or Origin) headers, in any spelling, are refused even when
    /// the first is allowed; a target naming another host than Host too.
    #[test]
    fn duplicate_host_or_origin_is_refused() {
        let a = allowed();
        let uri: Uri = "/mcp".parse().unwrap();
        for (first, second) in [("Host", "host"), ("host", "HOST")] {
            let mut h = HeaderMap::new();
            h.append(
                axum::http::HeaderName::from_bytes(first.as_bytes()).unwrap(),
                "localhost:8080".parse().unwrap(),
            );
            h.append(
                axum::http::HeaderName::from_bytes(second.as_bytes()).unwrap(),
                "evil.example".parse().unwrap(),
            );
            let (status, why) = a.refusal(&uri, &h).expect("refused");
            assert_eq!(status, StatusCode::BAD_REQUEST);
            assert!(why.contains("more than one Host"), "{why}");
        }
        let mut h = headers(&[("host", "localhost:8080")]);
        h.append(header::ORIGIN, "http://localhost:3000".parse().unwrap());
        h.append(header::ORIGIN, "https://evil.example".parse().unwrap());
        let (status, why) = a.refusal(&uri, &h).expect("refused");
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(why.contains("more than one Origin"), "{why}");
        let absolute: Uri = "http://evil.example/mcp".parse().unwrap();
        let h = headers(&[("host", "localhost:8080")]);
        assert_eq!(a.refusal(&absolute, &h).unwrap().0, StatusCode::BAD_REQUEST);
        let same: Uri = "http://localhost:8080/mcp".parse().unwrap();
        assert!(a.refusal(&same, &h).is_none());
    }

    #[test]
    fn hosts_match_by_name_and_optional_port() {
        let a = allowed();
        let uri = Uri::from_static("/mcp");
        for ok in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:1",
            "[::1]:80",
            "gavel.example:8443",
        ] {
            assert!(a.refusal(&uri, &headers(&[("host", ok)])).is_none(), "{ok}");
        }
        for bad in [
            "evil.example",
            "gavel.example",
            "gavel.example:443",
            "127.0.0.2:8080",
        ] {
            let (status, why) = a.refusal(&uri, &headers(&[("host", bad)])).unwrap();
            assert_eq!(status, StatusCode::FORBIDDEN, "{bad}");
            assert!(why.contains("--allowed-host"), "{why}");
        }
        let (status, _) = a.refusal(&uri, &headers(&[("host", "a b")])).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, _) = a.refusal(&uri, &HeaderMap::new()).unwrap();
        assert_eq!(status, StatusCode::BAD_REQUEST);
    }

    #[test]
    fn origins_match_scheme_host_and_port() {
        let a = allowed();
        let uri = Uri::from_static("/mcp");
        let with = |o: &str| headers(&[("host", "127.0.0.1:8080"), ("origin", o)]);
        for ok in [
            "http://localhost:3000",
            "http://localhost",
            "https://app.example",
            "https://app.example:444",
            "https://exact.example:9000",
        ] {
            assert!(a.refusal(&uri, &with(ok)).is_none(), "{ok}");
        }
        for bad in [
            "https://localhost:3000",
            "https://evil.example",
            "https://exact.example",
            "null",
            "not an origin",
        ] {
            let (status, why) = a.refusal(&uri, &with(bad)).unwrap();
            assert_eq!(status, StatusCode::FORBIDDEN, "{bad}");
            assert!(why.contains("--allowed-origin"), "{why}");
        }
    }

    #[test]
    fn bad_entries_are_refused_by_name() {
        let e = Allowed::new(&["a b".into()], &[]).unwrap_err().to_string();
        assert!(e.contains("\"a b\""), "{e}");
        let e = Allowed::new(&[], &["app.example".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("scheme://host"), "{e}");
        let e = Allowed::new(&[], &["https://a.example:1:*".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("allowed origin"), "{e}");
    }
}
