//! `googlechat`: a legacy "cards v1" message to an incoming webhook
//! (flux-providers §4.7), with the `null`s Flux's Go structs write for their
//! unset pointers.

use serde::Serialize;

use super::shared::{is_error, json_content, object_name, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `googlechat`.
pub(super) struct GoogleChat;

impl Provider for GoogleChat {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

#[derive(Serialize)]
struct Payload<'a> {
    cards: [Card<'a>; 1],
}

#[derive(Serialize)]
struct Card<'a> {
    header: Header<'a>,
    sections: Vec<Section<'a>>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Header<'a> {
    title: String,
    subtitle: &'a str,
    // Never set by Flux: written as null.
    image_url: Option<&'a str>,
    image_style: Option<&'a str>,
}

#[derive(Serialize)]
struct Section<'a> {
    header: &'a str,
    widgets: Vec<Widget<'a>>,
}

/// One of the two is set; the other is written as null.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Widget<'a> {
    text_paragraph: Option<TextParagraph>,
    key_value: Option<KeyValue<'a>>,
}

#[derive(Serialize)]
struct TextParagraph {
    text: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct KeyValue<'a> {
    top_label: &'a str,
    content: &'a str,
    content_multiline: bool,
    bottom_label: Option<&'a str>,
    icon: Option<&'a str>,
}

/// Builds the webhook post.
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "googlechat")?;
    let text = if is_error(event) {
        format!("<font color=\"#ff0000\">{}</font>", event.message)
    } else {
        event.message.clone()
    };
    let mut sections = vec![Section {
        header: "",
        widgets: vec![Widget {
            text_paragraph: Some(TextParagraph { text }),
            key_value: None,
        }],
    }];
    // Sorted by key; Flux's order is Go's random map order.
    if !event.metadata.is_empty() {
        sections.push(Section {
            header: "",
            widgets: event
                .metadata
                .iter()
                .map(|(key, value)| Widget {
                    text_paragraph: None,
                    key_value: Some(KeyValue {
                        top_label: key,
                        content: value,
                        content_multiline: false,
                        bottom_label: None,
                        icon: None,
                    }),
                })
                .collect(),
        });
    }
    let payload = Payload {
        cards: [Card {
            header: Header {
                title: object_name(event),
                subtitle: &event.reporting_controller,
                image_url: None,
                image_style: None,
            },
            sections,
        }],
    };
    Ok(Request::post(
        url,
        vec![json_content()],
        herald_flux::gojson::to_vec(&payload),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Judge;
    use std::collections::BTreeMap;

    fn event(severity: &str, metadata: &[(&str, &str)]) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo"},
                "message":"install failed & rolled back","reportingController":"helm-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = metadata
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect::<BTreeMap<_, _>>();
        e
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "googlechat".into(),
            address: "https://chat.googleapis.com/v1/spaces/AAAA/messages?key=k&token=t".into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn error_card_matches_flux_byte_for_byte() {
        let e = event("error", &[("summary", "prod"), ("revision", "1.2.3")]);
        let request = build(&resolved(), &e).unwrap();
        assert_eq!(request.judge, Judge::Status);
        assert_eq!(request.url.as_str(), resolved().address);
        assert_eq!(
            request.headers,
            [("Content-Type".to_owned(), "application/json".to_owned())]
        );
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"cards":[{"header":{"title":"helmrelease/podinfo.apps","subtitle":"helm-controller","#,
                r#""imageUrl":null,"imageStyle":null},"sections":["#,
                r##"{"header":"","widgets":[{"textParagraph":{"text":"\u003cfont color=\"#ff0000\"\u003einstall failed \u0026 rolled back\u003c/font\u003e"},"keyValue":null}]},"##,
                r#"{"header":"","widgets":["#,
                r#"{"textParagraph":null,"keyValue":{"topLabel":"revision","content":"1.2.3","contentMultiline":false,"bottomLabel":null,"icon":null}},"#,
                r#"{"textParagraph":null,"keyValue":{"topLabel":"summary","content":"prod","contentMultiline":false,"bottomLabel":null,"icon":null}}"#,
                r#"]}]}]}"#
            )
        );
    }

    #[test]
    fn info_without_metadata_has_one_plain_section() {
        let request = build(&resolved(), &event("info", &[])).unwrap();
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"cards":[{"header":{"title":"helmrelease/podinfo.apps","subtitle":"helm-controller","#,
                r#""imageUrl":null,"imageStyle":null},"sections":["#,
                r#"{"header":"","widgets":[{"textParagraph":{"text":"install failed \u0026 rolled back"},"keyValue":null}]}"#,
                r#"]}]}"#
            )
        );
    }

    #[test]
    fn the_address_is_required() {
        let mut r = resolved();
        r.address.clear();
        assert!(matches!(
            build(&r, &event("info", &[])),
            Err(ProviderError::NoAddress { .. })
        ));
    }
}
