//! What the git hosts' commit-status providers share: the token, Go's
//! escaping of path segments and query values, the list-then-create exchange
//! (flux-providers §7.1 steps 6 and 7), and how a host's non-2xx answer is
//! classified.

use crate::config::Resolved;
use crate::http::{Answer, HttpSender};
use crate::outcome::Outcome;

/// The Secret's `token`, else its `password`.
///
/// # Errors
///
/// `empty` when both are empty.
pub(super) fn token(resolved: &Resolved, empty: &str) -> Result<String, String> {
    let token = if resolved.token.is_empty() {
        &resolved.password
    } else {
        &resolved.token
    };
    if token.is_empty() {
        return Err(empty.to_owned());
    }
    Ok(token.clone())
}

/// Go's `url.PathEscape` (one path segment: `/` is escaped).
pub(super) fn path_escape(segment: &str) -> String {
    // `gitlab_path_escape` is `url.PathEscape` with `.` then written `%2E`;
    // a `%` of the input is escaped as `%25`, so every `%2E` is such a dot.
    herald_flux::git::gitlab_path_escape(segment).replace("%2E", ".")
}

/// Go's `url.QueryEscape`: unreserved bytes kept, space as `+`, the rest
/// `%XX`.
pub(super) fn query_escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(byte));
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The requests of one commit status: the list, and the create made unless
/// the list already holds an equal status.
pub(super) struct StatusCalls<'a> {
    pub list: String,
    pub list_headers: &'a [(String, String)],
    /// What a failed list is called in the outcome's reason.
    pub list_failed: &'a str,
    pub create: String,
    pub create_headers: &'a [(String, String)],
    pub create_body: Vec<u8>,
    /// What a failed create is called in the outcome's reason.
    pub create_failed: &'a str,
}

/// POSTs `body` to `url`: delivered on 2xx, else the host's answer classified
/// (the reason starts with `what`).
pub(super) async fn post(
    http: &HttpSender,
    resolved: &Resolved,
    url: reqwest::Url,
    headers: &[(String, String)],
    body: Vec<u8>,
    what: &str,
) -> Outcome {
    match http
        .call(reqwest::Method::POST, url, headers, Some(body), resolved)
        .await
    {
        Ok(answer) if (200..300).contains(&answer.status) => Outcome::Delivered {
            status: answer.status,
        },
        Ok(answer) => classify(&answer, resolved, what),
        Err(outcome) => outcome,
    }
}

/// Lists the commit's statuses, and creates ours unless `written` finds it
/// in the listed body.
pub(super) async fn list_then_create(
    http: &HttpSender,
    resolved: &Resolved,
    calls: StatusCalls<'_>,
    written: impl FnOnce(&[u8]) -> bool,
) -> Outcome {
    let (Ok(list), Ok(create)) = (
        reqwest::Url::parse(&calls.list),
        reqwest::Url::parse(&calls.create),
    ) else {
        return super::invalid_url(resolved);
    };
    let answer = match http
        .call(
            reqwest::Method::GET,
            list,
            calls.list_headers,
            None,
            resolved,
        )
        .await
    {
        Ok(answer) => answer,
        Err(outcome) => return outcome,
    };
    if !(200..300).contains(&answer.status) {
        return classify(&answer, resolved, calls.list_failed);
    }
    if written(&answer.body) {
        return Outcome::Delivered {
            status: answer.status,
        };
    }
    post(
        http,
        resolved,
        create,
        calls.create_headers,
        calls.create_body,
        calls.create_failed,
    )
    .await
}

/// The JSON `message` (else `error`) of a host's error answer, masked.
fn host_message(answer: &Answer, secrets: &[&str]) -> String {
    let parsed: serde_json::Value = serde_json::from_slice(&answer.body).unwrap_or_default();
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
    crate::outcome::mask(&message, secrets)
}

