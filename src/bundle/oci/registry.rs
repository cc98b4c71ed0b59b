//! Talking to registries with oci-client: resolve a reference to its bundle
//! layer (descending indexes), download the layer with its digest and size
//! checked while reading, and push a bundle as the artifact OPA expects.
//!
//! Every network step is bounded: one pull at most `pull_timeout`, manifests
//! at most [`MAX_MANIFEST_BYTES`](super::manifest::MAX_MANIFEST_BYTES), layers at
//! most `max_bundle_bytes` (checked against the manifest before download and
//! against the bytes while downloading).
//!
//! Manifests are fetched by gavel itself, not with oci-client's
//! `pull_manifest_raw`: that reads a body whole before anyone can bound it (a
//! registry could stream gigabytes into memory within the pull timeout).
//! gavel's GET uses the same transport settings (plain HTTP only for
//! `insecure` registries, extra CAs) and the same credentials — the bearer
//! token oci-client's `auth` obtains (docker token flow), else basic auth,
//! else anonymous — refuses a declared length over the limit before reading,
//! and stops reading at the limit.

use std::collections::HashSet;
use std::time::Duration;

use futures::StreamExt;
use oci_client::client::{Certificate, CertificateEncoding, ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, RegistryOperation};
use sha2::Digest;

use super::auth::{CredentialSource, credentials};
use super::manifest::{self, Descriptor, Document, MAX_DEPTH, sha256_digest};
use super::reference::OciRef;
use crate::config::OciSettings;
use crate::error_text::chain;

/// Why a pull or push failed. Each names the reference and the step.
#[derive(Debug, thiserror::Error)]
pub enum OciError {
    #[error("{reference}: {step}: {message}")]
    Registry {
        reference: String,
        step: &'static str,
        message: String,
    },
    #[error("{reference}: {0}", reference = .1)]
    Manifest(manifest::ManifestError, String),
    #[error("{reference}: {message}")]
    Integrity { reference: String, message: String },
    #[error("{reference}: the pull took longer than {secs} s (oci.pull_timeout)")]
    Timeout { reference: String, secs: u64 },
    #[error(transparent)]
    Auth(#[from] super::auth::AuthError),
}

/// Adds what to check when a registry could not be reached: a TLS
/// certificate it does not trust names `ca_file`; anything else (refused,
/// reset, a plain-HTTP registry spoken to over TLS) names reachability and
/// `insecure`.
fn with_reachability_hint(r: &OciRef, mut message: String) -> String {
    let lower = message.to_ascii_lowercase();
    if lower.contains("certificate") || lower.contains("unknownissuer") {
        message.push_str(&format!(
            " (the TLS certificate of {} is not trusted: give its CA as ca_file under [oci.registries.\"{}\"], or install it in the system's trust store)",
            r.registry, r.registry
        ));
    } else if message.contains("error sending request") {
        message.push_str(&format!(
            " (is {} reachable? a plain-HTTP registry must be marked insecure = true under [oci.registries.\"{}\"], or pass --insecure)",
            r.registry, r.registry
        ));
    }
    message
}

/// The bundle layer a reference resolves to now.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Digest of the manifest (or index) the reference points at: what a
    /// digest pin names, and the change detector for tags.
    pub manifest_digest: String,
    pub layer: Descriptor,
}

pub struct Registry {
    client: Client,
    /// gavel's own HTTP client for manifests (bounded reads).
    http: reqwest::Client,
    /// Registries spoken to over plain HTTP (`insecure = true`).
    insecure: Vec<String>,
    settings: OciSettings,
}

/// How a manifest request authenticates, decided once per resolve.
enum ManifestAuth {
    Anonymous,
    Bearer(String),
    Basic(String, String),
}

