//! Inbox tokens: the credential an end user's app connects to its inbox with. The tenant's
//! backend asks for one (`POST /api/v1/clients/{id}/inbox-token`) and hands it to the app.
//!
//! A token is `{tenant}.{client}.{expires}.{mac}`: the HMAC-SHA256 of the first three and the
//! client's creation time under a secret kept in the database (made on first use, the same for
//! every process), so it names one client of one tenant, cannot be forged or moved to another
//! client, runs out, and opens nothing once its client is deleted (not even a new client that
//! was given the same id).

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

    /// The MAC of `signed` (the token's first three parts) for the client created at
    /// `client_created_at`.
    fn tag(&self, signed: &str, client_created_at: i64) -> Hmac<Sha256> {
        let mut mac = self.mac(signed);
        mac.update(format!(".{client_created_at}").as_bytes());
        mac
    }

    /// The token for `claims`, whose client was created at `client_created_at` (ms).
    pub fn token(&self, claims: InboxClaims, client_created_at: i64) -> String {
        let signed = format!(
            "{}.{}.{}",
            claims.tenant_id, claims.client_id, claims.expires_at
        );
        let tag = self.tag(&signed, client_created_at).finalize().into_bytes();
        format!("{signed}.{}", hex::encode(&tag[..MAC_BYTES]))
    }

    /// What a token claims, unchecked: whose client to look up before [`InboxTokens::verify`].
    pub fn claims(token: &str) -> Option<InboxClaims> {
        let (signed, _) = token.rsplit_once('.')?;
        let mut parts = signed.split('.');
        let claims = InboxClaims {
            tenant_id: TenantId(parts.next()?.parse().ok()?),
            client_id: ClientId(parts.next()?.parse().ok()?),
            expires_at: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(claims)
    }

    /// What a token says, when its MAC is right for the client created at
    /// `client_created_at` (checked in constant time) and it has not run out by `now` (unix
    /// seconds).
    pub fn verify(&self, token: &str, client_created_at: i64, now: i64) -> Option<InboxClaims> {
        let claims = InboxTokens::claims(token)?;
        let (signed, tag) = token.rsplit_once('.')?;
        let tag = hex::decode(tag).ok()?;
        if tag.len() != MAC_BYTES {
            return None;
        }
        self.tag(signed, client_created_at)
            .verify_truncated_left(&tag)
            .ok()?;
        (claims.expires_at > now).then_some(claims)
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
        let token = tokens.token(claims(42, 1_000), 5);
        assert_eq!(InboxTokens::claims(&token), Some(claims(42, 1_000)));
        assert_eq!(tokens.verify(&token, 5, 999), Some(claims(42, 1_000)));
        assert_eq!(tokens.verify(&token, 5, 1_000), None, "expired");
        assert_eq!(
            tokens.verify(&token, 6, 0),
            None,
            "another client with the same id"
        );
        assert_eq!(InboxTokens::new("other").verify(&token, 5, 0), None);
        let forged = token.replacen("7.42.", "7.43.", 1);
        assert_eq!(tokens.verify(&forged, 5, 0), None);
        let later = token.replacen(".1000.", ".9000.", 1);
        assert_eq!(tokens.verify(&later, 5, 0), None);
        assert_eq!(tokens.verify("7.42.1000", 5, 0), None);
        assert_eq!(tokens.verify("", 5, 0), None);
        assert_eq!(InboxTokens::claims("7.42.1000.x.ab"), None);
    }
}
