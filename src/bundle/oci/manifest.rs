//! OCI manifests and indexes as OPA reads them (OPA's `v1/download`
//! OCI client, as the team's reference notes it): the bundle is the first
//! `application/vnd.oci.image.layer.v1.tar+gzip` layer of an image manifest;
//! the config media type is not checked; an image index (or Docker manifest
//! list) is descended, skipping `unknown/unknown` attestation entries, at
//! most [`MAX_DEPTH`] levels deep. Parsing is pure (fuzzed:
//! `fuzz/fuzz_targets/oci_manifest.rs`); fetching is in `pull`.

use serde::Deserialize;

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const DOCKER_MANIFEST_MEDIA_TYPE: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_LIST_MEDIA_TYPE: &str =
    "application/vnd.docker.distribution.manifest.list.v2+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// What gavel asks a registry for.
pub const ACCEPTED: &[&str] = &[
    MANIFEST_MEDIA_TYPE,
    INDEX_MEDIA_TYPE,
    DOCKER_MANIFEST_MEDIA_TYPE,
    DOCKER_LIST_MEDIA_TYPE,
];
/// Index nesting limit (OPA: "nested more than 4 levels deep").
pub const MAX_DEPTH: usize = 4;
/// The distribution spec's recommended manifest limit.
pub const MAX_MANIFEST_BYTES: usize = 4 << 20;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    pub size: i64,
    #[serde(default)]
    pub platform: Option<Platform>,
    #[serde(default)]
    pub annotations: Option<std::collections::BTreeMap<String, String>>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
}

/// What a manifest document turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Document {
    /// An image manifest: its bundle layer.
    Image { layer: Descriptor },
    /// An index: the entries to try, in order (attestations removed).
    Index { manifests: Vec<Descriptor> },
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ManifestError {
    #[error("the manifest is {0} bytes, over the {MAX_MANIFEST_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("the manifest is not valid JSON: {0}")]
    Json(String),
    #[error("media type {0:?} is neither an image manifest nor an index")]
    MediaType(String),
    #[error("no layers in manifest")]
    NoLayers,
    #[error(
        "no tarball descriptor found in the layers (a bundle layer has media type {LAYER_MEDIA_TYPE}; push it with that type)"
    )]
    NoBundleLayer,
    #[error("descriptor {digest:?}: {message}")]
    Descriptor { digest: String, message: String },
    #[error("the index lists no usable manifest (only unknown/unknown attestations, or nothing)")]
    EmptyIndex,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Raw {
    #[serde(default)]
    schema_version: Option<i64>,
    #[serde(default)]
    media_type: Option<String>,
    #[serde(default)]
    layers: Option<Vec<Descriptor>>,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
}

/// Parses one manifest document. `content_type` is what the registry said
/// (used only when the document does not name its own media type).
pub fn parse(bytes: &[u8], content_type: Option<&str>) -> Result<Document, ManifestError> {
    if bytes.len() > MAX_MANIFEST_BYTES {
        return Err(ManifestError::TooLarge(bytes.len()));
    }
    let raw: Raw = serde_json::from_slice(bytes).map_err(|e| ManifestError::Json(e.to_string()))?;
    if raw.schema_version.is_some_and(|v| v != 2) {
        return Err(ManifestError::Json(format!(
            "schemaVersion {} (only 2 is defined)",
            raw.schema_version.unwrap_or_default()
        )));
    }
    let mt = raw
        .media_type
        .clone()
        .or_else(|| content_type.map(|c| c.split(';').next().unwrap_or(c).trim().to_string()));
    let is_index = match mt.as_deref() {
        Some(INDEX_MEDIA_TYPE | DOCKER_LIST_MEDIA_TYPE) => true,
        Some(MANIFEST_MEDIA_TYPE | DOCKER_MANIFEST_MEDIA_TYPE) => false,
        // No media type anywhere: decide by shape (OCI allows omitting it).
        None | Some("") | Some("application/json") => {
            raw.manifests.is_some() && raw.layers.is_none()
        }
        Some(other) => return Err(ManifestError::MediaType(other.to_string())),
    };
    if is_index {
        let manifests: Vec<Descriptor> = raw
            .manifests
            .unwrap_or_default()
            .into_iter()
            .filter(|d| {
                !d.platform
                    .as_ref()
                    .is_some_and(|p| p.os == "unknown" && p.architecture == "unknown")
            })
            .collect();
        for d in &manifests {
            check_descriptor(d)?;
        }
        if manifests.is_empty() {
            return Err(ManifestError::EmptyIndex);
        }
        return Ok(Document::Index { manifests });
    }
    let layers = raw.layers.unwrap_or_default();
    if layers.is_empty() {
        return Err(ManifestError::NoLayers);
    }
    let layer = layers
        .into_iter()
        .find(|l| l.media_type == LAYER_MEDIA_TYPE)
        .ok_or(ManifestError::NoBundleLayer)?;
    check_descriptor(&layer)?;
    Ok(Document::Image { layer })
}

fn check_descriptor(d: &Descriptor) -> Result<(), ManifestError> {
    let bad = |m: &str| ManifestError::Descriptor {
        digest: d.digest.chars().take(80).collect(),
        message: m.to_string(),
    };
    let Some(hex) = d.digest.strip_prefix("sha256:") else {
        return Err(bad("only sha256 digests are accepted"));
    };
    if hex.len() != 64 || !hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(bad("a sha256 digest is 64 lowercase hex digits"));
    }
    if d.size < 0 {
        return Err(bad("negative size"));
    }
    Ok(())
}