impl Registry {
    pub fn new(settings: &OciSettings) -> Result<Self, String> {
        let insecure: Vec<String> = settings
            .registries
            .iter()
            .filter(|(_, r)| r.insecure)
            .map(|(h, _)| h.clone())
            .collect();
        let mut extra_root_certificates = Vec::new();
        let mut http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(settings.pull_timeout)
            .user_agent(concat!("gavel/", env!("CARGO_PKG_VERSION")));
        for (host, r) in &settings.registries {
            if let Some(ca) = &r.ca_file {
                let data = std::fs::read(ca).map_err(|e| {
                    format!("oci.registries.{host:?}.ca_file {}: {e}", ca.display())
                })?;
                let cert = reqwest::Certificate::from_pem(&data).map_err(|e| {
                    format!("oci.registries.{host:?}.ca_file {}: {e}", ca.display())
                })?;
                http = http.add_root_certificate(cert);
                extra_root_certificates.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                });
            }
        }
        let http = http.build().map_err(|e| format!("HTTP client: {e}"))?;
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure.clone()),
            extra_root_certificates,
            connect_timeout: Some(Duration::from_secs(10)),
            read_timeout: Some(settings.pull_timeout),
            // gavel descends indexes itself (skipping attestations, bounded).
            platform_resolver: None,
            user_agent: concat!("gavel/", env!("CARGO_PKG_VERSION")),
            ..Default::default()
        };
        let client = Client::try_from(config).map_err(|e| format!("OCI client: {e}"))?;
        Ok(Self {
            client,
            http,
            insecure,
            settings: settings.clone(),
        })
    }

    /// The credentials a manifest GET carries: the token oci-client's
    /// docker token flow yields, else the basic credentials, else none.
    async fn manifest_auth(
        &self,
        r: &OciRef,
        auth: &RegistryAuth,
    ) -> Result<ManifestAuth, OciError> {
        let token = self
            .client
            .auth(&r.client_ref(), auth, RegistryOperation::Pull)
            .await
            .map_err(Self::reg_err(r, "authentication"))?;
        Ok(match (token, auth) {
            (Some(t), _) => ManifestAuth::Bearer(t),
            (None, RegistryAuth::Basic(u, p)) => ManifestAuth::Basic(u.clone(), p.clone()),
            _ => ManifestAuth::Anonymous,
        })
    }

    /// GETs the manifest `reference` names, reading at most
    /// [`MAX_MANIFEST_BYTES`](manifest::MAX_MANIFEST_BYTES).
    async fn get_manifest(
        &self,
        r: &OciRef,
        reference: &oci_client::Reference,
        auth: &ManifestAuth,
        step: &'static str,
    ) -> Result<Vec<u8>, OciError> {
        let registry = reference.resolve_registry();
        let scheme = if self.insecure.iter().any(|h| h == registry) {
            "http"
        } else {
            "https"
        };
        let url = format!(
            "{scheme}://{registry}/v2/{}/manifests/{}",
            reference.repository(),
            reference.digest().or(reference.tag()).unwrap_or("latest")
        );
        let mut req = self
            .http
            .get(&url)
            .header(http::header::ACCEPT, manifest::ACCEPTED.join(", "));
        req = match auth {
            ManifestAuth::Anonymous => req,
            ManifestAuth::Bearer(t) => req.bearer_auth(t),
            ManifestAuth::Basic(u, p) => req.basic_auth(u, Some(p)),
        };
        let fail = |message: String| OciError::Registry {
            reference: r.to_string(),
            step,
            message,
        };
        let mut res = req
            .send()
            .await
            .map_err(|e| fail(with_reachability_hint(r, chain(&e))))?;
        let max = manifest::MAX_MANIFEST_BYTES;
        let too_large =
            |n: usize| OciError::Manifest(manifest::ManifestError::TooLarge(n), r.to_string());
        if let Some(n) = res.content_length()
            && n > max as u64
        {
            return Err(too_large(n.min(usize::MAX as u64) as usize));
        }
        let status = res.status();
        let mut body = Vec::new();
        while let Some(chunk) = res
            .chunk()
            .await
            .map_err(|e| fail(format!("reading the manifest: {e}")))?
        {
            if body.len() + chunk.len() > max {
                return Err(too_large(body.len() + chunk.len()));
            }
            body.extend_from_slice(&chunk);
        }
        if !status.is_success() {
            let text = String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned();
            return Err(fail(format!(
                "the registry answered {status} for {url}: {}",
                text.trim()
            )));
        }
        Ok(body)
    }

    async fn auth(&self, r: &OciRef) -> Result<(RegistryAuth, CredentialSource), OciError> {
        let settings = self.settings.clone();
        let registry = r.registry.clone();
        // Credential helpers are processes: keep them off the runtime threads.
        tokio::task::spawn_blocking(move || credentials(&settings, &registry))
            .await
            .map_err(|e| OciError::Registry {
                reference: r.to_string(),
                step: "credentials",
                message: e.to_string(),
            })?
            .map_err(OciError::from)
    }

    fn reg_err<'r>(
        r: &'r OciRef,
        step: &'static str,
    ) -> impl FnOnce(oci_client::errors::OciDistributionError) -> OciError + 'r {
        move |e| OciError::Registry {
            reference: r.to_string(),
            step,
            message: with_reachability_hint(r, chain(&e)),
        }
    }

    /// Resolves `r` to its bundle layer (a tag is resolved anew each call).
    pub async fn resolve(&self, r: &OciRef) -> Result<Resolved, OciError> {
        let secs = self.settings.pull_timeout.as_secs();
        tokio::time::timeout(self.settings.pull_timeout, self.resolve_inner(r))
            .await
            .map_err(|_| OciError::Timeout {
                reference: r.to_string(),
                secs,
            })?
    }

    async fn resolve_inner(&self, r: &OciRef) -> Result<Resolved, OciError> {
        let (auth, _) = self.auth(r).await?;
        let auth = self.manifest_auth(r, &auth).await?;
        let bytes = self
            .get_manifest(r, &r.client_ref(), &auth, "manifest")
            .await?;
        let top = sha256_digest(&bytes);
        if let Some(pin) = &r.digest
            && *pin != top
        {
            return Err(OciError::Integrity {
                reference: r.to_string(),
                message: format!(
                    "the registry sent a manifest with digest {top}, not the pinned {pin}"
                ),
            });
        }
        let mut seen = HashSet::from([top.clone()]);
        let layer = self.descend(r, &auth, &bytes, 0, &mut seen).await?;
        Ok(Resolved {
            manifest_digest: top,
            layer,
        })
    }

    /// Image manifest → its layer; index → the first child (in order) that
    /// carries a bundle layer, at most [`MAX_DEPTH`] levels down.
    fn descend<'a>(
        &'a self,
        r: &'a OciRef,
        auth: &'a ManifestAuth,
        bytes: &'a [u8],
        depth: usize,
        seen: &'a mut HashSet<String>,
    ) -> futures::future::BoxFuture<'a, Result<Descriptor, OciError>> {
        Box::pin(async move {
            match manifest::parse(bytes, None).map_err(|e| OciError::Manifest(e, r.to_string()))? {
                Document::Image { layer } => Ok(layer),
                Document::Index { manifests } => {
                    if depth + 1 > MAX_DEPTH {
                        return Err(OciError::Integrity {
                            reference: r.to_string(),
                            message: format!(
                                "image index nested more than {MAX_DEPTH} levels deep"
                            ),
                        });
                    }
                    let mut last = None;
                    for child in manifests {
                        if !seen.insert(child.digest.clone()) {
                            continue;
                        }
                        let cb = self
                            .get_manifest(r, &r.at_digest(&child.digest), auth, "manifest in index")
                            .await?;
                        if sha256_digest(&cb) != child.digest {
                            return Err(OciError::Integrity {
                                reference: r.to_string(),
                                message: format!(
                                    "manifest {} does not match its digest",
                                    child.digest
                                ),
                            });
                        }
                        match self.descend(r, auth, &cb, depth + 1, seen).await {
                            Ok(l) => return Ok(l),
                            Err(OciError::Manifest(
                                e @ (manifest::ManifestError::NoBundleLayer
                                | manifest::ManifestError::NoLayers),
                                _,
                            )) => last = Some(e),
                            Err(e) => return Err(e),
                        }
                    }
                    Err(OciError::Manifest(
                        last.unwrap_or(manifest::ManifestError::EmptyIndex),
                        r.to_string(),
                    ))
                }
            }
        })
    }

    /// Downloads the layer, checking size and sha256 while reading.
    pub async fn fetch(&self, r: &OciRef, layer: &Descriptor) -> Result<Vec<u8>, OciError> {
        let secs = self.settings.pull_timeout.as_secs();
        tokio::time::timeout(self.settings.pull_timeout, self.fetch_inner(r, layer))
            .await
            .map_err(|_| OciError::Timeout {
                reference: r.to_string(),
                secs,
            })?
    }

    async fn fetch_inner(&self, r: &OciRef, layer: &Descriptor) -> Result<Vec<u8>, OciError> {
        let max = self.settings.max_bundle_bytes;
        let integrity = |m: String| OciError::Integrity {
            reference: r.to_string(),
            message: m,
        };
        if layer.size as u64 > max {
            return Err(integrity(format!(
                "the bundle layer is {} bytes, over oci.max_bundle_bytes ({max})",
                layer.size
            )));
        }
        let mut stream = self
            .client
            .pull_blob_stream(&r.at_digest(&layer.digest), layer.digest.as_str())
            .await
            .map_err(Self::reg_err(r, "layer"))?;
        let mut hasher = sha2::Sha256::new();
        let mut out = Vec::with_capacity(layer.size.max(0) as usize);
        while let Some(chunk) = stream.stream.next().await {
            let chunk = chunk.map_err(|e| OciError::Registry {
                reference: r.to_string(),
                step: "layer",
                message: chain(&e),
            })?;
            if (out.len() + chunk.len()) as u64 > (layer.size as u64).min(max) {
                return Err(integrity(format!(
                    "the registry sent more than the {} bytes the manifest declares for layer {}",
                    layer.size, layer.digest
                )));
            }
            hasher.update(&chunk);
            out.extend_from_slice(&chunk);
        }
        let got = format!("sha256:{}", hex::encode(hasher.finalize()));
        if got != layer.digest || out.len() as u64 != layer.size as u64 {
            return Err(integrity(format!(
                "layer {} arrived with digest {got} and {} bytes (tampered or truncated); it is not used",
                layer.digest,
                out.len()
            )));
        }
        Ok(out)
    }

    /// Pushes a bundle tarball as OPA's artifact; returns the manifest digest
    /// (what a digest pin names).
    pub async fn push(&self, r: &OciRef, tarball: &[u8], title: &str) -> Result<String, OciError> {
        if r.tag.is_none() || r.digest.is_some() {
            return Err(OciError::Integrity {
                reference: r.to_string(),
                message: "push to a tag (oci://REGISTRY/REPOSITORY:TAG); a digest names content, it cannot be pushed to".into(),
            });
        }
        let (auth, _) = self.auth(r).await?;
        let cref = r.client_ref();
        self.client
            .auth(&cref, &auth, RegistryOperation::Push)
            .await
            .map_err(Self::reg_err(r, "authentication"))?;
        self.client
            .push_blob(&cref, b"{}".to_vec(), &sha256_digest(b"{}"))
            .await
            .map_err(Self::reg_err(r, "config blob"))?;
        self.client
            .push_blob(&cref, tarball.to_vec(), &sha256_digest(tarball))
            .await
            .map_err(Self::reg_err(r, "layer blob"))?;
        let m = manifest::bundle_manifest(tarball, title, &[]);
        self.client
            .push_manifest_raw(
                &cref,
                m.clone(),
                http::HeaderValue::from_static(manifest::MANIFEST_MEDIA_TYPE),
            )
            .await
            .map_err(Self::reg_err(r, "manifest"))?;
        Ok(sha256_digest(&m))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A "registry" on loopback that answers every request with `head` and
    /// then up to `total` bytes of spaces; counts what it managed to write.
    async fn flooding_registry(head: String, total: usize) -> (String, Arc<AtomicUsize>) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = l.local_addr().unwrap().to_string();
        let written = Arc::new(AtomicUsize::new(0));
        let w = written.clone();
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let (head, w) = (head.clone(), w.clone());
                tokio::spawn(async move {
                    let mut buf = [0u8; 4096];
                    let _ = sock.read(&mut buf).await;
                    if sock.write_all(head.as_bytes()).await.is_err() {
                        return;
                    }
                    let chunk = vec![b' '; 64 << 10];
                    let mut sent = 0;
                    while sent < total {
                        if sock.write_all(&chunk).await.is_err() {
                            return;
                        }
                        sent += chunk.len();
                        w.fetch_add(chunk.len(), Ordering::SeqCst);
                    }
                });
            }
        });
        (host, written)
    }

    type Routes = std::collections::HashMap<String, (String, Vec<u8>)>;

    /// A registry on loopback serving `routes` (path → content type and
    /// body; anything else 404), counting the requests for each path.
    async fn fake_registry(
        routes: Routes,
    ) -> (
        String,
        Arc<std::sync::Mutex<std::collections::HashMap<String, usize>>>,
    ) {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let host = l.local_addr().unwrap().to_string();
        let hits = Arc::new(std::sync::Mutex::new(std::collections::HashMap::new()));
        let (routes, h) = (Arc::new(routes), hits.clone());
        tokio::spawn(async move {
            while let Ok((mut sock, _)) = l.accept().await {
                let (routes, h) = (routes.clone(), h.clone());
                tokio::spawn(async move {
                    let mut req = Vec::new();
                    let mut buf = [0u8; 4096];
                    while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                        match sock.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => req.extend_from_slice(&buf[..n]),
                        }
                    }
                    let line = String::from_utf8_lossy(&req)
                        .lines()
                        .next()
                        .unwrap_or("")
                        .to_string();
                    let path = line.split(' ').nth(1).unwrap_or("").to_string();
                    *h.lock().unwrap().entry(path.clone()).or_insert(0) += 1;
                    let (status, ct, body) = match routes.get(&path) {
                        Some((ct, b)) => ("200 OK", ct.clone(), b.clone()),
                        None if path == "/v2/" => {
                            ("200 OK", "application/json".into(), b"{}".to_vec())
                        }
                        None => ("404 Not Found", "text/plain".into(), b"no".to_vec()),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\nContent-Type: {ct}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = sock.write_all(head.as_bytes()).await;
                    let _ = sock.write_all(&body).await;
                });
            }
        });
        (host, hits)
    }

    fn digest(b: &[u8]) -> String {
        sha256_digest(b)
    }

    fn image(layer_digest: &str, size: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": manifest::MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": manifest::CONFIG_MEDIA_TYPE, "digest": digest(b"{}"), "size": 2},
            "layers": [{"mediaType": manifest::LAYER_MEDIA_TYPE, "digest": layer_digest, "size": size}]}))
        .unwrap()
    }

    fn index(children: &[&[u8]]) -> Vec<u8> {
        let m: Vec<_> = children
            .iter()
            .map(|c| serde_json::json!({"mediaType": manifest::MANIFEST_MEDIA_TYPE, "digest": digest(c), "size": c.len()}))
            .collect();
        serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": manifest::INDEX_MEDIA_TYPE, "manifests": m}))
            .unwrap()
    }

    fn serve(routes: &mut Routes, doc: &[u8], media_type: &str) {
        routes.insert(
            format!("/v2/p/manifests/{}", digest(doc)),
            (media_type.to_string(), doc.to_vec()),
        );
    }

    /// Indexes nest at most MAX_DEPTH levels; an index listing one child
    /// many times fetches it once (the seen set: with content digests a
    /// true cycle cannot be built, repeats can).
    #[tokio::test]
    async fn index_depth_is_bounded_and_repeated_children_fetched_once() {
        let leaf = image(&digest(b"layer"), 5);
        let mut routes = Routes::new();
        serve(&mut routes, &leaf, manifest::MANIFEST_MEDIA_TYPE);
        let mut chain = vec![leaf.clone()];
        for _ in 0..MAX_DEPTH + 1 {
            let up = index(&[chain.last().unwrap()]);
            serve(&mut routes, &up, manifest::INDEX_MEDIA_TYPE);
            chain.push(up);
        }
        let (host, _) = fake_registry(routes).await;
        let reg = registry_for(&host);
        // MAX_DEPTH indexes above the image: found.
        let ok = OciRef::parse(&format!("oci://{host}/p@{}", digest(&chain[MAX_DEPTH]))).unwrap();
        let got = reg.resolve(&ok).await.unwrap();
        assert_eq!(got.layer.digest, digest(b"layer"));
        // One more: refused.
        let deep =
            OciRef::parse(&format!("oci://{host}/p@{}", digest(&chain[MAX_DEPTH + 1]))).unwrap();
        let e = reg.resolve(&deep).await.unwrap_err();
        assert!(
            e.to_string().contains("nested more than 4 levels deep"),
            "{e}"
        );

        // An index listing the same bundle-less child 50 times.
        let empty = serde_json::to_vec(&serde_json::json!({"schemaVersion": 2, "mediaType": manifest::MANIFEST_MEDIA_TYPE, "layers": []})).unwrap();
        let repeated = index(&vec![empty.as_slice(); 50]);
        let mut routes = Routes::new();
        serve(&mut routes, &empty, manifest::MANIFEST_MEDIA_TYPE);
        serve(&mut routes, &repeated, manifest::INDEX_MEDIA_TYPE);
        let (host, hits) = fake_registry(routes).await;
        let r = OciRef::parse(&format!("oci://{host}/p@{}", digest(&repeated))).unwrap();
        let e = registry_for(&host).resolve(&r).await.unwrap_err();
        assert!(e.to_string().contains("no layers"), "{e}");
        assert_eq!(
            hits.lock().unwrap()[&format!("/v2/p/manifests/{}", digest(&empty))],
            1
        );
    }

    /// `max_bundle_bytes` holds on the size a manifest declares (no
    /// download at all) and on the bytes a registry actually sends.
    #[tokio::test]
    async fn max_bundle_bytes_holds_on_declared_and_sent_sizes() {
        let blob = vec![7u8; 8192];
        let bd = digest(&blob);
        let mut routes = Routes::new();
        routes.insert(
            format!("/v2/p/blobs/{bd}"),
            ("application/octet-stream".into(), blob.clone()),
        );
        let (host, hits) = fake_registry(routes).await;
        let mut s = OciSettings {
            max_bundle_bytes: 4096,
            ..Default::default()
        };
        s.registries.insert(
            host.clone(),
            crate::config::RegistrySettings {
                insecure: true,
                ..Default::default()
            },
        );
        let reg = Registry::new(&s).unwrap();
        let r = OciRef::parse(&format!("oci://{host}/p:v1")).unwrap();
        let layer = |size: i64| Descriptor {
            media_type: manifest::LAYER_MEDIA_TYPE.into(),
            digest: bd.clone(),
            size,
            platform: None,
            annotations: None,
        };
        // Declared over the limit: refused before any request.
        let e = reg.fetch(&r, &layer(8192)).await.unwrap_err();
        assert!(
            e.to_string().contains("over oci.max_bundle_bytes (4096)"),
            "{e}"
        );
        assert!(
            hits.lock()
                .unwrap()
                .get(&format!("/v2/p/blobs/{bd}"))
                .is_none()
        );
        // Declared small, sent big: cut off while streaming.
        let e = reg.fetch(&r, &layer(100)).await.unwrap_err();
        assert!(
            e.to_string().contains("sent more than the 100 bytes"),
            "{e}"
        );
        assert_eq!(hits.lock().unwrap()[&format!("/v2/p/blobs/{bd}")], 1);
    }

    fn registry_for(host: &str) -> Registry {
        let mut s = OciSettings::default();
        s.registries.insert(
            host.to_string(),
            crate::config::RegistrySettings {
                insecure: true,
                ..Default::default()
            },
        );
        Registry::new(&s).unwrap()
    }

    /// A manifest body is never read past the 4 MiB limit: a declared
    /// length over it is refused before reading, an undeclared (chunked)
    /// flood is cut off at the limit — the registry cannot write all it
    /// meant to into gavel's memory.
    #[tokio::test]
    async fn manifests_are_read_at_most_to_the_limit() {
        let total = 256 << 20;
        let (host, written) = flooding_registry(
            format!("HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nContent-Length: {total}\r\n\r\n"),
            total,
        )
        .await;
        let r = OciRef::parse(&format!("oci://{host}/p:v1")).unwrap();
        let e = registry_for(&host).resolve(&r).await.unwrap_err();
        assert!(
            matches!(e, OciError::Manifest(manifest::ManifestError::TooLarge(n), _) if n == total),
            "{e}"
        );
        assert!(written.load(Ordering::SeqCst) < total, "stopped early");

        let (host, written) = flooding_registry(
            "HTTP/1.1 200 OK\r\nContent-Type: application/vnd.oci.image.manifest.v1+json\r\nConnection: close\r\n\r\n".into(),
            total,
        )
        .await;
        let r = OciRef::parse(&format!("oci://{host}/p:v1")).unwrap();
        let e = registry_for(&host).resolve(&r).await.unwrap_err();
        assert!(
            matches!(e, OciError::Manifest(manifest::ManifestError::TooLarge(n), _) if n > manifest::MAX_MANIFEST_BYTES && n <= manifest::MAX_MANIFEST_BYTES + (1 << 20)),
            "{e}"
        );
        assert!(e.to_string().contains("4194304-byte limit"), "{e}");
        assert!(written.load(Ordering::SeqCst) < total, "stopped early");
    }
}