/// A non-2xx git host answer. Rate limits (429, or 403 with no requests
/// left or a rate-limit message) are retried after the host's `Retry-After`,
/// else its reset time (`X-RateLimit-Reset` of GitHub and Gitea,
/// `RateLimit-Reset` of GitLab; Unix seconds), else a minute; 5xx (but 501)
/// and 408 are retried; other answers are dead. The reason carries `what`,
/// the status and the host's message.
pub(super) fn classify(answer: &Answer, resolved: &Resolved, what: &str) -> Outcome {
    let secrets = resolved.secrets();
    let body = crate::outcome::excerpt(&answer.body, &secrets);
    let message = host_message(answer, &secrets);
    let header = |name: &str| {
        answer
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let exhausted = ["x-ratelimit-remaining", "ratelimit-remaining"]
        .iter()
        .any(|name| header(name).as_deref() == Some("0"));
    let status = answer.status;
    let rate_limited = status == 429
        || (status == 403 && (exhausted || message.to_ascii_lowercase().contains("rate limit")));
    let reason = if message.is_empty() {
        format!("{what}: destination answered {status}")
    } else {
        format!("{what}: destination answered {status}: {message}")
    };
    if rate_limited {
        let reset = header("x-ratelimit-reset")
            .or_else(|| header("ratelimit-reset"))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .map(|epoch| {
                let wait = epoch - jiff::Timestamp::now().as_second();
                std::time::Duration::from_secs(u64::try_from(wait).unwrap_or(0))
            });
        return Outcome::Retry {
            reason,
            status,
            after: answer
                .retry_after
                .or(reset)
                .or(Some(std::time::Duration::from_secs(60))),
            body,
        };
    }
    match crate::outcome::classify_status(status, answer.retry_after, body) {
        Outcome::Retry { after, body, .. } => Outcome::Retry {
            reason,
            status,
            after,
            body,
        },
        Outcome::Dead { body, .. } => Outcome::Dead {
            reason,
            status,
            body,
        },
        delivered => delivered,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    /// An answer with `status`, `headers` and `body`.
    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> Answer {
        let mut map = reqwest::header::HeaderMap::new();
        for (k, v) in headers {
            map.insert(*k, v.parse().unwrap());
        }
        let retry_after = map
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| crate::outcome::parse_retry_after(v, jiff::Timestamp::now()));
        Answer {
            status,
            retry_after,
            headers: map,
            body: bytes::Bytes::from(body.to_owned()),
        }
    }

    #[test]
    fn escaping_is_go_s() {
        assert_eq!(path_escape("my org"), "my%20org");
        assert_eq!(path_escape("a.b/c%"), "a.b%2Fc%25");
        assert_eq!(
            query_escape("kustomization/apps/0c9c2e41"),
            "kustomization%2Fapps%2F0c9c2e41"
        );
        assert_eq!(query_escape("a b~*"), "a+b~%2A");
    }

    #[test]
    fn tokens_fall_back_to_the_password() {
        let mut resolved = Resolved::default();
        assert_eq!(token(&resolved, "none").unwrap_err(), "none");
        resolved.password = "pw".into();
        assert_eq!(token(&resolved, "none").unwrap(), "pw");
        resolved.token = "tk".into();
        assert_eq!(token(&resolved, "none").unwrap(), "tk");
    }

    #[test]
    fn host_answers_are_classified() {
        let resolved = Resolved {
            token: "sekret".into(),
            ..Resolved::default()
        };
        for (status, body, message) in [
            (401, r#"{"message":"401 Unauthorized"}"#, "401 Unauthorized"),
            (403, r#"{"message":"403 Forbidden"}"#, "403 Forbidden"),
            (
                404,
                r#"{"message":"404 Project Not Found"}"#,
                "404 Project Not Found",
            ),
            (422, r#"{"error":"state is invalid"}"#, "state is invalid"),
            (401, r#"{"message":"bad sekret"}"#, "bad *****"),
        ] {
            let outcome = classify(&answer(status, &[], body), &resolved, "w");
            assert_eq!(
                outcome,
                Outcome::Dead {
                    reason: format!("w: destination answered {status}: {message}"),
                    status,
                    body: body.replace("sekret", "*****"),
                }
            );
        }
        let plain = classify(&answer(400, &[], "nope"), &resolved, "w");
        assert!(
            matches!(&plain, Outcome::Dead { reason, .. } if reason == "w: destination answered 400"),
            "{plain:?}"
        );
        let in_a_while = (jiff::Timestamp::now().as_second() + 120).to_string();
        for limited in [
            answer(429, &[("ratelimit-reset", &in_a_while)], "{}"),
            answer(403, &[("x-ratelimit-remaining", "0")], "{}"),
            answer(
                403,
                &[],
                r#"{"message":"You have exceeded a secondary rate limit"}"#,
            ),
        ] {
            let outcome = classify(&limited, &resolved, "w");
            let Outcome::Retry {
                after: Some(after), ..
            } = outcome
            else {
                panic!("{outcome:?}");
            };
            assert!(after <= Duration::from_secs(120), "{after:?}");
            assert!(after >= Duration::from_secs(60), "{after:?}");
        }
        let told = classify(&answer(429, &[("retry-after", "7")], "{}"), &resolved, "w");
        assert!(
            matches!(told, Outcome::Retry { after: Some(after), status: 429, .. } if after == Duration::from_secs(7)),
            "{told:?}"
        );
        assert!(matches!(
            classify(&answer(502, &[], ""), &resolved, "w"),
            Outcome::Retry { status: 502, .. }
        ));
    }
}