/// sha256 of some bytes as `sha256:<hex>`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(bytes)))
}

/// The manifest gavel pushes, exactly what `oras push` makes for OPA: an image
/// manifest, config `application/vnd.oci.image.config.v1+json` = `{}`, one
/// tar+gzip layer titled with the file name.
pub fn bundle_manifest(layer: &[u8], title: &str, annotations: &[(String, String)]) -> Vec<u8> {
    let mut ann = serde_json::Map::new();
    for (k, v) in annotations {
        ann.insert(k.clone(), serde_json::Value::String(v.clone()));
    }
    let m = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": {
            "mediaType": CONFIG_MEDIA_TYPE,
            "digest": sha256_digest(b"{}"),
            "size": 2
        },
        "layers": [{
            "mediaType": LAYER_MEDIA_TYPE,
            "digest": sha256_digest(layer),
            "size": layer.len(),
            "annotations": {"org.opencontainers.image.title": title}
        }],
        "annotations": ann,
    });
    serde_json::to_vec(&m).expect("a JSON value serializes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn d(digest_byte: &str, mt: &str) -> serde_json::Value {
        json!({"mediaType": mt, "digest": format!("sha256:{}", digest_byte.repeat(64)), "size": 10})
    }

    #[test]
    fn first_tar_gzip_layer_any_config() {
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
            "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": "x", "size": 2},
            "layers": [d("a", "application/vnd.oci.image.layer.v1.tar"), d("b", LAYER_MEDIA_TYPE), d("c", LAYER_MEDIA_TYPE)]});
        match parse(m.to_string().as_bytes(), None).unwrap() {
            Document::Image { layer } => assert!(layer.digest.ends_with(&"b".repeat(64))),
            other => panic!("{other:?}"),
        }
        let m = json!({"schemaVersion": 2, "layers": [d("a", "application/vnd.oci.image.layer.v1.tar")]});
        assert_eq!(
            parse(m.to_string().as_bytes(), Some(MANIFEST_MEDIA_TYPE)),
            Err(ManifestError::NoBundleLayer)
        );
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE, "layers": []});
        assert_eq!(
            parse(m.to_string().as_bytes(), None),
            Err(ManifestError::NoLayers)
        );
    }

    #[test]
    fn index_skips_attestations() {
        let mut att = d("a", MANIFEST_MEDIA_TYPE);
        att["platform"] = json!({"os": "unknown", "architecture": "unknown"});
        let m = json!({"schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE,
            "manifests": [att.clone(), d("b", MANIFEST_MEDIA_TYPE)]});
        match parse(m.to_string().as_bytes(), None).unwrap() {
            Document::Index { manifests } => {
                assert_eq!(manifests.len(), 1);
                assert!(manifests[0].digest.ends_with(&"b".repeat(64)));
            }
            other => panic!("{other:?}"),
        }
        let m =
            json!({"schemaVersion": 2, "mediaType": DOCKER_LIST_MEDIA_TYPE, "manifests": [att]});
        assert_eq!(
            parse(m.to_string().as_bytes(), None),
            Err(ManifestError::EmptyIndex)
        );
        // Shape decides when no media type is given.
        let m = json!({"schemaVersion": 2, "manifests": [d("c", MANIFEST_MEDIA_TYPE)]});
        assert!(matches!(
            parse(m.to_string().as_bytes(), None),
            Ok(Document::Index { .. })
        ));
    }

    #[test]
    fn garbage_is_refused_with_a_reason() {
        assert!(matches!(
            parse(b"<html>", None),
            Err(ManifestError::Json(_))
        ));
        let m = json!({"schemaVersion": 2, "mediaType": "text/plain", "layers": []});
        assert!(matches!(
            parse(m.to_string().as_bytes(), None),
            Err(ManifestError::MediaType(_))
        ));
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": "sha256:../../etc", "size": 1}]});
        assert!(matches!(
            parse(m.to_string().as_bytes(), None),
            Err(ManifestError::Descriptor { .. })
        ));
        let m = json!({"schemaVersion": 2, "mediaType": MANIFEST_MEDIA_TYPE,
            "layers": [{"mediaType": LAYER_MEDIA_TYPE, "digest": format!("sha256:{}", "a".repeat(64)), "size": -1}]});
        assert!(matches!(
            parse(m.to_string().as_bytes(), None),
            Err(ManifestError::Descriptor { .. })
        ));
        assert_eq!(
            parse(&vec![b' '; MAX_MANIFEST_BYTES + 1], None),
            Err(ManifestError::TooLarge(MAX_MANIFEST_BYTES + 1))
        );
    }

    #[test]
    fn the_pushed_manifest_parses_back_to_its_layer() {
        let layer = b"\x1f\x8bfake";
        let m = bundle_manifest(layer, "bundle.tar.gz", &[]);
        match parse(&m, None).unwrap() {
            Document::Image { layer: l } => {
                assert_eq!(l.digest, sha256_digest(layer));
                assert_eq!(l.size, layer.len() as i64);
                assert_eq!(
                    l.annotations.unwrap()["org.opencontainers.image.title"],
                    "bundle.tar.gz"
                );
            }
            other => panic!("{other:?}"),
        }
    }
}
