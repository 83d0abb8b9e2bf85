//! Secrets that must be usable again (webhook signing secrets): stored
//! encrypted with AES-256-GCM under one key from configuration
//! (`AGENTBANK_SECRETS_KEY`, 64 hex digits), never in plain text, never logged.
//! Stored form: base64 of nonce (12 bytes) ‖ ciphertext+tag.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use rand::RngCore;

use crate::ConnectorError;

/// The development key, used only when none is configured (and said so in
/// the log): local stacks work out of the box, production must set its own.
pub const DEV_KEY_HEX: &str = "6167656e7462616e6b2d6465762d6b65792d6e6f742d666f722d70726f642121";

#[derive(Clone)]
pub struct SecretBox {
    cipher: Aes256Gcm,
}

impl std::fmt::Debug for SecretBox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretBox(..)")
    }
}

fn bad(msg: &str) -> ConnectorError {
    ConnectorError::Config(msg.into())
}

impl SecretBox {
    /// From 64 hex digits (32 bytes).
    pub fn from_hex(key: &str) -> Result<Self, ConnectorError> {
        let bytes =
            hex::decode(key.trim()).map_err(|_| bad("secrets key must be 64 hex digits"))?;
        if bytes.len() != 32 {
            return Err(bad("secrets key must be 64 hex digits (32 bytes)"));
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| bad("secrets key"))?;
        Ok(SecretBox { cipher })
    }

    pub fn seal(&self, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::thread_rng().fill_bytes(&mut nonce);
        let sealed = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .expect("AES-GCM encryption of a short secret cannot fail");
        let mut out = nonce.to_vec();
        out.extend(sealed);
        base64::engine::general_purpose::STANDARD.encode(out)
    }

    pub fn open(&self, stored: &str) -> Result<String, ConnectorError> {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(stored)
            .map_err(|_| bad("sealed secret is not base64"))?;
        if bytes.len() < 12 {
            return Err(bad("sealed secret too short"));
        }
        let (nonce, sealed) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| bad("sealed secret does not open with this key"))?;
        String::from_utf8(plain).map_err(|_| bad("sealed secret is not UTF-8"))
    }
}

/// A new webhook secret in the Standard Webhooks form: `whsec_` + base64 of
/// 24 random bytes.
pub fn new_webhook_secret() -> String {
    let mut bytes = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_secrets_open_only_with_their_key() {
        let a = SecretBox::from_hex(DEV_KEY_HEX).unwrap();
        let sealed = a.seal("whsec_abc");
        assert!(!sealed.contains("whsec_abc"));
        assert_ne!(sealed, a.seal("whsec_abc"), "a fresh nonce each time");
        assert_eq!(a.open(&sealed).unwrap(), "whsec_abc");
        let b = SecretBox::from_hex(&"11".repeat(32)).unwrap();
        assert!(b.open(&sealed).is_err());
        assert!(SecretBox::from_hex("abcd").is_err());
        assert!(new_webhook_secret().starts_with("whsec_"));
    }
}
