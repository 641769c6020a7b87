//! The HTTP client of the benchmarks: one per run, shared by every load
//! task; each bench adds its own calls in an `impl Api` block of its own.

use reqwest::StatusCode;
use serde_json::Value;

/// A client of a running api, with its bearer token.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub auth: String,
}

impl Api {
    /// Sends a request and reads the whole body; any status but `expected`
    /// becomes an error carrying the start of the body.
    pub async fn call(
        &self,
        request: reqwest::RequestBuilder,
        expected: StatusCode,
    ) -> Result<Value, String> {
        let response = request
            .header(reqwest::header::AUTHORIZATION, &self.auth)
            .send()
            .await
            .map_err(|err| format!("request failed: {err}"))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|err| format!("HTTP {status}, body unreadable: {err}"))?;
        if status != expected {
            let text = String::from_utf8_lossy(&body);
            let cut: String = text.chars().take(300).collect();
            return Err(format!("HTTP {status} (expected {expected}): {cut}"));
        }
        serde_json::from_slice(&body)
            .map_err(|err| format!("HTTP {status}, body is not JSON: {err}"))
    }
}
