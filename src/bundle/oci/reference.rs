//! `oci://registry[:port]/repository(:tag|@sha256:digest)` — how ops pin a
//! server's bundle. A tag is polled for changes; a digest pin never moves.
//! gavel asks for an explicit tag or digest: an implicit `latest` is how an
//! unreviewed policy reaches production.

use std::fmt;

/// A parsed bundle reference.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct OciRef {
    /// `host` or `host:port`, as written (lowercased).
    pub registry: String,
    pub repository: String,
    pub tag: Option<String>,
    /// `sha256:<64 hex>`: the manifest (or index) digest.
    pub digest: Option<String>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("bundle reference {reference:?}: {message}")]
pub struct RefError {
    pub reference: String,
    pub message: String,
}

impl OciRef {
    /// Parses `oci://…`. Every refusal says what a valid reference looks like.
    pub fn parse(s: &str) -> Result<Self, RefError> {
        let err = |m: &str| RefError {
            reference: s.to_string(),
            message: m.to_string(),
        };
        let rest = s
            .strip_prefix("oci://")
            .ok_or_else(|| err("an OCI reference starts with oci://"))?;
        let (registry, path) = rest.split_once('/').ok_or_else(|| {
            err("expected oci://REGISTRY/REPOSITORY:TAG or oci://REGISTRY/REPOSITORY@sha256:DIGEST")
        })?;
        if registry.is_empty() || !valid_registry(registry) {
            return Err(err(
                "the registry must be a host name or address, with an optional :port",
            ));
        }
        let (name, digest) = match path.split_once('@') {
            Some((n, d)) => (n, Some(d)),
            None => (path, None),
        };
        // A tag is the part after the last ':' of the last path segment.
        let (repository, tag) = match name.rfind(':') {
            Some(i) if !name[i..].contains('/') => (&name[..i], Some(&name[i + 1..])),
            _ => (name, None),
        };
        if repository.is_empty() || !repository.split('/').all(valid_path_component) {
            return Err(err(
                "the repository must be lowercase path components of [a-z0-9._-] (like policies/filesystem)",
            ));
        }
        if let Some(t) = tag
            && !valid_tag(t)
        {
            return Err(err(
                "a tag is 1-128 characters of [A-Za-z0-9_.-] and does not start with '.' or '-'",
            ));
        }
        if let Some(d) = digest {
            let hex = d.strip_prefix("sha256:").ok_or_else(|| {
                err("only sha256 digests are accepted (@sha256: followed by 64 hex digits)")
            })?;
            if hex.len() != 64
                || !hex
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            {
                return Err(err("a sha256 digest is 64 lowercase hex digits"));
            }
        }
        if tag.is_none() && digest.is_none() {
            return Err(err(
                "pin a tag (:1.4.7) or a digest (@sha256:…); gavel does not assume :latest",
            ));
        }
        Ok(Self {
            registry: registry.to_ascii_lowercase(),
            repository: repository.to_string(),
            tag: tag.map(str::to_string),
            digest: digest.map(str::to_string),
        })
    }

    /// Whether the reference can move (a tag without a digest).
    pub fn is_mutable(&self) -> bool {
        self.digest.is_none()
    }

    /// The registry host without its port (for `insecure` loopback checks).
    pub fn host(&self) -> &str {
        let r = self.registry.as_str();
        if let Some(rest) = r.strip_prefix('[') {
            return rest.split(']').next().unwrap_or(rest);
        }
        r.rsplit_once(':').map_or(r, |(h, _)| h)
    }

    /// The reference oci-client takes (without the scheme).
    pub fn client_ref(&self) -> oci_client::Reference {
        match (&self.tag, &self.digest) {
            (Some(t), Some(d)) => oci_client::Reference::with_tag_and_digest(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
                d.clone(),
            ),
            (None, Some(d)) => oci_client::Reference::with_digest(
                self.registry.clone(),
                self.repository.clone(),
                d.clone(),
            ),
            (Some(t), None) => oci_client::Reference::with_tag(
                self.registry.clone(),
                self.repository.clone(),
                t.clone(),
            ),
            (None, None) => unreachable!("parse requires a tag or a digest"),
        }
    }

    /// The same repository at a given digest (index descent, blobs).
    pub fn at_digest(&self, digest: &str) -> oci_client::Reference {
        oci_client::Reference::with_digest(
            self.registry.clone(),
            self.repository.clone(),
            digest.to_string(),
        )
    }
}

impl fmt::Display for OciRef {
    /// The normalized form: `oci://registry/repository[:tag][@digest]`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "oci://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

fn valid_registry(r: &str) -> bool {
    let (host, port) = if let Some(rest) = r.strip_prefix('[') {
        // [::1]:5000
        match rest.split_once(']') {
            Some((h, p)) => (h, p.strip_prefix(':')),
            None => return false,
        }
    } else {
        match r.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (r, None),
        }
    };
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    port_ok
        && !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':')
}

fn valid_path_component(c: &str) -> bool {
    !c.is_empty()
        && c.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
        && c.as_bytes()[0].is_ascii_alphanumeric()
}

fn valid_tag(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
        && !t.starts_with(['.', '-'])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_digests_and_ports() {
        let r = OciRef::parse("oci://registry.example:5000/policies/filesystem:1.4.7").unwrap();
        assert_eq!(r.registry, "registry.example:5000");
        assert_eq!(r.host(), "registry.example");
        assert_eq!(r.repository, "policies/filesystem");
        assert_eq!(r.tag.as_deref(), Some("1.4.7"));
        assert!(r.is_mutable());
        assert_eq!(
            r.to_string(),
            "oci://registry.example:5000/policies/filesystem:1.4.7"
        );
        let d = format!("sha256:{}", "ab".repeat(32));
        let r = OciRef::parse(&format!("oci://127.0.0.1:5000/p/fs@{d}")).unwrap();
        assert_eq!(r.digest.as_deref(), Some(d.as_str()));
        assert!(!r.is_mutable());
        assert_eq!(r.host(), "127.0.0.1");
        assert_eq!(r.client_ref().digest(), Some(d.as_str()));
        let r = OciRef::parse(&format!("oci://ghcr.io/o/p:v1@{d}")).unwrap();
        assert!(!r.is_mutable(), "a digest wins over a tag");
        let r = OciRef::parse("oci://[::1]:5000/p:v1").unwrap();
        assert_eq!(r.host(), "::1");
    }

    #[test]
    fn refusals_say_what_a_reference_looks_like() {
        for (bad, needle) in [
            ("registry/p:v1", "starts with oci://"),
            ("oci://registry", "expected oci://"),
            ("oci://reg/Policies:v1", "lowercase"),
            ("oci://reg/p", "pin a tag"),
            ("oci://reg/p:", "a tag is"),
            ("oci://reg/p:-x", "a tag is"),
            ("oci://reg/p@md5:abc", "only sha256"),
            ("oci://reg/p@sha256:abc", "64 lowercase hex"),
            ("oci://reg:port/p:v1", "registry must be"),
            ("oci:///p:v1", "registry must be"),
            ("oci://reg//p:v1", "repository"),
        ] {
            let e = OciRef::parse(bad).expect_err(bad);
            assert!(e.to_string().contains(needle), "{bad}: {e}");
        }
    }
}
