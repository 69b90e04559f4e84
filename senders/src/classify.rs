//! The one classifier: what an answer (or the lack of one) means for a
//! delivery. Every provider's request names a [`Judge`]; every answer goes
//! through [`classify`], every transport failure through [`transport`], and
//! whatever is kept of them (reasons, body excerpts) through a [`Masker`].
//!
//! - 2xx is delivered, unless the vendor's body says it failed (Slack's Web
//!   API and Telegram answer `ok: false`, Lark a non-zero `code`).
//! - 408, 429 and 5xx but 501 are retried; so are the vendors' "wait" bodies
//!   (Slack `ratelimited`, Telegram `parameters.retry_after`, Discord's JSON
//!   `retry_after`, Lark's code `11232`, Matrix's `retry_after_ms`) and git hosts' rate-limit 403s.
//! - The wait is the destination's: `Retry-After` (seconds or an HTTP date),
//!   a vendor body's `retry_after`, `X-RateLimit-Reset-After`, the reset
//!   time of `X-RateLimit-Reset` / `RateLimit-Reset`, Sentry's
//!   `X-Sentry-Rate-Limits`, or Opsgenie's window `X-RateLimit-Period-In-Sec`.
//! - Anything else is dead, with the vendor's own message.

use std::time::Duration;

use jiff::Timestamp;

use crate::outcome::Outcome;

/// How many bytes of a response body are kept for dead letters and logs.
pub const BODY_EXCERPT_BYTES: usize = 512;

/// How an answer is judged beyond its status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Judge {
    /// Any 2xx is success.
    Status,
    /// Slack's Web API: a 2xx whose JSON body has `"ok": true`.
    SlackWebApi,
    /// Telegram's Bot API: `{"ok": false, "description", "parameters":
    /// {"retry_after"}}` on failures.
    Telegram,
    /// Discord: a 429 carries `{"retry_after": seconds, "global": bool}`.
    Discord,
    /// A Matrix homeserver: errors are `{"errcode", "error"}`, and a 429
    /// (`M_LIMIT_EXCEEDED`) may carry its wait only as `retry_after_ms`.
    Matrix,
    /// A git host's REST API: rate-limit 403s, and the host's `message`.
    GitHost,
    /// Lark custom bots: `200` with `{"code": n, "msg"}` (older answers
    /// `StatusCode`, `StatusMessage`), `n` not 0 on failures; `11232` is
    /// its rate limit.
    Lark,
    /// PagerDuty's Events API v2: errors are `{"status", "message",
    /// "errors": [..]}`.
    PagerDuty,
    /// Opsgenie: errors are `{"message", "errors": {field: text}}`; its 429
    /// names its window in `X-RateLimit-Period-In-Sec`, not a wait.
    Opsgenie,
    /// Datadog: errors are `{"errors": [..]}`.
    Datadog,
    /// Sentry's envelope endpoint: errors are `{"detail"}` (or the
    /// `X-Sentry-Error` header); a 429 names its waits in
    /// `X-Sentry-Rate-Limits`.
    Sentry,
}

/// What a destination answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: bytes::Bytes,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The wait the destination asked for in its headers: `Retry-After`,
    /// then `X-RateLimit-Reset-After` (seconds), then the reset time of
    /// `X-RateLimit-Reset` / `RateLimit-Reset` (Unix seconds, or seconds
    /// from now for small values, as the IETF draft has it).
    #[must_use]
    pub fn asked_wait(&self, now: Timestamp) -> Option<Duration> {
        if let Some(wait) = self
            .header("retry-after")
            .and_then(|v| parse_retry_after(v, now))
        {
            return Some(wait);
        }
        if let Some(wait) = self
            .header("x-ratelimit-reset-after")
            .and_then(|v| seconds(v.trim()))
        {
            return Some(wait);
        }
        let reset = self
            .header("x-ratelimit-reset")
            .or_else(|| self.header("ratelimit-reset"))?
            .trim()
            .parse::<f64>()
            .ok()?;
        let now_seconds = now.as_millisecond() as f64 / 1000.0;
        let wait = if reset > 1e12 {
            // Unix milliseconds (Rocket.Chat).
            reset / 1000.0 - now_seconds
        } else if reset > 1e9 {
            reset - now_seconds
        } else {
            reset
        };
        seconds(&wait.max(0.0).to_string())
    }
}

