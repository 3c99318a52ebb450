//! VAPID (RFC 8292): the signed JWT that names blast to push services, made with our P-256 key
//! (ES256, RFC 7518 §3.4) by the RustCrypto `p256` crate.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use std::time::Duration;

/// Why a VAPID key or signature cannot be had.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct VapidError(String);

/// Push services refuse a token that lives longer than a day (RFC 8292 §2).
const MAX_VALIDITY: Duration = Duration::from_secs(12 * 3600);

/// The server's VAPID key.
#[derive(Clone)]
pub struct VapidKey(SigningKey);

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VapidKey(***)")
    }
}

impl VapidKey {
    /// A new random key.
    pub fn generate() -> VapidKey {
        loop {
            // Nearly every 32 random bytes are a valid scalar; the loop takes the rare others.
            if let Ok(key) = SigningKey::from_slice(&rand::random::<[u8; 32]>()) {
                return VapidKey(key);
            }
        }
    }

    /// `webpush.vapid_private_key`: the 32-byte scalar, base64url.
    pub fn from_base64url(private_key: &str) -> Result<VapidKey, VapidError> {
        let bytes = URL_SAFE_NO_PAD
            .decode(private_key.trim().trim_end_matches('='))
            .map_err(|_| VapidError("webpush.vapid_private_key is not base64url".into()))?;
        if bytes.len() != 32 {
            return Err(VapidError(format!(
                "webpush.vapid_private_key must be 32 bytes, not {} (blast config vapid-keys makes one)",
                bytes.len()
            )));
        }
        SigningKey::from_slice(&bytes)
            .map(VapidKey)
            .map_err(|_| VapidError("webpush.vapid_private_key is not a P-256 private key".into()))
    }

    pub fn private_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.to_bytes())
    }

    /// The public key as browsers take it for `applicationServerKey`: the uncompressed point.
    pub fn public_base64url(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0.verifying_key().to_encoded_point(false).as_bytes())
    }

    /// The `Authorization` header for a push to `endpoint`: `vapid t=<JWT>, k=<public key>`,
    /// the JWT for the endpoint's origin, from `subject` (a mailto: or https: contact), valid
    /// for `valid_for` (at most 12 hours).
    pub fn authorization(
        &self,
        endpoint: &reqwest::Url,
        subject: &str,
        valid_for: Duration,
    ) -> Result<String, VapidError> {
        let audience = endpoint.origin().ascii_serialization();
        if audience == "null" {
            return Err(VapidError(format!("{endpoint} has no origin to sign for")));
        }
        let expires = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .saturating_add(valid_for.min(MAX_VALIDITY));
        let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({
            "aud": audience,
            "exp": expires.as_secs(),
            "sub": subject,
        });
        let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
        let signing_input = format!("{header}.{claims}");
        let signature: Signature = self.0.sign(signing_input.as_bytes());
        let token = format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.to_bytes())
        );
        Ok(format!("vapid t={token}, k={}", self.public_base64url()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::VerifyingKey;
    use p256::ecdsa::signature::Verifier as _;

    #[test]
    fn a_signed_token_verifies_with_the_public_key_and_names_the_origin() {
        let key = VapidKey::generate();
        let again = VapidKey::from_base64url(&key.private_base64url()).expect("round trip");
        assert_eq!(again.public_base64url(), key.public_base64url());
        let endpoint: reqwest::Url = "https://push.example.com:8443/send/abc"
            .parse()
            .expect("url");
        let header = key
            .authorization(
                &endpoint,
                "mailto:ops@example.com",
                Duration::from_secs(3600 * 48),
            )
            .expect("signed");
        let (token, public) = header
            .strip_prefix("vapid t=")
            .and_then(|rest| rest.split_once(", k="))
            .expect("vapid t=…, k=…");
        assert_eq!(public, key.public_base64url());
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let claims: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).expect("b64")).expect("json");
        assert_eq!(claims["aud"], "https://push.example.com:8443");
        assert_eq!(claims["sub"], "mailto:ops@example.com");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs();
        let exp = claims["exp"].as_u64().expect("exp");
        assert!(
            exp > now && exp <= now + 12 * 3600,
            "at most 12 hours: {exp} - {now}"
        );
        let point = URL_SAFE_NO_PAD.decode(public).expect("b64");
        let verifying = VerifyingKey::from_sec1_bytes(&point).expect("a P-256 point");
        let signature =
            Signature::from_slice(&URL_SAFE_NO_PAD.decode(parts[2]).expect("b64")).expect("r || s");
        verifying
            .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
            .expect("the signature verifies");
    }

    #[test]
    fn a_bad_key_is_named() {
        for (bad, says) in [
            ("not base64!", "not base64url"),
            ("AAAA", "must be 32 bytes"),
            (
                &URL_SAFE_NO_PAD.encode([0u8; 32])[..],
                "not a P-256 private key",
            ),
        ] {
            let err = VapidKey::from_base64url(bad).expect_err(bad);
            assert!(err.to_string().contains(says), "{bad}: {err}");
        }
    }
}
