//! Secrets at rest: each value sealed with XChaCha20-Poly1305 under
//! `CRUST_SECRETS_KEY` (a random 24-byte nonce per write, the secret's name
//! as associated data, so a sealed value moved to another name does not
//! open), with the key's id stored beside it. During a key rotation the
//! previous key (`CRUST_SECRETS_PREVIOUS_KEY`) still opens what it sealed;
//! [`reencrypt`] seals everything again under the current key.

use std::collections::BTreeMap;

use chacha20poly1305::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use chacha20poly1305::{Key, XChaCha20Poly1305, XNonce};
use crust_model::config::ConfigError;
use crust_model::secret::{check_name, Secret};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use crate::{Error, Result};

/// The keys secrets are sealed and opened with. Set in the api and every
/// worker (`CRUST_SECRETS_KEY`, 64 hex characters = 32 bytes).
#[derive(Clone, clap::Args)]
pub struct SecretsConfig {
    /// Key secrets are encrypted with: 64 hex characters (32 random bytes,
    /// e.g. `openssl rand -hex 32`). Unset: the secret endpoints answer 503
    /// and tasks that use `{{ secrets.… }}` fail.
    #[arg(long, env = "CRUST_SECRETS_KEY", hide_env_values = true)]
    pub secrets_key: Option<String>,

    /// During a key rotation: the key being replaced, still used to open
    /// secrets sealed with it until `crust-api secrets reencrypt` ran.
    #[arg(long, env = "CRUST_SECRETS_PREVIOUS_KEY", hide_env_values = true)]
    pub secrets_previous_key: Option<String>,
}

impl std::fmt::Debug for SecretsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretsConfig")
            .field("secrets_key", &self.secrets_key.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

impl SecretsConfig {
    /// The keyring, `None` without a key; a malformed key fails at start.
    pub fn keyring(&self) -> std::result::Result<Option<Keyring>, ConfigError> {
        let Some(current) = &self.secrets_key else {
            if self.secrets_previous_key.is_some() {
                return Err(ConfigError::new(
                    "CRUST_SECRETS_PREVIOUS_KEY is set without CRUST_SECRETS_KEY",
                ));
            }
            return Ok(None);
        };
        let current = SecretKey::parse(current)
            .map_err(|reason| ConfigError::new(format!("CRUST_SECRETS_KEY: {reason}")))?;
        let previous = self
            .secrets_previous_key
            .as_deref()
            .map(SecretKey::parse)
            .transpose()
            .map_err(|reason| ConfigError::new(format!("CRUST_SECRETS_PREVIOUS_KEY: {reason}")))?;
        Ok(Some(Keyring { current, previous }))
    }
}

/// One 32-byte key and its id (the first 8 bytes of its SHA-256, in hex).
#[derive(Clone)]
pub struct SecretKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl SecretKey {
    /// Parses 64 hex characters.
    pub fn parse(text: &str) -> std::result::Result<SecretKey, String> {
        let text = text.trim();
        if text.len() != 64 || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(format!(
                "must be 64 hex characters (32 bytes; `openssl rand -hex 32` makes one), got {} characters",
                text.len()
            ));
        }
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0))
            .collect();
        let digest = Sha256::digest(&bytes);
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        Ok(SecretKey {
            cipher: XChaCha20Poly1305::new(Key::from_slice(&bytes)),
            id,
        })
    }

    /// The key's id, stored with what it sealed.
    pub fn id(&self) -> &str {
        &self.id
    }
}

/// The current key and, during a rotation, the previous one.
#[derive(Clone)]
pub struct Keyring {
    pub current: SecretKey,
    pub previous: Option<SecretKey>,
}

/// A value as stored: `(key id, nonce, ciphertext)`.
type Sealed = (String, Vec<u8>, Vec<u8>);

impl Keyring {
    /// Seals `value` for the secret `name` under the current key.
    fn seal(&self, name: &str, value: &str) -> Result<Sealed> {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let sealed = self
            .current
            .cipher
            .encrypt(
                &nonce,
                Payload {
                    msg: value.as_bytes(),
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| Error::invalid("value: could not be encrypted"))?;
        Ok((self.current.id.clone(), nonce.to_vec(), sealed))
    }

    /// Opens what [`Keyring::seal`] made, with whichever key sealed it.
    fn open(&self, name: &str, (key_id, nonce, sealed): &Sealed) -> Result<String> {
        let key = std::iter::once(&self.current)
            .chain(&self.previous)
            .find(|key| key.id == *key_id)
            .ok_or_else(|| {
                Error::Secrets(format!(
                    "secret {name:?} was sealed with key {key_id}, which is neither \
                     CRUST_SECRETS_KEY ({}) nor CRUST_SECRETS_PREVIOUS_KEY",
                    self.current.id
                ))
            })?;
        if nonce.len() != 24 {
            return Err(Error::Secrets(format!("secret {name:?} is damaged")));
        }
        let plain = key
            .cipher
            .decrypt(
                XNonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: name.as_bytes(),
                },
            )
            .map_err(|_| Error::Secrets(format!("secret {name:?} does not open with its key")))?;
        String::from_utf8(plain).map_err(|_| Error::Secrets(format!("secret {name:?} is damaged")))
    }
}

