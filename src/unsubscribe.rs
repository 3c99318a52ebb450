//! Unsubscribe links: `{api.public_url}/u/{token}`, where the token names a client and carries an
//! HMAC-SHA256 of its id under a secret kept in the database (made on first use, the same for
//! every process of a deployment), so a link cannot be guessed for another client.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the MAC kept in a token (hex: twice as many characters).
const MAC_BYTES: usize = 16;

/// Makes and checks unsubscribe tokens.
#[derive(Clone)]
pub struct UnsubscribeKeys {
    secret: Vec<u8>,
}

impl std::fmt::Debug for UnsubscribeKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnsubscribeKeys(***)")
    }
}

impl UnsubscribeKeys {
    /// The name of the secret in the store's `site_secrets`.
    pub const SECRET_NAME: &'static str = "unsubscribe";

    pub fn new(secret: &str) -> UnsubscribeKeys {
        UnsubscribeKeys {
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn mac(&self, client_id: i64) -> Hmac<Sha256> {
        // HMAC takes a key of any length; new_from_slice cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(b"unsubscribe:");
        mac.update(client_id.to_string().as_bytes());
        mac
    }

    /// The token of `client_id`: `{id}.{mac}`.
    pub fn token(&self, client_id: i64) -> String {
        let tag = self.mac(client_id).finalize().into_bytes();
        format!("{client_id}.{}", hex::encode(&tag[..MAC_BYTES]))
    }

    /// The client a token names, when its MAC is right (checked in constant time).
    pub fn verify(&self, token: &str) -> Option<i64> {
        let (id, tag) = token.split_once('.')?;
        let client_id: i64 = id.parse().ok()?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.mac(client_id)
            .verify_truncated_left(&tag)
            .ok()
            .map(|()| client_id)
    }

    /// The link for `client_id` under `public_url`.
    pub fn url(&self, public_url: &str, client_id: i64) -> String {
        format!(
            "{}/u/{}",
            public_url.trim_end_matches('/'),
            self.token(client_id)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_verify_only_for_their_own_client_and_secret() {
        let keys = UnsubscribeKeys::new("s3cret");
        let token = keys.token(42);
        assert_eq!(keys.verify(&token), Some(42));
        let forged = token.replacen("42.", "43.", 1);
        assert_eq!(keys.verify(&forged), None);
        assert_eq!(UnsubscribeKeys::new("other").verify(&token), None);
        for bad in ["", "42", "42.", "x.00", "42.zz", "42.00"] {
            assert_eq!(keys.verify(bad), None, "{bad:?}");
        }
        assert_eq!(
            keys.url("http://h:8080/", 42),
            format!("http://h:8080/u/{token}")
        );
    }
}