/// A non-negative number of seconds, fractions allowed.
fn seconds(text: &str) -> Option<Duration> {
    let value: f64 = text.parse().ok()?;
    (value.is_finite() && value >= 0.0).then(|| Duration::from_secs_f64(value.min(86_400.0)))
}

/// Parses `Retry-After`: delay-seconds or an HTTP date (a past date is 0).
#[must_use]
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let wait = date.as_millisecond() - now.as_millisecond();
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// Removes secrets from whatever is kept of an exchange: the Provider's
/// secret values, and, when its address is a secret, the path and query of
/// the request (destinations echo them: `Cannot POST /services/T0/B0/XXX`).
#[derive(Debug, Clone, Default)]
pub struct Masker {
    secrets: Vec<String>,
}

impl Masker {
    /// A masker for `secrets` (empty values are ignored).
    #[must_use]
    pub fn new<'a>(secrets: impl IntoIterator<Item = &'a str>) -> Self {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Adds the path and query of `url` (a secret address).
    #[must_use]
    pub fn with_secret_url(mut self, url: &reqwest::Url) -> Self {
        let path = url.path();
        if path.len() > 1 {
            self.secrets.push(path.to_owned());
            // Echoed without the leading slash, or percent-decoded.
            self.secrets.push(path.trim_start_matches('/').to_owned());
            if let Ok(decoded) = percent_decode(path) {
                self.secrets.push(decoded);
            }
        }
        if let Some(query) = url.query().filter(|q| !q.is_empty()) {
            self.secrets.push(query.to_owned());
        }
        let secrets = std::mem::take(&mut self.secrets);
        Self::new(secrets.iter().map(String::as_str))
    }

    /// `text` with every secret replaced by `*****`.
    #[must_use]
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_owned();
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "*****");
            }
        }
        out
    }

    /// The first [`BODY_EXCERPT_BYTES`] of a body, masked, on a character
    /// boundary.
    #[must_use]
    pub fn excerpt(&self, body: &[u8]) -> String {
        let mut text = self.mask(&String::from_utf8_lossy(body));
        if text.len() > BODY_EXCERPT_BYTES {
            let mut end = BODY_EXCERPT_BYTES;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            text.truncate(end);
        }
        text
    }
}

fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| text.get(i + 1..i + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        if let Some(byte) = escaped {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
}

/// Why a request got no answer to judge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransportError {
    /// The request could not be built (a bad header value, URL): permanent.
    Build(String),
    /// No answer within the Provider timeout.
    Timeout(Duration),
    /// Connecting, TLS or the exchange failed.
    Failed(String),
    /// The answer's body could not be read.
    Body { status: u16, error: String },
}

/// The outcome of a request that got no answer (the text already masked).
#[must_use]
pub fn transport(error: TransportError) -> Outcome {
    match error {
        TransportError::Build(text) => Outcome::Dead {
            reason: format!("cannot build the request: {text}"),
            status: 0,
            body: String::new(),
        },
        TransportError::Timeout(timeout) => Outcome::Retry {
            reason: format!("no answer within the Provider timeout of {timeout:?}"),
            status: 0,
            after: None,
            body: String::new(),
        },
        TransportError::Failed(text) => Outcome::Retry {
            reason: format!("request failed: {text}"),
            status: 0,
            after: None,
            body: String::new(),
        },
        TransportError::Body { status, error } => Outcome::Retry {
            reason: format!("cannot read the answer ({status}): {error}"),
            status,
            after: None,
            body: String::new(),
        },
    }
}

