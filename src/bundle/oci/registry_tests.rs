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
                    None if path == "/v2/" => ("200 OK", "application/json".into(), b"{}".to_vec()),
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
    let deep = OciRef::parse(&format!("oci://{host}/p@{}", digest(&chain[MAX_DEPTH + 1]))).unwrap();
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
