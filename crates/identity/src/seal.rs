//! Secrets at rest: sealed with ChaCha20-Poly1305 under a key kept outside
//! the database (the data dir's `secret-key` file, or `NIMBUS_SECRET_KEY`).
//! A stolen database alone reveals no secret.

use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};

/// Seals and opens secret values.
#[derive(Clone)]
pub struct Sealer {
    cipher: ChaCha20Poly1305,
}

const PREFIX: &str = "v1:";

impl Sealer {
    /// A sealer with a 32-byte key.
    pub fn new(key: [u8; 32]) -> Sealer {
        Sealer {
            cipher: ChaCha20Poly1305::new(Key::from_slice(&key)),
        }
    }

    /// Parses a key written as 64 hex digits.
    pub fn from_hex(hex_key: &str) -> Result<Sealer, String> {
        let bytes = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| <[u8; 32]>::try_from(b).ok())
            .ok_or("the secret key must be 64 hex digits (32 bytes)")?;
        Ok(Sealer::new(bytes))
    }

    /// Encrypts a value (random nonce), as text for the database.
    pub fn seal(&self, plaintext: &str) -> String {
        let nonce: [u8; 12] = rand::random();
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plaintext.as_bytes())
            .expect("encryption of a bounded value cannot fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!(
            "{PREFIX}{}",
            base64::engine::general_purpose::STANDARD.encode(out)
        )
    }

    /// Decrypts what [`Sealer::seal`] wrote.
    pub fn open(&self, sealed: &str) -> Result<String, String> {
        let raw = sealed
            .strip_prefix(PREFIX)
            .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b).ok())
            .filter(|b| b.len() > 12)
            .ok_or("a stored secret is malformed")?;
        let (nonce, ct) = raw.split_at(12);
        let pt = self.cipher.decrypt(Nonce::from_slice(nonce), ct).map_err(|_| {
            "a stored secret cannot be decrypted: the secret key changed (check NIMBUS_SECRET_KEY or DATA_DIR/secret-key)"
        })?;
        String::from_utf8(pt).map_err(|_| "a stored secret is not text".to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open() {
        let s = Sealer::new([7; 32]);
        let sealed = s.seal("hunter2");
        assert!(!sealed.contains("hunter2"));
        assert_ne!(sealed, s.seal("hunter2"), "fresh nonce each time");
        assert_eq!(s.open(&sealed).unwrap(), "hunter2");
        assert!(Sealer::new([8; 32]).open(&sealed).is_err());
        assert!(Sealer::from_hex("zz").is_err());
    }
}
