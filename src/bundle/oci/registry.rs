//! Talking to registries with oci-client: resolve a reference to its bundle
//! layer (descending indexes), download the layer with its digest and size
//! checked while reading, and push a bundle as the artifact OPA expects.
//!
//! Every network step is bounded: one pull at most `pull_timeout`, manifests
//! at most [`MAX_MANIFEST_BYTES`](super::manifest::MAX_MANIFEST_BYTES) (checked
//! after oci-client has read the body: it buffers manifests whole), layers at
//! most `max_bundle_bytes` (checked against the manifest before download and
//! against the bytes while downloading).

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
    settings: OciSettings,
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
        for (host, r) in &settings.registries {
            if let Some(ca) = &r.ca_file {
                let data = std::fs::read(ca).map_err(|e| {
                    format!("oci.registries.{host:?}.ca_file {}: {e}", ca.display())
                })?;
                extra_root_certificates.push(Certificate {
                    encoding: CertificateEncoding::Pem,
                    data,
                });
            }
        }
        let config = ClientConfig {
            protocol: ClientProtocol::HttpsExcept(insecure),
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
            settings: settings.clone(),
        })
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
        move |e| {
            let mut message = e.to_string();
            if message.contains("error sending request") {
                message.push_str(&format!(
                    " (is {} reachable? a plain-HTTP registry must be marked insecure = true under [oci.registries.\"{}\"], or pass --insecure)",
                    r.registry, r.registry
                ));
            }
            OciError::Registry {
                reference: r.to_string(),
                step,
                message,
            }
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
        let (bytes, _) = self
            .client
            .pull_manifest_raw(&r.client_ref(), &auth, manifest::ACCEPTED)
            .await
            .map_err(Self::reg_err(r, "manifest"))?;
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
        auth: &'a RegistryAuth,
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
                        let (cb, _) = self
                            .client
                            .pull_manifest_raw(
                                &r.at_digest(&child.digest),
                                auth,
                                manifest::ACCEPTED,
                            )
                            .await
                            .map_err(Self::reg_err(r, "manifest in index"))?;
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
                message: e.to_string(),
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
