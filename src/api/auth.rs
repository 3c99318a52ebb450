//! Authentication: `Authorization: Bearer <token>` on every tenant route, password login for a
//! short-lived token, and optional self-registration.

use super::AppState;
use super::error::{ApiError, ApiJson, ApiResult};
use crate::store::{StoreError, TokenOwner, User, is_plausible_user_name};
use axum::Json;
use axum::extract::ConnectInfo;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::net::{IpAddr, SocketAddr};
use utoipa::ToSchema;

/// The authenticated tenant of a request.
#[derive(Debug, Clone)]
pub struct Tenant(pub User);

/// The bearer token of a request, if it carries one.
pub fn bearer(parts: &Parts) -> Option<&str> {
    bearer_token(&parts.headers)
}

/// The bearer token of an `Authorization` header.
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        // The scheme is case-insensitive (RFC 9110 §11.1).
        .split_once(' ')
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim())
        .filter(|t| !t.is_empty())
}

/// Tokens checked recently, by the SHA-256 of the token: a request with one skips the
/// database. The database is asked again after `api.token_cache_secs`, so a disabled user's
/// tokens stop working within that time in every process; a token's own expiry is exact.
pub struct TokenCache(Option<moka::sync::Cache<[u8; 32], TokenOwner>>);

impl TokenCache {
    pub fn new(ttl_secs: u64) -> TokenCache {
        TokenCache((ttl_secs > 0).then(|| {
            moka::sync::Cache::builder()
                .max_capacity(100_000)
                .time_to_live(std::time::Duration::from_secs(ttl_secs))
                .build()
        }))
    }

    /// Forget every checked token: the next request with each asks the database again.
    pub fn forget_all(&self) {
        if let Some(cache) = &self.0 {
            cache.invalidate_all();
        }
    }
}

/// The user `token` acts for, if it is valid.
pub async fn token_user(state: &AppState, token: &str) -> ApiResult<Option<User>> {
    let Some(cache) = &state.tokens.0 else {
        return Ok(state.store.user_by_token(token).await?);
    };
    let key: [u8; 32] = Sha256::digest(token.as_bytes()).into();
    let now = crate::now_ms();
    let live = |owner: &TokenOwner| owner.expires_at.is_none_or(|at| at > now);
    if let Some(owner) = cache.get(&key).filter(live) {
        return Ok(Some(owner.user));
    }
    let Some(owner) = state.store.token_owner(token).await? else {
        cache.invalidate(&key);
        return Ok(None);
    };
    cache.insert(key, owner.clone());
    Ok(Some(owner.user))
}

impl FromRequestParts<AppState> for Tenant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Tenant> {
        if let Some(tenant) = parts.extensions.get::<Tenant>() {
            return Ok(tenant.clone());
        }
        let token = bearer(parts).ok_or_else(|| {
            ApiError::unauthorized("missing bearer token: send Authorization: Bearer <token>")
        })?;
        let user = token_user(state, token)
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid or expired token"))?;
        let tenant = Tenant(user);
        parts.extensions.insert(tenant.clone());
        Ok(tenant)
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    pub token: String,
    /// Unix milliseconds after which the token stops working.
    pub expires_at: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RegisteredUser {
    pub id: crate::ids::TenantId,
    pub username: String,
}

fn too_many(message: &str) -> ApiError {
    ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", message)
}

/// The address of the client: the peer, or behind a trusted proxy the last address in
/// `X-Forwarded-For` that is not itself a trusted proxy (the hops a client can forge come
/// first).
pub fn client_address(state: &AppState, peer: SocketAddr, headers: &HeaderMap) -> IpAddr {
    let trusted = |ip: &IpAddr| state.trusted_proxies.iter().any(|net| net.contains(ip));
    // Mapped IPv4 (a dual-stack listener) is compared as IPv4.
    let mut client = peer.ip().to_canonical();
    if !trusted(&client) {
        return limited_unit(client);
    }
    let hops: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .collect();
    for hop in hops.into_iter().rev() {
        match hop.trim().parse::<IpAddr>().map(|ip| ip.to_canonical()) {
            Ok(ip) if trusted(&ip) => client = ip,
            Ok(ip) => return limited_unit(ip),
            // A hop we cannot read: the last one we could stands.
            Err(_) => break,
        }
    }
    limited_unit(client)
}

/// The unit limits count by: an IPv4 address (also when it arrives mapped into IPv6), or an
/// IPv6 /64 (one subscriber's network: its host half is theirs to vary).
fn limited_unit(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(std::net::Ipv6Addr::from(bits))
        }
        v4 => v4,
    }
}

