//! A fake Microsoft Teams, both kinds of address Flux posts to:
//!
//! - Office 365 connectors (`https://<tenant>.webhook.office.com/webhookb2/...`,
//!   reached through the fake as an HTTP proxy, since the host must be
//!   that domain): a MessageCard with `summary` or `text`; `200` with the
//!   text `1`, else `400` with the connector's plain-text complaint.
//! - Workflows (Power Automate `.../workflows/<id>/triggers/manual/paths/invoke?...&sig=...`):
//!   a `message` with an Adaptive Card attachment; `202 Accepted` with no
//!   body (the flow runs later), else Logic Apps' `{"error":{"code","message"}}`.
//!
//! Both rate-limit with `429` and `Retry-After` (whole seconds).

use std::time::Duration;

use serde_json::json;

use super::{Api, FakeServer, Recorded, Reply};

/// The connector host suffix Flux switches on.
pub const CONNECTOR_DOMAIN: &str = ".webhook.office.com";

/// Teams' connectors and Workflows.
#[derive(Debug)]
pub struct Teams;

fn logic_apps_error(status: u16, code: &str, message: &str) -> Reply {
    Reply::json(
        status,
        &json!({"error": {"code": code, "message": message}}),
    )
}

impl Teams {
    fn connector(request: &Recorded) -> Reply {
        let host = request.header("host").unwrap_or_default();
        let host = host.split(':').next().unwrap_or_default();
        if !host.ends_with(CONNECTOR_DOMAIN) {
            return Reply::text(404, "Connector host not found.");
        }
        let Some(card) = request.try_json().filter(|_| request.is_json()) else {
            return Reply::text(400, "Bad payload received by generic incoming webhook.");
        };
        let filled = |key: &str| card[key].as_str().is_some_and(|s| !s.is_empty());
        if card["@type"] != "MessageCard" || !(filled("summary") || filled("text")) {
            return Reply::text(400, "Summary or Text is required.");
        }
        Reply::text(200, "1")
    }

    fn workflow(request: &Recorded) -> Reply {
        let segments = request.segments();
        let trigger = matches!(
            segments.iter().map(String::as_str).collect::<Vec<_>>()[..],
            ["workflows", _, "triggers", "manual", "paths", "invoke"]
        );
        if !trigger {
            return logic_apps_error(
                404,
                "TriggerNotFound",
                "The workflow trigger could not be found.",
            );
        }
        if request.query_value("api-version").is_none() {
            return logic_apps_error(
                400,
                "MissingApiVersionParameter",
                "The api-version query parameter (?api-version=) is required for all requests.",
            );
        }
        if request.query_value("sig").is_none_or(|s| s.is_empty()) {
            return logic_apps_error(
                401,
                "DirectApiAuthorizationRequired",
                "The request must be authenticated only by Shared Access scheme.",
            );
        }
        let card = request.try_json().filter(|_| request.is_json());
        let adaptive = card.as_ref().is_some_and(|c| {
            c["type"] == "message"
                && c["attachments"].as_array().is_some_and(|a| {
                    !a.is_empty()
                        && a.iter().all(|a| {
                            a["contentType"] == "application/vnd.microsoft.card.adaptive"
                                && a["content"]["type"] == "AdaptiveCard"
                        })
                })
        });
        if !adaptive {
            return logic_apps_error(
                400,
                "TriggerInputSchemaMismatch",
                "The input body for trigger 'manual' of type 'Request' did not match its schema definition.",
            );
        }
        // Accepted: the flow posts the card later.
        Reply::empty(202)
    }
}

impl Api for Teams {
    fn answer(&mut self, request: &Recorded, _origin: &str) -> Reply {
        if request.method != "POST" {
            return Reply::status(405);
        }
        if request.path.starts_with("/webhookb2/") {
            Self::connector(request)
        } else {
            Self::workflow(request)
        }
    }

    fn rate_limited(&mut self, request: &Recorded, retry_after: Duration) -> Reply {
        let seconds = retry_after.as_secs().to_string();
        if request.path.starts_with("/webhookb2/") {
            Reply::text(
                429,
                "Microsoft Teams endpoint returned HTTP error 429 with ContextId tcid=0,server=msgapi-fake,cv=0.",
            )
        } else {
            logic_apps_error(
                429,
                "WorkflowRequestsThrottled",
                "Number of requests for the workflow exceeded the limit; retry later.",
            )
        }
        .header("retry-after", &seconds)
    }
}

impl FakeServer {
    /// A fake Teams on a free loopback port: Workflows at its own address,
    /// connectors when used as the HTTP proxy for a `*.webhook.office.com`
    /// address.
    pub async fn teams() -> Self {
        Self::start(Teams).await
    }
}
