//! Tenant secrets at rest (registered bots' tokens, webhook signing secrets), sealed with
//! AES-256-GCM under `secrets.key`. A sealed value names the key that sealed it, so values
//! sealed under a key listed in `secrets.previous_keys` still open until `blast secrets rotate`
//! seals them again under the current key. Without a key values are kept as given (and the
//! serving commands warn); a value stored before a key was set opens as it is.

use super::{Result, StoreError};
use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// Marks a sealed value: `sealed1:<key id>:<base64url(nonce ‖ ciphertext)>`.
const PREFIX: &str = "sealed1:";
const NONCE_BYTES: usize = 12;

/// A configured secrets key is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a secrets key is 32 bytes in base64 (blast config secret-key makes one)")]
pub struct BadSecretsKey;

/// One key: its id (the first 8 hex digits of its SHA-256) and its cipher.
struct SealingKey {
    id: String,
    cipher: Aes256Gcm,
}

impl SealingKey {
    fn parse(base64_key: &str) -> std::result::Result<SealingKey, BadSecretsKey> {
        let bytes = URL_SAFE_NO_PAD
            .decode(base64_key.trim().trim_end_matches('='))
            .or_else(|_| base64::engine::general_purpose::STANDARD.decode(base64_key.trim()))
            .map_err(|_| BadSecretsKey)?;
        if bytes.len() != 32 {
            return Err(BadSecretsKey);
        }
        let cipher = Aes256Gcm::new_from_slice(&bytes).map_err(|_| BadSecretsKey)?;
        Ok(SealingKey {
            id: hex::encode(&Sha256::digest(&bytes)[..4]),
            cipher,
        })
    }
}

/// The keys tenant secrets are sealed and opened with.
#[derive(Default)]
pub struct SecretKeys {
    current: Option<SealingKey>,
    previous: Vec<SealingKey>,
}

impl std::fmt::Debug for SecretKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKeys")
            .field("current", &self.current.as_ref().map(|k| &k.id))
            .field(
                "previous",
                &self.previous.iter().map(|k| &k.id).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl SecretKeys {
    /// `current` (empty: none) and the keys that sealed values before it, all base64.
    pub fn new(current: &str, previous: &[&str]) -> std::result::Result<SecretKeys, BadSecretsKey> {
        let current = (!current.trim().is_empty())
            .then(|| SealingKey::parse(current))
            .transpose()?;
        let previous = previous
            .iter()
            .map(|k| SealingKey::parse(k))
            .collect::<std::result::Result<_, _>>()?;
        Ok(SecretKeys { current, previous })
    }

    /// A new random key, base64.
    pub fn generate() -> String {
        URL_SAFE_NO_PAD.encode(rand::random::<[u8; 32]>())
    }

    /// Whether values are sealed at all.
    pub fn is_sealing(&self) -> bool {
        self.current.is_some()
    }

    /// `plain` sealed under the current key for use as `context` (a sealed value copied into
    /// another column does not open there); as it is without a key.
    pub fn seal(&self, context: &str, plain: &str) -> String {
        let Some(key) = &self.current else {
            return plain.to_owned();
        };
        let nonce_bytes = rand::random::<[u8; NONCE_BYTES]>();
        let payload = Payload {
            msg: plain.as_bytes(),
            aad: context.as_bytes(),
        };
        // Encryption fails only for messages of gigabytes.
        let Ok(ciphertext) = key.cipher.encrypt(Nonce::from_slice(&nonce_bytes), payload) else {
            return plain.to_owned();
        };
        let mut sealed = nonce_bytes.to_vec();
        sealed.extend_from_slice(&ciphertext);
        format!("{PREFIX}{}:{}", key.id, URL_SAFE_NO_PAD.encode(sealed))
    }

    /// The plain value of `stored` (sealed for `context`, or stored before sealing).
    pub fn open(&self, context: &str, stored: &str) -> Result<String> {
        let Some(rest) = stored.strip_prefix(PREFIX) else {
            return Ok(stored.to_owned());
        };
        let (id, data) = rest
            .split_once(':')
            .ok_or_else(|| broken("it is malformed"))?;
        let key = self
            .current
            .iter()
            .chain(&self.previous)
            .find(|k| k.id == id)
            .ok_or_else(|| {
                broken(&format!(
                    "it was sealed under key {id}, which is neither secrets.key nor in secrets.previous_keys"
                ))
            })?;
        let bytes = URL_SAFE_NO_PAD
            .decode(data)
            .map_err(|_| broken("it is malformed"))?;
        if bytes.len() < NONCE_BYTES {
            return Err(broken("it is malformed"));
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_BYTES);
        let plain = key
            .cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ciphertext,
                    aad: context.as_bytes(),
                },
            )
            .map_err(|_| broken("it does not open under its key (altered, or moved)"))?;
        String::from_utf8(plain).map_err(|_| broken("it is not text"))
    }

    /// Whether `stored` should be sealed again: a key is set and it was not sealed under it.
    pub fn needs_reseal(&self, stored: &str) -> bool {
        match &self.current {
            None => false,
            Some(key) => !stored
                .strip_prefix(PREFIX)
                .is_some_and(|rest| rest.starts_with(&format!("{}:", key.id))),
        }
    }
}

fn broken(why: &str) -> StoreError {
    StoreError::Secret(format!("a stored tenant secret cannot be opened: {why}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_value_opens_under_its_key_and_context_only() {
        let key = SecretKeys::generate();
        let keys = SecretKeys::new(&key, &[]).expect("key");
        let sealed = keys.seal("webhook", "whsec_abc");
        assert!(sealed.starts_with(PREFIX) && !sealed.contains("whsec_abc"));
        assert_eq!(keys.open("webhook", &sealed).expect("opens"), "whsec_abc");
        assert!(keys.open("telegram_bot", &sealed).is_err());
        let other = SecretKeys::new(&SecretKeys::generate(), &[]).expect("key");
        assert!(other.open("webhook", &sealed).is_err());
        let rotated = SecretKeys::new(&SecretKeys::generate(), &[&key]).expect("keys");
        assert_eq!(
            rotated.open("webhook", &sealed).expect("opens"),
            "whsec_abc"
        );
        assert!(rotated.needs_reseal(&sealed) && !keys.needs_reseal(&sealed));
        assert_eq!(keys.open("webhook", "plain").expect("plain"), "plain");
        assert!(SecretKeys::new("short", &[]).is_err());
    }
}
