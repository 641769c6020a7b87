//! Bearer tokens: HS256 JWTs signed with `CRUST_JWT_SECRET`.
//!
//! Only HS256 is accepted, and the header's `alg` must say so, which rules
//! out the classic `alg: none` and algorithm-confusion attacks. This is the
//! whole of what Crust needs from JWT, so it is written here over `hmac` and
//! `sha2` instead of pulling in a general JWT library and its crypto stack.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::Id;

/// The shortest secret accepted, in bytes.
pub const MIN_SECRET_LEN: usize = 32;

/// What a valid token says.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Claims {
    /// The user ID, a decimal string.
    pub sub: String,
    /// Expiry, seconds since the Unix epoch.
    pub exp: i64,
    /// Issued at, seconds since the Unix epoch.
    #[serde(default)]
    pub iat: i64,
    /// The roles the token grants (built-in or custom names). Absent or
    /// empty: the token may do nothing (every protected route is a 403).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
}

impl Claims {
    /// The user the token speaks for.
    pub fn user_id(&self) -> Result<Id, String> {
        parse_user_id(&self.sub).map_err(|reason| format!("token subject {reason}"))
    }
}

/// A user ID as a token's `sub` carries it: a positive decimal number.
/// Zero is no user (it stands for "none" in optional references), so a
/// token for it is refused rather than acting as nobody.
pub fn parse_user_id(text: &str) -> Result<Id, String> {
    let id = Id::parse(text)?;
    if id.get() <= 0 {
        return Err(format!("{text:?} is not a user ID (must be positive)"));
    }
    Ok(id)
}

/// Signs and checks tokens with one secret. The secret is never printed.
#[derive(Clone)]
pub struct TokenKey {
    secret: Vec<u8>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(..)")
    }
}

impl TokenKey {
    /// A key from the configured secret, refusing short ones.
    pub fn new(secret: &str) -> Result<Self, String> {
        if secret.len() < MIN_SECRET_LEN {
            return Err(format!(
                "CRUST_JWT_SECRET must be at least {MIN_SECRET_LEN} bytes long"
            ));
        }
        Ok(Self {
            secret: secret.as_bytes().to_vec(),
        })
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes keys of any length, so this cannot fail.
        Hmac::<Sha256>::new_from_slice(&self.secret).unwrap_or_else(|_| unreachable!())
    }

    /// A signed token for `user` with `roles`, valid for `ttl_seconds`
    /// from `now`.
    pub fn sign(&self, user: Id, roles: &[&str], now: i64, ttl_seconds: i64) -> String {
        let header = B64.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = Claims {
            sub: user.to_string(),
            exp: now + ttl_seconds,
            iat: now,
            roles: roles.iter().map(|role| (*role).to_owned()).collect(),
        };
        let payload = B64.encode(serde_json::to_vec(&claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let signature = B64.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    /// Checks signature, algorithm and expiry; says why a token is refused.
    pub fn verify(&self, token: &str, now: i64) -> Result<Claims, String> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("token is not a JWT".into());
        };
        let header: serde_json::Value = B64
            .decode(header)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or("token header is malformed")?;
        if header.get("alg").and_then(|alg| alg.as_str()) != Some("HS256") {
            return Err("token must be signed with HS256".into());
        }
        let signature = B64
            .decode(signature)
            .map_err(|_| "token signature is malformed")?;
        let mut mac = self.mac();
        mac.update(header_and_payload(token).as_bytes());
        mac.verify_slice(&signature)
            .map_err(|_| "token signature is invalid")?;
        let claims: Claims = B64
            .decode(payload)
            .ok()
            .and_then(|bytes| serde_json::from_slice(&bytes).ok())
            .ok_or("token claims are malformed (need sub and exp)")?;
        if claims.exp <= now {
            return Err("token has expired".into());
        }
        claims.user_id()?;
        Ok(claims)
    }
}

fn header_and_payload(token: &str) -> &str {
    token.rsplit_once('.').map_or(token, |(head, _)| head)
}

/// Parses a TTL such as `90s`, `15m`, `24h`, `7d` or a bare number of seconds.
pub fn parse_ttl(text: &str) -> Result<i64, String> {
    let text = text.trim();
    let (digits, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((at, _)) => text.split_at(at),
        None => (text, "s"),
    };
    let amount: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is not a duration like 24h"))?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: unit must be s, m, h or d")),
    };
    amount
        .checked_mul(scale)
        .filter(|seconds| *seconds > 0)
        .ok_or_else(|| format!("{text:?} is not a positive duration"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn a_signed_token_verifies_and_names_its_user() {
        let key = TokenKey::new(SECRET).unwrap();
        let token = key.sign(Id(7), &["admin"], 1_000, 60);
        let claims = key.verify(&token, 1_010).unwrap();
        assert_eq!(claims.user_id().unwrap(), Id(7));
        assert_eq!(claims.roles, ["admin"]);
        let none = key.verify(&key.sign(Id(7), &[], 1_000, 60), 1_010).unwrap();
        assert!(none.roles.is_empty());
    }

    #[test]
    fn a_token_for_user_zero_is_refused() {
        let key = TokenKey::new(SECRET).unwrap();
        let token = key.sign(Id(0), &["admin"], 1_000, 60);
        assert_eq!(
            key.verify(&token, 1_010).unwrap_err(),
            r#"token subject "0" is not a user ID (must be positive)"#
        );
        assert!(parse_user_id("0").is_err());
        assert_eq!(parse_user_id("12"), Ok(Id(12)));
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let key = TokenKey::new(SECRET).unwrap();
        let token = key.sign(Id(7), &["admin"], 1_000, 60);
        assert_eq!(key.verify(&token, 1_060).unwrap_err(), "token has expired");
        let other = TokenKey::new("another-secret-another-secret-xx").unwrap();
        assert_eq!(
            other.verify(&token, 1_010).unwrap_err(),
            "token signature is invalid"
        );
        let (head, _) = token.rsplit_once('.').unwrap();
        let none = format!(
            "{}.{}.",
            B64.encode(br#"{"alg":"none"}"#),
            head.split('.').nth(1).unwrap()
        );
        assert_eq!(
            key.verify(&none, 1_010).unwrap_err(),
            "token must be signed with HS256"
        );
        assert_eq!(key.verify("abc", 0).unwrap_err(), "token is not a JWT");
    }

    #[test]
    fn short_secrets_are_refused() {
        assert!(TokenKey::new("short").is_err());
    }

    #[test]
    fn ttls_parse_with_units() {
        assert_eq!(parse_ttl("24h").unwrap(), 86_400);
        assert_eq!(parse_ttl("90").unwrap(), 90);
        assert!(parse_ttl("0s").is_err());
        assert!(parse_ttl("5y").is_err());
    }
}
