//! ES512 (ECDSA over P-521 with SHA-512, RFC 7518 §3.4) for bundle
//! signatures. jsonwebtoken has no P-521, and OPA lists ES512 among its
//! twelve bundle algorithms, so gavel does it with RustCrypto's `p521`:
//! the JWS signature is the raw `r || s`, 66 bytes each (nonces from the OS
//! RNG: p521 0.13 has no RFC 6979 signer). Keys are PEM:
//! a `PUBLIC KEY` (SPKI) to verify; a `PRIVATE KEY` (PKCS#8) or `EC PRIVATE
//! KEY` (SEC1) to sign. As for every algorithm, the caller takes "ES512"
//! from the configured key, never from the token.

use p521::ecdsa::signature::{Signer, Verifier};
use p521::ecdsa::{Signature, SigningKey, VerifyingKey};
use p521::pkcs8::{DecodePrivateKey, DecodePublicKey};

/// Verifies `signature` (raw `r || s`) over the JWS signing input
/// (`header.payload`) with the PEM public key.
pub fn verify(signing_input: &[u8], signature: &[u8], public_pem: &str) -> Result<(), String> {
    let pk = p521::PublicKey::from_public_key_pem(public_pem.trim())
        .map_err(|_| "failed to parse PEM block containing the key".to_string())?;
    let vk = VerifyingKey::from_affine(*pk.as_affine())
        .map_err(|_| "failed to parse PEM block containing the key".to_string())?;
    let sig = Signature::from_slice(signature).map_err(|_| {
        format!(
            "an ES512 signature is 132 bytes (r || s), not {}",
            signature.len()
        )
    })?;
    vk.verify(signing_input, &sig)
        .map_err(|_| "ecdsa: verification error".to_string())
}

/// Signs the JWS signing input with the PEM private key; the raw `r || s`.
pub fn sign(signing_input: &[u8], private_pem: &str) -> Result<Vec<u8>, String> {
    let pem = private_pem.trim();
    let secret = p521::SecretKey::from_pkcs8_pem(pem)
        .or_else(|_| p521::SecretKey::from_sec1_pem(pem))
        .map_err(|_| {
            "an ES512 signing key is a P-521 PEM private key (PRIVATE KEY or EC PRIVATE KEY)"
                .to_string()
        })?;
    let sk = SigningKey::from_bytes(&secret.to_bytes()).map_err(|e| e.to_string())?;
    let sig: Signature = sk.sign(signing_input);
    Ok(sig.to_bytes().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p521::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};

    #[test]
    fn sign_then_verify_and_refuse_what_does_not_match() {
        let sk = p521::SecretKey::from_slice(&[1u8; 66]).unwrap();
        let private = sk.to_pkcs8_pem(LineEnding::LF).unwrap().to_string();
        let public = sk.public_key().to_public_key_pem(LineEnding::LF).unwrap();
        let sig = sign(b"header.payload", &private).unwrap();
        assert_eq!(sig.len(), 132);
        verify(b"header.payload", &sig, &public).unwrap();
        assert!(verify(b"header.payloaX", &sig, &public).is_err());
        let mut bad = sig.clone();
        bad[10] ^= 1;
        assert!(verify(b"header.payload", &bad, &public).is_err());
        assert!(verify(b"header.payload", &sig[..64], &public).is_err());
        assert_eq!(
            verify(b"x", &sig, "not a key").unwrap_err(),
            "failed to parse PEM block containing the key"
        );
        assert!(sign(b"x", &public).is_err(), "a public key cannot sign");
    }
}