/// Login and registration attempts per client address.
fn limit_address(state: &AppState, client: IpAddr) -> ApiResult<()> {
    state
        .address_limiter
        .check_key(&client)
        .map_err(|_| too_many("too many attempts from this address; wait a minute"))
}

/// Whether a password may be tried for `username` now: the limits per client address and per
/// address and user, and a name that could exist. The API's login and the console's sign-in
/// both ask it, so they share one count.
pub fn check_login(
    state: &AppState,
    peer: SocketAddr,
    headers: &HeaderMap,
    username: &str,
) -> ApiResult<()> {
    let client = client_address(state, peer, headers);
    limit_address(state, client)?;
    // Names that cannot exist are refused before they cost a limiter entry or argon2 work.
    if !is_plausible_user_name(username) {
        return Err(ApiError::unauthorized("wrong user name or password"));
    }
    // Per address and user: guessing from one place is slowed without locking the user out
    // everywhere else.
    if state
        .login_limiter
        .check_key(&(client, username.to_owned()))
        .is_err()
    {
        return Err(too_many(
            "too many login attempts for this user from this address; wait a minute",
        ));
    }
    Ok(())
}

/// Exchange a user name and password for a short-lived token.
#[utoipa::path(post, path = "/api/v1/auth/token", tag = "auth", request_body = Credentials,
    responses((status = 200, body = TokenResponse), (status = 401, body = super::error::ErrorBody),
              (status = 429, body = super::error::ErrorBody)))]
pub async fn login(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> ApiResult<Json<TokenResponse>> {
    check_login(&state, peer, &headers, &credentials.username)?;
    let user = state
        .store
        .verify_password(&credentials.username, &credentials.password)
        .await?
        .ok_or_else(|| ApiError::unauthorized("wrong user name or password"))?;
    let ttl_ms =
        i64::try_from(state.settings.api.session_ttl_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
    let token = state
        .store
        .create_token_with_ttl(&user, "session", Some(ttl_ms))
        .await?;
    Ok(Json(TokenResponse {
        token,
        expires_at: crate::now_ms() + ttl_ms,
    }))
}

/// Create a user (a tenant), when the operator allows self-registration.
#[utoipa::path(post, path = "/api/v1/auth/register", tag = "auth", request_body = Credentials,
    responses((status = 201, body = RegisteredUser), (status = 403, body = super::error::ErrorBody),
              (status = 409, body = super::error::ErrorBody), (status = 422, body = super::error::ErrorBody)))]
pub async fn register(
    State(state): State<AppState>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    ApiJson(credentials): ApiJson<Credentials>,
) -> ApiResult<(StatusCode, Json<RegisteredUser>)> {
    limit_address(&state, client_address(&state, peer, &headers))?;
    if !state.settings.api.allow_registration {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "self-registration is disabled on this server",
        ));
    }
    let user = state
        .store
        .add_user(&credentials.username, &credentials.password)
        .await
        .map_err(|e| match e {
            StoreError::Conflict(_) => ApiError::conflict("that user name is taken"),
            other => other.into(),
        })?;
    Ok((
        StatusCode::CREATED,
        Json(RegisteredUser {
            id: user.id,
            username: user.name,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::limited_unit;
    use std::net::IpAddr;

    #[test]
    fn limits_count_ipv4_mapped_as_ipv4_and_ipv6_by_its_64() {
        let ip = |s: &str| s.parse::<IpAddr>().expect("address");
        assert_eq!(limited_unit(ip("::ffff:10.0.0.1")), ip("10.0.0.1"));
        assert_eq!(
            limited_unit(ip("2001:db8:1:2:aaaa:bbbb:cccc:dddd")),
            limited_unit(ip("2001:db8:1:2::1"))
        );
        assert_ne!(
            limited_unit(ip("2001:db8:1:2::1")),
            limited_unit(ip("2001:db8:1:3::1"))
        );
    }
}
