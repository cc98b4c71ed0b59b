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
use super::settings::OciSettings;
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
#[path = "registry_tests.rs"]
mod tests;
