//! Secrets at rest and credentials in storage.
//!
//! Client secrets of OIDC integrations are sealed with XChaCha20-Poly1305
//! under a key derived from the operator's master key. The record's id and
//! field name are bound in as associated data, so a sealed value copied into
//! another record does not open. Credentials switchboard issues itself (API
//! client secrets, the bootstrap token) are random with 256 bits of entropy
//! and stored only as SHA-256 digests: a slow password hash buys nothing for
//! values nobody can guess, and would cost a core per token request.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::MasterKey;

const SEALED_PREFIX: &str = "xc1:";

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("sealed value is malformed")]
    Malformed,
    /// Wrong master key, or the value was moved or altered.
    #[error("sealed value does not open with this master key")]
    Open,
}

/// Seals and opens secrets at rest.
#[derive(Clone)]
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer")
    }
}

impl Sealer {
    pub fn new(master: &MasterKey) -> Self {
        let key = derive_key(master, "switchboard/seal/v1");
        Self {
            cipher: XChaCha20Poly1305::new(&key.into()),
        }
    }

    /// Encrypts `secret`, bound to `context` (record id and field).
    pub fn seal(&self, secret: &SecretString, context: &str) -> Result<String, CryptoError> {
        let nonce_bytes: [u8; 24] = rand::random();
        let nonce = XNonce::from(nonce_bytes);
        let ciphertext = self
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: secret.expose_secret().as_bytes(),
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        let mut out = nonce_bytes.to_vec();
        out.extend_from_slice(&ciphertext);
        Ok(format!("{SEALED_PREFIX}{}", STANDARD.encode(out)))
    }

    pub fn open(&self, sealed: &str, context: &str) -> Result<SecretString, CryptoError> {
        let encoded = sealed
            .strip_prefix(SEALED_PREFIX)
            .ok_or(CryptoError::Malformed)?;
        let bytes = STANDARD
            .decode(encoded)
            .map_err(|_| CryptoError::Malformed)?;
        if bytes.len() < 24 {
            return Err(CryptoError::Malformed);
        }
        let (nonce, ciphertext) = bytes.split_at(24);
        let plain = self
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| CryptoError::Open)?;
        String::from_utf8(plain)
            .map(SecretString::from)
            .map_err(|_| CryptoError::Malformed)
    }
}

/// A purpose-bound key derived from the master key (HMAC-SHA256 as a PRF), so
/// the sealing key, token-signing key and others never coincide.
pub fn derive_key(master: &MasterKey, purpose: &str) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(master.expose())
        .unwrap_or_else(|_| unreachable_hmac());
    mac.update(purpose.as_bytes());
    mac.finalize().into_bytes().into()
}

/// HMAC accepts keys of any length; this only satisfies the type.
#[expect(
    clippy::panic,
    reason = "HMAC-SHA256 takes a key of any length: never called"
)]
pub(crate) fn unreachable_hmac() -> Hmac<Sha256> {
    panic!("HMAC-SHA256 accepts any key length")
}

/// A fresh random credential: 32 bytes, URL-safe base64 with a readable
/// prefix that says what it is (`sbs_` for client secrets, say).
pub fn random_token(prefix: &str) -> SecretString {
    let bytes: [u8; 32] = rand::random();
    SecretString::from(format!("{prefix}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

/// The stored form of a high-entropy credential.
pub fn digest(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Whether `secret` matches a stored digest, in constant time.
pub fn digest_matches(secret: &str, stored_hex: &str) -> bool {
    let actual = digest(secret);
    actual.as_bytes().ct_eq(stored_hex.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_in_their_context_and_key() {
        let key = MasterKey::generate();
        let sealer = Sealer::new(&key);
        let secret = SecretString::from("s3cr3t");
        let sealed = sealer.seal(&secret, "oidc/1/clientSecret").unwrap();
        assert!(!sealed.contains("s3cr3t"));
        assert_eq!(
            sealer
                .open(&sealed, "oidc/1/clientSecret")
                .unwrap()
                .expose_secret(),
            "s3cr3t"
        );
        assert!(matches!(
            sealer.open(&sealed, "oidc/2/clientSecret"),
            Err(CryptoError::Open)
        ));
        let other = Sealer::new(&MasterKey::generate());
        assert!(matches!(
            other.open(&sealed, "oidc/1/clientSecret"),
            Err(CryptoError::Open)
        ));
        assert!(matches!(
            sealer.open("garbage", "x"),
            Err(CryptoError::Malformed)
        ));
    }

    #[test]
    fn two_seals_differ() {
        let sealer = Sealer::new(&MasterKey::generate());
        let secret = SecretString::from("same");
        assert_ne!(
            sealer.seal(&secret, "c").unwrap(),
            sealer.seal(&secret, "c").unwrap()
        );
    }

    #[test]
    fn digests_compare() {
        let token = random_token("sbs_");
        let stored = digest(token.expose_secret());
        assert!(digest_matches(token.expose_secret(), &stored));
        assert!(!digest_matches("sbs_other", &stored));
    }
}
