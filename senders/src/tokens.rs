//! Access tokens that cost an exchange to get: a GitHub App's installation
//! token, a Google service account's OAuth2 token, an Entra ID client
//! credential's token. Each is fetched once per credential and shared by
//! every delivery of the sender, refreshed shortly before it expires, and
//! forgotten when the API refuses it (a 401), so the next call fetches anew.
//!
//! The cache is keyed by a digest of what identifies the credential, so it
//! holds no secret but the tokens themselves. One fetch at a time per
//! credential: deliveries that need the same token wait for the one fetch.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::classify::{self, Judge};
use crate::config::Resolved;
use crate::http::{Answer, HttpSender, masker};
use crate::outcome::Outcome;
use crate::providers::Writing;

/// A token is refreshed this long before it expires, at most.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// Above this many credentials, stale entries are dropped when one is added.
const PRUNE_ABOVE: usize = 1024;

/// What identifies one credential: a digest of its parts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TokenKey([u8; 32]);

impl TokenKey {
    /// The key of the credential made of `parts` (kind, endpoint, ids, key
    /// material): each part is length-prefixed, so no two lists collide.
    #[must_use]
    pub fn new(parts: &[&str]) -> Self {
        let mut digest = Sha256::new();
        for part in parts {
            digest.update((part.len() as u64).to_be_bytes());
            digest.update(part.as_bytes());
        }
        Self(digest.finalize().into())
    }
}

/// A fetched token and until when it is good.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires_at: Timestamp,
    fetched_at: Timestamp,
}

impl Token {
    /// A token good until `expires_at`.
    #[must_use]
    pub fn new(value: String, expires_at: Timestamp) -> Self {
        Self {
            value,
            expires_at,
            fetched_at: Timestamp::now(),
        }
    }

    /// A token good for `lifetime` from now.
    #[must_use]
    pub fn lasting(value: String, lifetime: Duration) -> Self {
        let now = Timestamp::now();
        let lifetime =
            jiff::SignedDuration::try_from(lifetime).unwrap_or(jiff::SignedDuration::ZERO);
        Self {
            value,
            expires_at: now.checked_add(lifetime).unwrap_or(now),
            fetched_at: now,
        }
    }

    /// Whether it is still worth using at `now`: not within the refresh
    /// margin (five minutes, or a quarter of a short token's life).
    fn fresh(&self, now: Timestamp) -> bool {
        let life = self.expires_at.duration_since(self.fetched_at);
        let margin = jiff::SignedDuration::try_from(REFRESH_BEFORE)
            .unwrap_or(jiff::SignedDuration::ZERO)
            .min(life / 4);
        now.checked_add(margin)
            .is_ok_and(|soon| soon < self.expires_at)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Token")
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

type Slot = Arc<tokio::sync::Mutex<Option<Token>>>;

/// The sender's token cache.
#[derive(Clone, Default)]
pub struct Tokens {
    slots: Arc<Mutex<HashMap<TokenKey, Slot>>>,
}

impl std::fmt::Debug for Tokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tokens")
    }
}

impl Tokens {
    /// The token of `key`: the cached one while fresh, else what `fetch`
    /// gets (and then caches). A failed fetch caches nothing.
    ///
    /// # Errors
    ///
    /// The outcome of the failed fetch.
    pub async fn get<F, Fut>(&self, key: TokenKey, fetch: F) -> Result<String, Outcome>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Token, Outcome>>,
    {
        let slot = self.slot(key);
        let mut held = slot.lock().await;
        if let Some(token) = held.as_ref().filter(|t| t.fresh(Timestamp::now())) {
            return Ok(token.value.clone());
        }
        let token = fetch().await?;
        let value = token.value.clone();
        *held = Some(token);
        Ok(value)
    }

    /// Forgets `refused`, the token of `key` an API refused, unless another
    /// delivery has already replaced it.
    pub async fn forget(&self, key: TokenKey, refused: &str) {
        let slot = self.slot(key);
        let mut held = slot.lock().await;
        if held.as_ref().is_some_and(|t| t.value == refused) {
            *held = None;
        }
    }

