//! TLS for `gavel serve` (rustls): `--tls-cert` / `--tls-key` PEM files.
//! HTTP/1.1 only (what MCP streamable HTTP needs). The accept loop, shared
//! with plain HTTP, is `conn.rs`: it bounds the handshake, the connections
//! and the header read, and sets `TCP_NODELAY`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// Why the certificate or key cannot be used, naming the file and what
/// was expected.
#[derive(Debug, thiserror::Error)]
pub enum TlsSetupError {
    #[error("--tls-cert {}: {why} (expected PEM certificates, leaf first)", path.display())]
    CertUnreadable {
        path: PathBuf,
        why: rustls::pki_types::pem::Error,
    },
    #[error(
        "--tls-cert {}: no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)",
        .0.display()
    )]
    NoCert(PathBuf),
    #[error(
        "--tls-key {}: {why} (expected a PEM private key: PKCS#8, PKCS#1 or SEC1)",
        path.display()
    )]
    KeyUnreadable {
        path: PathBuf,
        why: rustls::pki_types::pem::Error,
    },
    #[error("TLS: {0}")]
    Protocols(rustls::Error),
    #[error("--tls-cert/--tls-key do not form a usable pair: {0}")]
    NotAPair(rustls::Error),
}

/// Reads the certificate chain and private key.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<rustls::ServerConfig>, TlsSetupError> {
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .and_then(|it| it.collect::<Result<_, _>>())
        .map_err(|why| TlsSetupError::CertUnreadable {
            path: cert.to_path_buf(),
            why,
        })?;
    if certs.is_empty() {
        return Err(TlsSetupError::NoCert(cert.to_path_buf()));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|why| TlsSetupError::KeyUnreadable {
        path: key.to_path_buf(),
        why,
    })?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(TlsSetupError::Protocols)?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(TlsSetupError::NotAPair)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
