//! `msteams`: an Office 365 connector MessageCard for `*.webhook.office.com`
//! addresses, an Adaptive Card for any other (Power Automate / Workflows)
//! address (flux-providers §4.6).

use serde::Serialize;

use super::shared::{is_error, json_content, object_name, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `msteams`.
pub(super) struct MsTeams;

impl Provider for MsTeams {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// The metadata key the Adaptive Card shows first.
const SUMMARY: &str = "summary";

/// Whether Flux sends the legacy MessageCard to `address`: its host, as
/// written (Go compares it case-sensitively) and without the port, ends
/// with `.webhook.office.com`.
fn is_legacy_connector(address: &str) -> bool {
    let after_scheme = address.split_once("://").map_or(address, |(_, rest)| rest);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = host_port.split(':').next().unwrap_or_default();
    host.ends_with(".webhook.office.com")
}

/// Builds the Teams request.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "msteams")?;
    let object = object_name(event);
    let body = if is_legacy_connector(&resolved.address) {
        herald_flux::gojson::to_vec(&message_card(event, &object))
    } else {
        herald_flux::gojson::to_vec(&adaptive_card(event, &object))
    };
    Ok(Request::post(url, vec![json_content()], body))
}

// === MessageCard (Office 365 connectors) ===

#[derive(Serialize)]
struct MessageCard<'a> {
    #[serde(rename = "@type")]
    kind: &'a str,
    #[serde(rename = "@context")]
    context: &'a str,
    #[serde(rename = "themeColor")]
    theme_color: &'a str,
    summary: &'a str,
    sections: [Section<'a>; 1],
}

#[derive(Serialize)]
struct Section<'a> {
    #[serde(rename = "activityTitle")]
    activity_title: &'a str,
    #[serde(rename = "activitySubtitle")]
    activity_subtitle: &'a str,
    facts: Vec<NameValue<'a>>,
}

#[derive(Serialize)]
struct NameValue<'a> {
    name: &'a str,
    value: &'a str,
}

/// Flux lists the facts in map order (random in Go); Herald sorts them by key.
fn message_card<'a>(event: &'a FluxEvent, object: &'a str) -> MessageCard<'a> {
    MessageCard {
        kind: "MessageCard",
        context: "http://schema.org/extensions",
        theme_color: if is_error(event) { "FF0000" } else { "0076D7" },
        summary: object,
        sections: [Section {
            activity_title: &event.message,
            activity_subtitle: object,
            facts: event
                .metadata
                .iter()
                .map(|(name, value)| NameValue { name, value })
                .collect(),
        }],
    }
}

// === Adaptive Card (Workflows) ===

#[derive(Serialize)]
struct AdaptiveMessage<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    attachments: [Attachment<'a>; 1],
}

#[derive(Serialize)]
struct Attachment<'a> {
    #[serde(rename = "contentType")]
    content_type: &'a str,
    content: Content<'a>,
}

#[derive(Serialize)]
struct Content<'a> {
    #[serde(rename = "$schema")]
    schema: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    version: &'a str,
    body: [Element<'a>; 1],
    msteams: Width<'a>,
}

#[derive(Serialize)]
struct Width<'a> {
    width: &'a str,
}

/// A body element as Go flattens Flux's container, text block and fact set
/// into one object: `type`, then each present field in that order; empty
/// ones are left out.
#[derive(Serialize, Default)]
struct Element<'a> {
    #[serde(rename = "type")]
    kind: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    items: Vec<Element<'a>>,
    #[serde(skip_serializing_if = "str::is_empty")]
    text: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    size: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    weight: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    color: &'a str,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    wrap: bool,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    facts: Vec<TitleValue<'a>>,
}

#[derive(Serialize)]
struct TitleValue<'a> {
    title: &'a str,
    value: &'a str,
}