    fn slot(&self, key: TokenKey) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(PoisonError::into_inner);
        if slots.len() > PRUNE_ABOVE && !slots.contains_key(&key) {
            let now = Timestamp::now();
            slots.retain(|_, slot| {
                slot.try_lock()
                    .map_or(true, |held| held.as_ref().is_some_and(|t| t.fresh(now)))
            });
        }
        slots.entry(key).or_default().clone()
    }
}

/// Runs `call` with the token of `key` (cached, or got by `fetch`); when
/// the API refuses it (401), forgets it and runs `call` once more with a
/// new one.
pub async fn authorized<'a, F, Fut>(
    tokens: &Tokens,
    key: TokenKey,
    fetch: F,
    call: impl Fn(String) -> Writing<'a>,
) -> Outcome
where
    F: Fn() -> Fut,
    Fut: Future<Output = Result<Token, Outcome>>,
{
    let token = match tokens.get(key, &fetch).await {
        Ok(token) => token,
        Err(outcome) => return outcome,
    };
    let outcome = call(token.clone()).await;
    if outcome.status() != 401 {
        return outcome;
    }
    tokens.forget(key, &token).await;
    match tokens.get(key, &fetch).await {
        Ok(token) => call(token).await,
        Err(outcome) => outcome,
    }
}

/// Signs `claims` as an RS256 JWT with the PEM RSA private key `pem`
/// (PKCS#1 or PKCS#8), with `kid` in the header when given.
///
/// # Errors
///
/// When `pem` is not an RSA private key (the text names no part of it).
pub fn sign_rs256<C: Serialize>(
    claims: &C,
    pem: &str,
    kid: Option<&str>,
) -> Result<String, String> {
    let key = jsonwebtoken::EncodingKey::from_rsa_pem(pem.as_bytes())
        .map_err(|_| "is not a PEM-encoded RSA private key".to_owned())?;
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, claims, &key).map_err(|e| format!("cannot be used to sign: {e}"))
}

/// Whole seconds since the Unix epoch, now.
#[must_use]
pub fn unix_now() -> i64 {
    Timestamp::now().as_second()
}

/// One token-endpoint exchange: the 2xx answer, or the outcome of any other
/// (a 4xx is dead with the endpoint's words, a 5xx or 429 retried), its
/// reason starting with `what`.
///
/// # Errors
///
/// The outcome when the answer is not a 2xx.
pub async fn exchange(
    http: &HttpSender,
    resolved: &Resolved,
    request: TokenRequest<'_>,
    what: &str,
) -> Result<Answer, Outcome> {
    let TokenRequest {
        method,
        url,
        headers,
        body,
    } = request;
    let Ok(url) = reqwest::Url::parse(url) else {
        return Err(Outcome::Dead {
            reason: format!("{what}: invalid URL"),
            status: 0,
            body: String::new(),
        });
    };
    let masker = masker(resolved, &url);
    let answer = http.call(method, url, headers, body, resolved).await?;
    if (200..300).contains(&answer.status) {
        Ok(answer)
    } else {
        Err(classify::classify(&answer, Judge::Status, &masker, what))
    }
}

/// A request to a token endpoint.
pub struct TokenRequest<'a> {
    pub method: reqwest::Method,
    pub url: &'a str,
    pub headers: &'a [(String, String)],
    pub body: Option<Vec<u8>>,
}

/// `application/x-www-form-urlencoded` of `pairs`.
#[must_use]
pub fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
    let encode = |s: &str| {
        percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
    };
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect::<Vec<_>>()
        .join("&")
        .into_bytes()
}

