//! Webhook signatures: `POST /hook/{workflowID}` carries `X-Crust-Timestamp`
//! (Unix seconds) and `X-Crust-Signature: sha256=<hex HMAC-SHA256 of
//! "<timestamp>.<raw body>">` keyed with the workflow's webhook secret. A
//! timestamp more than [`WINDOW_SECS`] away from now is stale; within the
//! window a signature is accepted once (the api remembers it).

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a delivery's timestamp may be from the server's clock.
pub const WINDOW_SECS: i64 = 300;
/// Shortest webhook secret.
pub const MIN_SECRET_LEN: usize = 16;
/// Longest webhook secret.
pub const MAX_SECRET_LEN: usize = 256;

/// The signature header's value for `body` sent at `timestamp`.
pub fn sign(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp, body).finalize().into_bytes();
    let hex: String = digest.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("sha256={hex}")
}

fn mac(secret: &str, timestamp: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

/// Checks a delivery; the error says what was wrong (for a 401).
pub fn verify(
    secret: &str,
    timestamp: Option<&str>,
    signature: Option<&str>,
    body: &[u8],
    now: i64,
) -> Result<i64, String> {
    let timestamp = timestamp.ok_or("X-Crust-Timestamp is missing")?;
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| "X-Crust-Timestamp must be Unix seconds".to_owned())?;
    if (now - timestamp).abs() > WINDOW_SECS {
        return Err(format!(
            "X-Crust-Timestamp is more than {WINDOW_SECS} s from the server's clock (stale or replayed)"
        ));
    }
    let signature = signature.ok_or("X-Crust-Signature is missing")?;
    let hex = signature
        .trim()
        .strip_prefix("sha256=")
        .ok_or("X-Crust-Signature must be sha256=<hex>")?;
    let given = decode_hex(hex).ok_or("X-Crust-Signature must be sha256=<64 hex digits>")?;
    mac(secret, timestamp, body)
        .verify_slice(&given)
        .map_err(|_| "X-Crust-Signature does not match the body and timestamp".to_owned())?;
    Ok(timestamp)
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    (0..32)
        .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_0123456789abcdef";

    #[test]
    fn a_signed_delivery_verifies_and_any_change_does_not() {
        let body = br#"{"deal": 7}"#;
        let signature = sign(SECRET, 1_000, body);
        assert!(signature.starts_with("sha256=") && signature.len() == 71);
        assert_eq!(
            verify(SECRET, Some("1000"), Some(&signature), body, 1_100),
            Ok(1_000)
        );
        let tampered = br#"{"deal": 8}"#;
        assert!(
            verify(SECRET, Some("1000"), Some(&signature), tampered, 1_100)
                .unwrap_err()
                .contains("does not match")
        );
        assert!(verify(SECRET, Some("1001"), Some(&signature), body, 1_100).is_err());
        assert!(verify(
            "another-secret-xx",
            Some("1000"),
            Some(&signature),
            body,
            1_100
        )
        .is_err());
        assert!(verify(SECRET, Some("1000"), Some(&signature), body, 1_400)
            .unwrap_err()
            .contains("stale"));
        assert!(verify(SECRET, None, Some(&signature), body, 1_000).is_err());
        assert!(verify(SECRET, Some("1000"), None, body, 1_000).is_err());
        assert!(verify(SECRET, Some("1000"), Some("sha256=zz"), body, 1_000).is_err());
    }

    #[test]
    fn the_signature_is_what_openssl_computes() {
        // printf '%s' '1700000000.{}' | openssl dgst -sha256 -hmac whsec_0123456789abcdef
        assert_eq!(
            sign(SECRET, 1_700_000_000, b"{}"),
            format!("sha256={}", openssl_hmac(SECRET, "1700000000.{}"))
        );
    }

    /// HMAC-SHA256 as `openssl dgst -sha256 -hmac` prints it, when openssl
    /// is installed; else the same computation by hand, block by block.
    fn openssl_hmac(key: &str, message: &str) -> String {
        use std::io::Write;
        use std::process::{Command, Stdio};
        if let Ok(mut child) = Command::new("openssl")
            .args(["dgst", "-sha256", "-hmac", key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
        {
            if let Some(stdin) = child.stdin.as_mut() {
                let _ = stdin.write_all(message.as_bytes());
            }
            if let Ok(out) = child.wait_with_output() {
                let text = String::from_utf8_lossy(&out.stdout);
                if let Some(hex) = text.trim().rsplit(' ').next() {
                    if hex.len() == 64 {
                        return hex.to_owned();
                    }
                }
            }
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(key.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}