/// Judges one answer. `what` names the request in the reason (`""` for a
/// provider's only request).
#[must_use]
pub fn classify(answer: &Answer, judge: Judge, masker: &Masker, what: &str) -> Outcome {
    let now = Timestamp::now();
    let status = answer.status;
    let body = masker.excerpt(&answer.body);
    let headers_wait = answer.asked_wait(now);
    let vendor = vendor_verdict(answer, judge, masker);
    let reason = |detail: &str| {
        let mut text = if what.is_empty() {
            String::new()
        } else {
            format!("{what}: ")
        };
        if (200..300).contains(&status) && !detail.is_empty() {
            // A 2xx whose body says it failed: the body's words are the reason.
            text.push_str(detail);
            return text;
        }
        text.push_str(&format!("destination answered {status}"));
        if !detail.is_empty() {
            text.push_str(": ");
            text.push_str(detail);
        }
        text
    };
    match vendor {
        Verdict::Fine if (200..300).contains(&status) => Outcome::Delivered { status },
        Verdict::Wait { message, after } => Outcome::Retry {
            reason: reason(&message),
            status,
            after: after.or(headers_wait).or(Some(Duration::from_secs(60))),
            body,
        },
        Verdict::Failed { message, transient } => {
            if transient || retried_status(status) {
                Outcome::Retry {
                    reason: reason(&message),
                    status,
                    after: headers_wait,
                    body,
                }
            } else {
                Outcome::Dead {
                    reason: reason(&message),
                    status,
                    body,
                }
            }
        }
        Verdict::Fine | Verdict::Message(_) => {
            let message = match vendor {
                Verdict::Message(m) => m,
                _ => String::new(),
            };
            if retried_status(status) {
                Outcome::Retry {
                    reason: reason(&message),
                    status,
                    after: headers_wait,
                    body,
                }
            } else {
                Outcome::Dead {
                    reason: reason(&message),
                    status,
                    body,
                }
            }
        }
    }
}

/// Statuses retried whatever the body: 408, 429, 5xx but 501.
fn retried_status(status: u16) -> bool {
    matches!(status, 408 | 429 | 500 | 502..=599)
}

/// What a vendor's body says.
enum Verdict {
    /// Nothing beyond the status.
    Fine,
    /// Not success: a message for the reason (status decides).
    Message(String),
    /// A failure the body names; `transient` ones are retried.
    Failed { message: String, transient: bool },
    /// Rate-limited: retry after `after` (else the headers' wait, else a minute).
    Wait {
        message: String,
        after: Option<Duration>,
    },
}

fn json(body: &[u8]) -> serde_json::Value {
    serde_json::from_slice(body).unwrap_or_default()
}

fn vendor_verdict(answer: &Answer, judge: Judge, masker: &Masker) -> Verdict {
    let ok = (200..300).contains(&answer.status);
    match judge {
        Judge::Status => Verdict::Fine,
        Judge::SlackWebApi => slack_web_api(answer, masker),
        Judge::Telegram => {
            let body = json(&answer.body);
            let description = masker.mask(body["description"].as_str().unwrap_or_default());
            if let Some(after) = body["parameters"]["retry_after"].as_f64() {
                return Verdict::Wait {
                    message: description,
                    after: Some(Duration::from_secs_f64(after.max(0.0))),
                };
            }
            if ok && body["ok"] != serde_json::Value::Bool(false) {
                Verdict::Fine
            } else if answer.status == 429 {
                Verdict::Wait {
                    message: description,
                    after: None,
                }
            } else {
                Verdict::Message(description)
            }
        }
        Judge::Discord => {
            if ok {
                return Verdict::Fine;
            }
            let body = json(&answer.body);
            let message = masker.mask(body["message"].as_str().unwrap_or_default());
            if answer.status == 429 {
                return Verdict::Wait {
                    message,
                    after: body["retry_after"]
                        .as_f64()
                        .map(|s| Duration::from_secs_f64(s.max(0.0))),
                };
            }
            Verdict::Message(message)
        }
        Judge::Lark => lark(answer, masker),
        Judge::Matrix => {
            if ok {
                return Verdict::Fine;
            }
            let body = json(&answer.body);
            let message = match (body["errcode"].as_str(), body["error"].as_str()) {
                (Some(code), Some(error)) => masker.mask(&format!("{code}: {error}")),
                (Some(text), None) | (None, Some(text)) => masker.mask(text),
                (None, None) => String::new(),
            };
            if answer.status == 429 || body["errcode"] == "M_LIMIT_EXCEEDED" {
                return Verdict::Wait {
                    message,
                    after: body["retry_after_ms"]
                        .as_f64()
                        .map(|ms| Duration::from_secs_f64(ms.max(0.0) / 1000.0)),
                };
            }
            Verdict::Message(message)
        }
        Judge::PagerDuty | Judge::Opsgenie | Judge::Datadog | Judge::Sentry => {
            if ok {
                return Verdict::Fine;
            }
            alerting(answer, judge, masker)
        }
        Judge::GitHost => {
            if ok {
                return Verdict::Fine;
            }
            let message = git_host_message(&answer.body, masker);
            let exhausted = ["x-ratelimit-remaining", "ratelimit-remaining"]
                .iter()
                .any(|name| answer.header(name) == Some("0"));
            let rate_limited = answer.status == 429
                || (answer.status == 403
                    && (exhausted || message.to_ascii_lowercase().contains("rate limit")));
            if rate_limited {
                Verdict::Wait {
                    message,
                    after: None,
                }
            } else {
                Verdict::Message(message)
            }
        }
    }
}