/// The standard OAuth2 token answer (`access_token`, `expires_in`).
///
/// # Errors
///
/// When the answer holds no token.
pub fn oauth2_token(answer: &Answer, what: &str) -> Result<Token, Outcome> {
    #[derive(serde::Deserialize)]
    struct Granted {
        access_token: String,
        #[serde(default)]
        expires_in: Option<serde_json::Value>,
    }
    let granted: Granted = serde_json::from_slice(&answer.body)
        .ok()
        .filter(|g: &Granted| !g.access_token.is_empty())
        .ok_or_else(|| Outcome::Dead {
            reason: format!("{what}: the answer holds no access_token"),
            status: answer.status,
            body: String::new(),
        })?;
    // `expires_in` is a number (Google, Entra v2) or a string of one (Entra v1).
    let seconds = match granted.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_u64(),
        Some(serde_json::Value::String(s)) => s.parse().ok(),
        _ => None,
    }
    .unwrap_or(3600);
    Ok(Token::lasting(
        granted.access_token,
        Duration::from_secs(seconds),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_fresh_token_is_reused_and_a_refused_one_fetched_anew() {
        let tokens = Tokens::default();
        let key = TokenKey::new(&["github-app", "1", "key"]);
        let fetches = std::sync::atomic::AtomicU32::new(0);
        let fetch = || async {
            let n = fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(Token::lasting(format!("t{n}"), Duration::from_secs(3600)))
        };
        assert_eq!(tokens.get(key, fetch).await.unwrap(), "t0");
        assert_eq!(tokens.get(key, fetch).await.unwrap(), "t0");
        // Another credential has its own token.
        let other = TokenKey::new(&["github-app", "2", "key"]);
        assert_eq!(tokens.get(other, fetch).await.unwrap(), "t1");
        // A refusal of an older token does not drop the current one.
        tokens.forget(key, "stale").await;
        assert_eq!(tokens.get(key, fetch).await.unwrap(), "t0");
        tokens.forget(key, "t0").await;
        assert_eq!(tokens.get(key, fetch).await.unwrap(), "t2");
    }

    #[tokio::test]
    async fn a_token_near_its_expiry_is_refreshed_and_a_failed_fetch_is_not_cached() {
        let tokens = Tokens::default();
        let key = TokenKey::new(&["google", "sa@example"]);
        let short = || async { Ok(Token::lasting("short".into(), Duration::from_secs(2))) };
        // Two seconds of life: a quarter of it is the margin; still fresh.
        assert_eq!(tokens.get(key, short).await.unwrap(), "short");
        let expired = || async {
            Ok(Token::new(
                "expired".into(),
                Timestamp::now() - jiff::SignedDuration::from_secs(1),
            ))
        };
        let other = TokenKey::new(&["google", "other"]);
        assert_eq!(tokens.get(other, expired).await.unwrap(), "expired");
        let failing = || async {
            Err(Outcome::Retry {
                reason: "token endpoint down".into(),
                status: 503,
                after: None,
                body: String::new(),
            })
        };
        assert!(tokens.get(other, failing).await.is_err());
        let fresh = || async { Ok(Token::lasting("fresh".into(), Duration::from_secs(3600))) };
        assert_eq!(tokens.get(other, fresh).await.unwrap(), "fresh");
    }

    #[test]
    fn keys_do_not_collide_by_concatenation() {
        assert_ne!(TokenKey::new(&["ab", "c"]), TokenKey::new(&["a", "bc"]));
    }

    #[test]
    fn a_jwt_is_signed_with_the_key_and_a_bad_key_is_named_not_shown() {
        let pem = include_str!("../../tests/fixtures/test-rsa-key.pem");
        let public = include_str!("../../tests/fixtures/test-rsa-key.pub.pem");
        let jwt = sign_rs256(
            &serde_json::json!({"iss": "42", "exp": unix_now() + 60}),
            pem,
            Some("k1"),
        )
        .unwrap();
        let key = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).unwrap();
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            &jwt,
            &key,
            &jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256),
        )
        .unwrap();
        assert_eq!(decoded.claims["iss"], "42");
        assert_eq!(decoded.header.kid.as_deref(), Some("k1"));
        let pkcs8 = include_str!("../../tests/fixtures/test-rsa-key.pkcs8.pem");
        assert!(sign_rs256(&serde_json::json!({"iss": "42"}), pkcs8, None).is_ok());
        let error = sign_rs256(
            &serde_json::json!({}),
            "-----BEGIN RSA PRIVATE KEY-----\nMIIsecret\n",
            None,
        )
        .unwrap_err();
        assert!(!error.contains("MIIsecret"), "{error}");
    }
}