type SecretRow = (
    String,
    chrono::DateTime<chrono::Utc>,
    Option<chrono::DateTime<chrono::Utc>>,
);

fn secret((name, created_at, updated_at): SecretRow) -> Secret {
    Secret {
        name,
        created_at,
        updated_at,
    }
}

/// Sets secret `name` to `value` (sealed); true in the second place when
/// it was created rather than replaced.
pub async fn put(pool: &PgPool, keys: &Keyring, name: &str, value: &str) -> Result<(Secret, bool)> {
    check_name(name)?;
    let (key_id, nonce, sealed) = keys.seal(name, value)?;
    let mut tx = crate::audit::begin(pool).await?;
    let (name, created_at, updated_at, created): (String, _, _, bool) = sqlx::query_as(
        "INSERT INTO secrets (name, key_id, nonce, sealed) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO UPDATE
             SET key_id = excluded.key_id, nonce = excluded.nonce, sealed = excluded.sealed,
                 updated_at = now()
         RETURNING name, created_at, updated_at, (xmax = 0) AS created",
    )
    .bind(name)
    .bind(key_id)
    .bind(nonce)
    .bind(sealed)
    .fetch_one(&mut *tx)
    .await?;
    crate::audit::commit(tx).await?;
    Ok((secret((name, created_at, updated_at)), created))
}

/// Every secret's name and times, by name.
pub async fn list(pool: &PgPool) -> Result<Vec<Secret>> {
    let rows: Vec<SecretRow> =
        sqlx::query_as("SELECT name, created_at, updated_at FROM secrets ORDER BY name")
            .fetch_all(pool)
            .await?;
    Ok(rows.into_iter().map(secret).collect())
}

/// Deletes secret `name`; 404 when there is none.
pub async fn delete(pool: &PgPool, name: &str) -> Result<()> {
    check_name(name)?;
    let mut tx = crate::audit::begin(pool).await?;
    let deleted = sqlx::query("DELETE FROM secrets WHERE name = $1")
        .bind(name)
        .execute(&mut *tx)
        .await?
        .rows_affected();
    if deleted == 0 {
        return Err(Error::not_found(format!("secret {name:?} does not exist")));
    }
    crate::audit::commit(tx).await?;
    Ok(())
}

/// Every secret's value, by name (what a worker renders templates with).
pub async fn load(pool: &PgPool, keys: &Keyring) -> Result<BTreeMap<String, String>> {
    let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> =
        sqlx::query_as("SELECT name, key_id, nonce, sealed FROM secrets")
            .fetch_all(pool)
            .await?;
    rows.into_iter()
        .map(|(name, key_id, nonce, sealed)| {
            let value = keys.open(&name, &(key_id, nonce, sealed))?;
            Ok((name, value))
        })
        .collect()
}

/// Seals every secret again under the current key (after a rotation put
/// the old key in `CRUST_SECRETS_PREVIOUS_KEY`), in one transaction;
/// returns how many were re-sealed.
pub async fn reencrypt(pool: &PgPool, keys: &Keyring) -> Result<u64> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(String, String, Vec<u8>, Vec<u8>)> = sqlx::query_as(
        "SELECT name, key_id, nonce, sealed FROM secrets WHERE key_id <> $1 ORDER BY name FOR UPDATE",
    )
    .bind(keys.current.id())
    .fetch_all(&mut *tx)
    .await?;
    let count = rows.len() as u64;
    for (name, key_id, nonce, sealed) in rows {
        let value = keys.open(&name, &(key_id, nonce, sealed))?;
        let (key_id, nonce, sealed) = keys.seal(&name, &value)?;
        sqlx::query("UPDATE secrets SET key_id = $2, nonce = $3, sealed = $4 WHERE name = $1")
            .bind(&name)
            .bind(key_id)
            .bind(nonce)
            .bind(sealed)
            .execute(&mut *tx)
            .await?;
    }
    tx.commit().await?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const B: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn ring(current: &str, previous: Option<&str>) -> Keyring {
        Keyring {
            current: SecretKey::parse(current).unwrap(),
            previous: previous.map(|p| SecretKey::parse(p).unwrap()),
        }
    }

    #[test]
    fn a_sealed_value_opens_under_its_name_and_key_only() {
        let keys = ring(A, None);
        let sealed = keys.seal("stripe", "sk_live_123").unwrap();
        assert_ne!(sealed.2, b"sk_live_123");
        assert_eq!(keys.open("stripe", &sealed).unwrap(), "sk_live_123");
        assert!(keys.open("other", &sealed).is_err(), "bound to its name");
        let mut tampered = sealed.clone();
        tampered.2[0] ^= 1;
        assert!(keys.open("stripe", &tampered).is_err());
        // Rotated: the new key opens nothing of the old one's unless the old
        // one is kept as the previous key.
        assert!(ring(B, None).open("stripe", &sealed).is_err());
        assert_eq!(
            ring(B, Some(A)).open("stripe", &sealed).unwrap(),
            "sk_live_123"
        );
    }

    #[test]
    fn keys_are_64_hex_characters() {
        assert!(SecretKey::parse("abc").is_err());
        assert!(SecretKey::parse(&"g".repeat(64)).is_err());
        assert_eq!(SecretKey::parse(A).unwrap().id().len(), 16);
    }
}