/// The facts: `summary` first, then the rest sorted by key (as Flux does).
fn adaptive_card<'a>(event: &'a FluxEvent, object: &'a str) -> AdaptiveMessage<'a> {
    let summary = event
        .metadata
        .get_key_value(SUMMARY)
        .map(|(title, value)| TitleValue { title, value });
    let rest = event
        .metadata
        .iter()
        .filter(|(key, _)| *key != SUMMARY)
        .map(|(title, value)| TitleValue { title, value });
    let facts = summary.into_iter().chain(rest).collect();
    let items = vec![
        Element {
            kind: "TextBlock",
            text: object,
            size: "large",
            weight: "bolder",
            wrap: true,
            ..Element::default()
        },
        Element {
            kind: "TextBlock",
            text: &event.message,
            color: if is_error(event) { "attention" } else { "" },
            wrap: true,
            ..Element::default()
        },
        Element {
            kind: "FactSet",
            facts,
            ..Element::default()
        },
    ];
    AdaptiveMessage {
        kind: "message",
        attachments: [Attachment {
            content_type: "application/vnd.microsoft.card.adaptive",
            content: Content {
                schema: "http://adaptivecards.io/schemas/adaptive-card.json",
                kind: "AdaptiveCard",
                // Teams renders Adaptive Cards up to 1.4.
                version: "1.4",
                body: [Element {
                    kind: "Container",
                    items,
                    ..Element::default()
                }],
                msteams: Width { width: "Full" },
            },
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Judge;
    use std::collections::BTreeMap;

    const LEGACY: &str = "https://xxx.webhook.office.com/webhookb2/a@b/IncomingWebhook/c/d";
    const WORKFLOW: &str = "https://prod-28.northeurope.logic.azure.com:443/workflows/x/triggers/manual/paths/invoke?api-version=2016-06-01&sig=s";

    fn event(severity: &str, metadata: &[(&str, &str)]) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"GitRepository","namespace":"gitops-system","name":"webapp"},
                "message":"fetch <failed> & retried","reason":"Failed",
                "reportingController":"source-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>();
        e
    }

    fn body(address: &str, event: &FluxEvent) -> String {
        let resolved = Resolved {
            provider_type: "msteams".into(),
            address: address.into(),
            ..Resolved::default()
        };
        let request = build(&resolved, event).unwrap();
        assert_eq!(request.judge, Judge::Status);
        assert_eq!(request.method, reqwest::Method::POST);
        assert_eq!(request.headers, [json_content()]);
        String::from_utf8(request.body).unwrap()
    }

    #[test]
    fn the_schema_follows_the_host_as_flux_reads_it() {
        assert!(is_legacy_connector(LEGACY));
        assert!(is_legacy_connector(
            "https://u:p@x.webhook.office.com:443/a"
        ));
        assert!(!is_legacy_connector("https://xxx-webhook.office.com/a"));
        assert!(!is_legacy_connector("https://webhook.office.com/a"));
        assert!(!is_legacy_connector(WORKFLOW));
        assert!(!is_legacy_connector("https://x.webhook.office.com.evil/a"));
        // Go compares the host as written.
        assert!(!is_legacy_connector("https://X.WEBHOOK.OFFICE.COM/a"));
    }

    #[test]
    fn message_card_matches_flux_byte_for_byte() {
        let e = event("error", &[("revision", "main@sha1:abc"), ("a", "1")]);
        assert_eq!(
            body(LEGACY, &e),
            concat!(
                r#"{"@type":"MessageCard","@context":"http://schema.org/extensions","#,
                r#""themeColor":"FF0000","summary":"gitrepository/webapp.gitops-system","#,
                r#""sections":[{"activityTitle":"fetch \u003cfailed\u003e \u0026 retried","#,
                r#""activitySubtitle":"gitrepository/webapp.gitops-system","#,
                r#""facts":[{"name":"a","value":"1"},{"name":"revision","value":"main@sha1:abc"}]}]}"#
            )
        );
        let info = body(LEGACY, &event("info", &[]));
        assert!(info.contains(r#""themeColor":"0076D7""#), "{info}");
        assert!(info.ends_with(r#""facts":[]}]}"#), "{info}");
    }

    #[test]
    fn adaptive_card_matches_flux_byte_for_byte() {
        let e = event(
            "error",
            &[
                ("revision", "main@sha1:abc"),
                ("summary", "prod"),
                ("a", "1"),
            ],
        );
        assert_eq!(
            body(WORKFLOW, &e),
            concat!(
                r#"{"type":"message","attachments":[{"contentType":"application/vnd.microsoft.card.adaptive","#,
                r#""content":{"$schema":"http://adaptivecards.io/schemas/adaptive-card.json","#,
                r#""type":"AdaptiveCard","version":"1.4","body":[{"type":"Container","items":["#,
                r#"{"type":"TextBlock","text":"gitrepository/webapp.gitops-system","size":"large","weight":"bolder","wrap":true},"#,
                r#"{"type":"TextBlock","text":"fetch \u003cfailed\u003e \u0026 retried","color":"attention","wrap":true},"#,
                r#"{"type":"FactSet","facts":[{"title":"summary","value":"prod"},{"title":"a","value":"1"},"#,
                r#"{"title":"revision","value":"main@sha1:abc"}]}]}],"msteams":{"width":"Full"}}}]}"#
            )
        );
    }

    #[test]
    fn adaptive_card_leaves_out_what_go_omits() {
        let info = body(WORKFLOW, &event("info", &[]));
        assert!(
            info.contains(
                r#"{"type":"TextBlock","text":"fetch \u003cfailed\u003e \u0026 retried","wrap":true},{"type":"FactSet"}]}]"#
            ),
            "{info}"
        );
        let mut empty = event("info", &[]);
        empty.message.clear();
        assert!(body(WORKFLOW, &empty).contains(r#"{"type":"TextBlock","wrap":true}"#));
    }

    #[test]
    fn bad_addresses_are_reported() {
        let mut resolved = Resolved {
            provider_type: "msteams".into(),
            ..Resolved::default()
        };
        let e = event("info", &[]);
        assert!(matches!(
            build(&resolved, &e),
            Err(ProviderError::NoAddress { .. })
        ));
        resolved.address = "not a url".into();
        assert!(matches!(
            build(&resolved, &e),
            Err(ProviderError::BadAddress { .. })
        ));
    }
}
