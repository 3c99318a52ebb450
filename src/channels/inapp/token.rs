//! Inbox tokens: the credential an end user's app connects to its inbox with. The tenant's
//! backend asks for one (`POST /api/v1/clients/{id}/inbox-token`) and hands it to the app.
//!
//! A token is `{tenant}.{client}.{expires}.{mac}`: the HMAC-SHA256 of the first three under a
//! secret kept in the database (made on first use, the same for every process), so it names
//! one client of one tenant, cannot be forged or moved to another client, and runs out.

use crate::ids::{ClientId, TenantId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Bytes of the MAC kept in a token (hex: twice as many characters).
const MAC_BYTES: usize = 16;

/// Whose inbox a valid token opens, and until when (unix seconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InboxClaims {
    pub tenant_id: TenantId,
    pub client_id: ClientId,
    pub expires_at: i64,
}

/// Makes and checks inbox tokens.
#[derive(Clone)]
pub struct InboxTokens {
    secret: Vec<u8>,
}

impl std::fmt::Debug for InboxTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("InboxTokens(***)")
    }
}

impl InboxTokens {
    /// The name of the secret in the store's `site_secrets`.
    pub const SECRET_NAME: &'static str = "inbox";

    pub fn new(secret: &str) -> InboxTokens {
        InboxTokens {
            secret: secret.as_bytes().to_vec(),
        }
    }

    fn mac(&self, claims: &str) -> Hmac<Sha256> {
        // HMAC takes a key of any length; new_from_slice cannot fail for it.
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&self.secret)
            .unwrap_or_else(|_| unreachable!("HMAC accepts keys of every length"));
        mac.update(b"inbox:");
        mac.update(claims.as_bytes());
        mac
    }

    /// The token for `claims`.
    pub fn token(&self, claims: InboxClaims) -> String {
        let signed = format!(
            "{}.{}.{}",
            claims.tenant_id, claims.client_id, claims.expires_at
        );
        let tag = self.mac(&signed).finalize().into_bytes();
        format!("{signed}.{}", hex::encode(&tag[..MAC_BYTES]))
    }

    /// What a token says, when its MAC is right (checked in constant time) and it has not run
    /// out by `now` (unix seconds).
    pub fn verify(&self, token: &str, now: i64) -> Option<InboxClaims> {
        let (signed, tag) = token.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.mac(signed).verify_truncated_left(&tag).ok()?;
        let mut parts = signed.split('.');
        let claims = InboxClaims {
            tenant_id: TenantId(parts.next()?.parse().ok()?),
            client_id: ClientId(parts.next()?.parse().ok()?),
            expires_at: parts.next()?.parse().ok()?,
        };
        (parts.next().is_none() && claims.expires_at > now).then_some(claims)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(client: i64, expires_at: i64) -> InboxClaims {
        InboxClaims {
            tenant_id: TenantId(7),
            client_id: ClientId(client),
            expires_at,
        }
    }

    #[test]
    fn a_token_opens_only_its_own_inbox_until_it_runs_out() {
        let tokens = InboxTokens::new("s3cret");
        let token = tokens.token(claims(42, 1_000));
        assert_eq!(tokens.verify(&token, 999), Some(claims(42, 1_000)));
        assert_eq!(tokens.verify(&token, 1_000), None, "expired");
        assert_eq!(InboxTokens::new("other").verify(&token, 0), None);
        let forged = token.replacen("7.42.", "7.43.", 1);
        assert_eq!(tokens.verify(&forged, 0), None);
        let later = token.replacen(".1000.", ".9000.", 1);
        assert_eq!(tokens.verify(&later, 0), None);
        assert_eq!(tokens.verify("7.42.1000", 0), None);
        assert_eq!(tokens.verify("", 0), None);
    }
}