/// Slack's Web API answers 200 with `{"ok": false, "error"}` on failures.
fn slack_web_api(answer: &Answer, masker: &Masker) -> Verdict {
    if !(200..300).contains(&answer.status) {
        return Verdict::Fine;
    }
    let body = json(&answer.body);
    let Some(ok) = body["ok"].as_bool() else {
        return Verdict::Failed {
            message: "unable to read Slack's answer".to_owned(),
            transient: true,
        };
    };
    if ok {
        return Verdict::Fine;
    }
    let error = masker.mask(body["error"].as_str().unwrap_or_default());
    let message = format!("Slack responded with error: {error}");
    match error.as_str() {
        "ratelimited" => Verdict::Wait {
            message,
            after: None,
        },
        "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => {
            Verdict::Failed {
                message,
                transient: true,
            }
        }
        _ => Verdict::Failed {
            message,
            transient: false,
        },
    }
}

/// Lark's code `11232` ("frequency limited"): it allows 100 messages a
/// minute and 5 a second per bot.
const LARK_RATE_LIMITED: i64 = 11232;

/// Lark answers `{"code": n, "msg"}` (or `StatusCode`, `StatusMessage`),
/// with `200` whatever `n` is.
fn lark(answer: &Answer, masker: &Masker) -> Verdict {
    let body = json(&answer.body);
    let code = body["code"]
        .as_i64()
        .or_else(|| body["StatusCode"].as_i64());
    let Some(code) = code.filter(|code| *code != 0) else {
        return Verdict::Fine;
    };
    let msg = body["msg"]
        .as_str()
        .or_else(|| body["StatusMessage"].as_str())
        .unwrap_or_default();
    let message = format!("Lark responded with code {code}: {}", masker.mask(msg));
    if code == LARK_RATE_LIMITED {
        Verdict::Wait {
            message,
            after: None,
        }
    } else {
        Verdict::Message(message)
    }
}

/// The error answer of an alerting API (PagerDuty, Opsgenie, Datadog,
/// Sentry): its own words, and the wait its 429 names.
fn alerting(answer: &Answer, judge: Judge, masker: &Masker) -> Verdict {
    let body = json(&answer.body);
    let text = |value: &serde_json::Value| match value {
        serde_json::Value::String(text) => text.clone(),
        serde_json::Value::Null => String::new(),
        other => other.to_string(),
    };
    // `errors` is a list of texts (PagerDuty, Datadog) or field → text
    // (Opsgenie).
    let errors = match &body["errors"] {
        serde_json::Value::Array(items) => items.iter().map(text).collect::<Vec<_>>(),
        serde_json::Value::Object(fields) => fields
            .iter()
            .map(|(field, value)| format!("{field}: {}", text(value)))
            .collect(),
        _ => Vec::new(),
    }
    .join("; ");
    let joined = |head: String| match (head.is_empty(), errors.is_empty()) {
        (_, true) => head,
        (true, false) => errors.clone(),
        (false, false) => format!("{head} ({errors})"),
    };
    let (message, after) = match judge {
        Judge::PagerDuty => (joined(text(&body["message"])), None),
        Judge::Opsgenie => (
            joined(text(&body["message"])),
            answer
                .header("x-ratelimit-period-in-sec")
                .and_then(|v| seconds(v.trim())),
        ),
        Judge::Sentry => {
            let detail = text(&body["detail"]);
            let detail = if detail.is_empty() {
                answer
                    .header("x-sentry-error")
                    .unwrap_or_default()
                    .to_owned()
            } else {
                detail
            };
            (
                detail,
                answer
                    .header("x-sentry-rate-limits")
                    .and_then(sentry_rate_limit_wait),
            )
        }
        _ => (errors.clone(), None),
    };
    let message = masker.mask(&message);
    if answer.status == 429 {
        // Without a named wait, the worker's backoff applies.
        return match after.or_else(|| answer.asked_wait(Timestamp::now())) {
            Some(after) => Verdict::Wait {
                message,
                after: Some(after),
            },
            None => Verdict::Message(message),
        };
    }
    Verdict::Message(message)
}

