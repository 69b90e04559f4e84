//! `lark`: an interactive card posted to a custom bot's webhook
//! (flux-providers §4.10).

use serde::Serialize;

use super::shared::{is_error, json_content, object_name, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::classify::Judge;
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `lark`.
pub(super) struct Lark;

impl Provider for Lark {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    msg_type: &'a str,
    card: Card<'a>,
}

#[derive(Serialize)]
struct Card<'a> {
    config: Config,
    header: Header<'a>,
    elements: [Element<'a>; 1],
}

#[derive(Serialize)]
struct Config {
    wide_screen_mode: bool,
}

#[derive(Serialize)]
struct Header<'a> {
    title: Text<'a>,
    template: &'a str,
}

#[derive(Serialize)]
struct Element<'a> {
    tag: &'a str,
    text: Text<'a>,
}

#[derive(Serialize)]
struct Text<'a> {
    tag: &'a str,
    content: String,
}

/// Builds the Lark request. Lark answers `200` with `{"code": n, "msg"}`
/// whether or not it posted: Flux reads only the status, Herald reads the
/// code too ([`Judge::Lark`]).
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "lark")?;
    let (emoji, template) = if is_error(event) {
        ("🚨", "red")
    } else {
        ("💫", "turquoise")
    };
    let payload = Payload {
        msg_type: "interactive",
        card: Card {
            config: Config {
                wide_screen_mode: true,
            },
            header: Header {
                title: Text {
                    tag: "plain_text",
                    content: format!("{emoji} {}", object_name(event)),
                },
                template,
            },
            elements: [Element {
                tag: "div",
                text: Text {
                    tag: "lark_md",
                    content: content(event),
                },
            }],
        },
    };
    Ok(Request::post(
        url,
        vec![json_content()],
        herald_flux::gojson::to_vec(&payload),
    )
    .judged_by(Judge::Lark))
}

/// `**{message}**`, a blank line, then a `key: value` line per metadata
/// entry (sorted by key; Go's order is random).
fn content(event: &FluxEvent) -> String {
    let mut text = format!("**{}**\n\n", event.message);
    for (key, value) in &event.metadata {
        text.push_str(&format!("{key}: {value}\n"));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn event(severity: &str) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo"},
                "message":"upgrade <retried> & \"failed\"","reason":"UpgradeFailed",
                "reportingController":"helm-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = BTreeMap::from([
            ("revision".to_owned(), "6.5.0".to_owned()),
            ("cluster".to_owned(), "prod".to_owned()),
        ]);
        e
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "lark".into(),
            address: "https://open.larksuite.com/open-apis/bot/v2/hook/abc".into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn error_card_matches_flux_byte_for_byte() {
        let request = build(&resolved(), &event("error")).unwrap();
        assert_eq!(request.judge, Judge::Lark);
        assert_eq!(request.headers, vec![json_content()]);
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"msg_type":"interactive","card":{"config":{"wide_screen_mode":true},"#,
                r#""header":{"title":{"tag":"plain_text","content":"🚨 helmrelease/podinfo.apps"},"template":"red"},"#,
                r#""elements":[{"tag":"div","text":{"tag":"lark_md","#,
                r#""content":"**upgrade \u003cretried\u003e \u0026 \"failed\"**\n\ncluster: prod\nrevision: 6.5.0\n"}}]}}"#
            )
        );
    }

    #[test]
    fn info_card_without_metadata() {
        let mut e = event("info");
        e.metadata.clear();
        let body = String::from_utf8(build(&resolved(), &e).unwrap().body).unwrap();
        assert!(body.contains(
            r#""title":{"tag":"plain_text","content":"💫 helmrelease/podinfo.apps"},"template":"turquoise""#
        ));
        assert!(
            body.contains(r#""content":"**upgrade \u003cretried\u003e \u0026 \"failed\"**\n\n"}"#)
        );
    }

    #[test]
    fn bad_addresses_are_reported() {
        let mut bad = resolved();
        bad.address = "not a url".into();
        assert!(matches!(
            build(&bad, &event("info")),
            Err(ProviderError::BadAddress { .. })
        ));
    }
}