/// The longest wait of Sentry's `X-Sentry-Rate-Limits`
/// (`seconds:categories:scope[:reason[:namespaces]]`, comma-separated).
fn sentry_rate_limit_wait(value: &str) -> Option<Duration> {
    value
        .split(',')
        .filter_map(|limit| seconds(limit.trim().split(':').next()?.trim()))
        .max()
}

/// The JSON `message` (else `error`) of a git host's error answer, masked.
fn git_host_message(body: &[u8], masker: &Masker) -> String {
    let parsed = json(body);
    let text = |value: &serde_json::Value| value.as_str().map(str::to_owned);
    // Bitbucket Server: errors[].message; Bitbucket Cloud: error.message;
    // GitHub, GitLab, Gitea, Azure DevOps: message (GitLab: or error).
    let message = if let Some(errors) = parsed.get("errors").and_then(|e| e.as_array()) {
        let messages: Vec<String> = errors.iter().filter_map(|e| text(&e["message"])).collect();
        messages.join("; ")
    } else {
        match parsed.get("message").or_else(|| parsed.get("error")) {
            Some(serde_json::Value::String(text)) => text.clone(),
            Some(serde_json::Value::Object(error)) => error
                .get("message")
                .and_then(serde_json::Value::as_str)
                .unwrap_or_default()
                .to_owned(),
            Some(serde_json::Value::Null) | None => String::new(),
            Some(other) => other.to_string(),
        }
    };
    masker.mask(&message)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&str, &str)], body: &str) -> Answer {
        let mut map = reqwest::header::HeaderMap::new();
        for (name, value) in headers {
            map.insert(
                reqwest::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        Answer {
            status,
            headers: map,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    fn judge(a: &Answer, judge: Judge) -> Outcome {
        classify(a, judge, &Masker::default(), "")
    }

    #[test]
    fn statuses_are_classified_like_the_policy_says() {
        for status in [200, 201, 202, 204, 299] {
            assert!(matches!(
                judge(&answer(status, &[], ""), Judge::Status),
                Outcome::Delivered { .. }
            ));
        }
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert!(
                matches!(
                    judge(&answer(status, &[], ""), Judge::Status),
                    Outcome::Retry { .. }
                ),
                "{status}"
            );
        }
        for status in [300, 400, 401, 403, 404, 410, 422, 501] {
            assert!(
                matches!(
                    judge(&answer(status, &[], ""), Judge::Status),
                    Outcome::Dead { .. }
                ),
                "{status}"
            );
        }
    }

    #[test]
    fn retry_after_takes_seconds_and_dates() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after("Mon, 01 Jan 2024 00:00:10 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 31 Dec 2023 23:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn rate_limit_headers_give_the_wait() {
        let now: Timestamp = "2024-01-01T00:00:00Z".parse().unwrap();
        let reset = now.as_second() + 30;
        let a = answer(429, &[("x-ratelimit-reset", &reset.to_string())], "");
        assert_eq!(a.asked_wait(now), Some(Duration::from_secs(30)));
        let a = answer(429, &[("ratelimit-reset", "7")], "");
        assert_eq!(a.asked_wait(now), Some(Duration::from_secs(7)));
        let millis = (now.as_millisecond() + 5_000).to_string();
        let a = answer(429, &[("x-ratelimit-reset", &millis)], "");
        assert_eq!(a.asked_wait(now), Some(Duration::from_secs(5)));
        // Never more than a day, whatever the header says.
        let a = answer(429, &[("ratelimit-reset", "999999999")], "");
        assert_eq!(a.asked_wait(now), Some(Duration::from_secs(86_400)));
        let a = answer(429, &[("x-ratelimit-reset-after", "1.5")], "");
        assert_eq!(a.asked_wait(now), Some(Duration::from_millis(1500)));
        let a = answer(429, &[("retry-after", "4"), ("ratelimit-reset", "9")], "");
        assert_eq!(a.asked_wait(now), Some(Duration::from_secs(4)));
    }

    #[test]
    fn vendor_bodies_that_mean_wait_or_failure() {
        let telegram = answer(
            429,
            &[],
            r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#,
        );
        assert!(matches!(
            judge(&telegram, Judge::Telegram),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(3)
        ));
        let chat_not_found = answer(
            400,
            &[],
            r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#,
        );
        assert!(matches!(
            judge(&chat_not_found, Judge::Telegram),
            Outcome::Dead { reason, .. } if reason.contains("chat not found")
        ));
        let discord = answer(
            429,
            &[],
            r#"{"message":"You are being rate limited.","retry_after":0.75,"global":false}"#,
        );
        assert!(matches!(
            judge(&discord, Judge::Discord),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_millis(750)
        ));
        let matrix = answer(
            429,
            &[],
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too Many Requests","retry_after_ms":1500}"#,
        );
        assert!(matches!(
            judge(&matrix, Judge::Matrix),
            Outcome::Retry { after: Some(d), reason, .. }
                if d == Duration::from_millis(1500) && reason.contains("M_LIMIT_EXCEEDED")
        ));
        // Without retry_after_ms, the Retry-After header of newer servers.
        let matrix = answer(
            429,
            &[("retry-after", "2")],
            r#"{"errcode":"M_LIMIT_EXCEEDED"}"#,
        );
        assert!(matches!(
            judge(&matrix, Judge::Matrix),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(2)
        ));
        let forbidden = answer(
            403,
            &[],
            r#"{"errcode":"M_FORBIDDEN","error":"User @flux:example.org not in room"}"#,
        );
        assert!(matches!(
            judge(&forbidden, Judge::Matrix),
            Outcome::Dead { reason, .. }
                if reason == "destination answered 403: M_FORBIDDEN: User @flux:example.org not in room"
        ));
        let slack = answer(200, &[], r#"{"ok":false,"error":"ratelimited"}"#);
        assert!(matches!(
            judge(&slack, Judge::SlackWebApi),
            Outcome::Retry { .. }
        ));
        let slack = answer(200, &[], r#"{"ok":false,"error":"channel_not_found"}"#);
        assert!(matches!(
            judge(&slack, Judge::SlackWebApi),
            Outcome::Dead { reason, .. } if reason.contains("channel_not_found")
        ));
        assert!(matches!(
            judge(&answer(200, &[], r#"{"ok":true}"#), Judge::SlackWebApi),
            Outcome::Delivered { .. }
        ));
    }

    #[test]
    fn lark_codes_are_read_from_its_200s() {
        for ok in [
            r#"{"StatusCode":0,"StatusMessage":"success","code":0,"data":{},"msg":"success"}"#,
            r#"{"code":0,"data":{},"msg":"success"}"#,
            "",
        ] {
            assert!(
                matches!(
                    judge(&answer(200, &[], ok), Judge::Lark),
                    Outcome::Delivered { .. }
                ),
                "{ok}"
            );
        }
        let keyword = answer(
            200,
            &[],
            r#"{"code":19024,"data":{},"msg":"Key Words Not Found"}"#,
        );
        assert!(matches!(
            judge(&keyword, Judge::Lark),
            Outcome::Dead { reason, status: 200, .. }
                if reason == "Lark responded with code 19024: Key Words Not Found"
        ));
        let legacy = answer(
            200,
            &[],
            r#"{"StatusCode":19021,"StatusMessage":"sign match fail"}"#,
        );
        assert!(matches!(
            judge(&legacy, Judge::Lark),
            Outcome::Dead { reason, .. } if reason.contains("sign match fail")
        ));
        let limited = answer(
            200,
            &[],
            r#"{"code":11232,"data":{},"msg":"frequency limited psm[lark.oapi.app_platform_runtime]appID[1]"}"#,
        );
        assert!(matches!(
            judge(&limited, Judge::Lark),
            Outcome::Retry { after: Some(d), .. } if d == Duration::from_secs(60)
        ));
        let bad_request = answer(400, &[], r#"{"code":9499,"msg":"Bad Request","data":{}}"#);
        assert!(matches!(
            judge(&bad_request, Judge::Lark),
            Outcome::Dead { reason, status: 400, .. }
                if reason == "destination answered 400: Lark responded with code 9499: Bad Request"
        ));
        assert!(matches!(
            judge(&answer(502, &[], "<html>bad gateway</html>"), Judge::Lark),
            Outcome::Retry { .. }
        ));
    }

    #[test]
    fn git_hosts_rate_limits_wait_for_the_reset() {
        let reset = (Timestamp::now().as_second() + 120).to_string();
        let limited = answer(
            403,
            &[
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset),
            ],
            r#"{"message":"API rate limit exceeded"}"#,
        );
        let Outcome::Retry {
            after: Some(after),
            reason,
            ..
        } = judge(&limited, Judge::GitHost)
        else {
            panic!("retried");
        };
        assert!(after > Duration::from_secs(100), "{after:?}");
        assert!(reason.contains("API rate limit exceeded"));
        let missing = answer(404, &[], r#"{"message":"Not Found"}"#);
        assert!(matches!(
            classify(&missing, Judge::GitHost, &Masker::default(), "create status"),
            Outcome::Dead { reason, .. } if reason == "create status: destination answered 404: Not Found"
        ));
    }

    #[test]
    fn echoed_secret_paths_are_masked() {
        let url =
            reqwest::Url::parse("https://hooks.example.com/services/T0/B0/S3cr3t?x=1").unwrap();
        let masker = Masker::new(["tok"]).with_secret_url(&url);
        let echoed = answer(404, &[], "Cannot POST /services/T0/B0/S3cr3t with tok");
        let Outcome::Dead { body, .. } = classify(&echoed, Judge::Status, &masker, "") else {
            panic!("dead");
        };
        assert_eq!(body, "Cannot POST ***** with *****");
        assert!(!masker.mask("services/T0/B0/S3cr3t").contains("S3cr3t"));
    }

    #[test]
    fn excerpts_are_short_and_masked() {
        let body = format!("token xoxb-123 rejected {}", "é".repeat(600));
        let text = Masker::new(["xoxb-123", ""]).excerpt(body.as_bytes());
        assert!(text.starts_with("token ***** rejected"));
        assert!(text.len() <= BODY_EXCERPT_BYTES);
    }

    #[test]
    fn alerting_apis_give_their_words_and_waits() {
        let pagerduty = answer(
            400,
            &[],
            r#"{"status":"invalid event","message":"Event object is invalid","errors":["Length of 'routing_key' is incorrect (should be 32 characters)"]}"#,
        );
        assert!(matches!(
            judge(&pagerduty, Judge::PagerDuty),
            Outcome::Dead { reason, status: 400, .. } if reason == "destination answered 400: Event object is invalid (Length of 'routing_key' is incorrect (should be 32 characters))"
        ));
        let opsgenie = answer(
            422,
            &[],
            r#"{"message":"Request body is not processable. Please check the errors.","errors":{"message":"Message can not be empty."},"took":0.001,"requestId":"r"}"#,
        );
        assert!(matches!(
            judge(&opsgenie, Judge::Opsgenie),
            Outcome::Dead { reason, .. } if reason.ends_with("Please check the errors. (message: Message can not be empty.)")
        ));
        let throttled = answer(
            429,
            &[
                ("x-ratelimit-state", "THROTTLED"),
                ("x-ratelimit-period-in-sec", "10"),
            ],
            r#"{"message":"You are making too many requests!","took":0.0,"requestId":"r"}"#,
        );
        assert!(matches!(
            judge(&throttled, Judge::Opsgenie),
            Outcome::Retry { after: Some(after), .. } if after == Duration::from_secs(10)
        ));
        let datadog = answer(403, &[], r#"{"errors":["Forbidden"]}"#);
        assert!(matches!(
            judge(&datadog, Judge::Datadog),
            Outcome::Dead { reason, .. } if reason == "destination answered 403: Forbidden"
        ));
        let sentry = answer(
            429,
            &[
                ("retry-after", "5"),
                (
                    "x-sentry-rate-limits",
                    "60:transaction:key, 2::organization",
                ),
            ],
            "",
        );
        assert!(matches!(
            judge(&sentry, Judge::Sentry),
            Outcome::Retry { after: Some(after), .. } if after == Duration::from_secs(60)
        ));
        let sentry = answer(403, &[("x-sentry-error", "event submission rejected")], "");
        assert!(matches!(
            judge(&sentry, Judge::Sentry),
            Outcome::Dead { reason, .. } if reason.ends_with("event submission rejected")
        ));
        // A 429 naming no wait is left to the worker's backoff.
        assert!(matches!(
            judge(&answer(429, &[], "{}"), Judge::PagerDuty),
            Outcome::Retry { after: None, .. }
        ));
    }
}
