//! `rocket`: Slack's attachment format posted to a Rocket.Chat incoming
//! webhook (flux-providers §4.5).

use super::shared::{SlackPayload, is_error, json_content, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `rocket`.
pub(super) struct Rocket;

impl Provider for Rocket {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event).map(Plan::Request)
    }
}

/// Builds the Rocket.Chat request: `spec.channel` and `spec.username` as
/// given (Flux sets no default username; the webhook's own applies).
fn build(resolved: &Resolved, event: &FluxEvent) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, "rocket")?;
    let color = if is_error(event) {
        "#FF0000"
    } else {
        "#0076D7"
    };
    let body = SlackPayload::new(event, &resolved.channel, &resolved.username, color).to_go_json();
    Ok(Request::post(url, vec![json_content()], body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::classify::Judge;
    use std::collections::BTreeMap;

    fn event(severity: &str) -> FluxEvent {
        let mut e = FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"HelmRelease","namespace":"apps","name":"podinfo"},
                "message":"upgrade <ok> & done","reason":"UpgradeSucceeded",
                "reportingController":"helm-controller"}"#,
        )
        .unwrap();
        e.severity = severity.into();
        e.metadata = BTreeMap::from([
            ("revision".to_owned(), "6.5.0".to_owned()),
            ("env".to_owned(), "prod".to_owned()),
        ]);
        e
    }

    fn resolved() -> Resolved {
        Resolved {
            provider_type: "rocket".into(),
            address: "https://chat.example.com/hooks/id/token".into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn body_matches_flux_byte_for_byte() {
        let request = build(&resolved(), &event("info")).unwrap();
        assert_eq!(request.judge, Judge::Status);
        assert_eq!(
            request.url.as_str(),
            "https://chat.example.com/hooks/id/token"
        );
        assert_eq!(request.headers, [json_content()]);
        assert_eq!(
            String::from_utf8(request.body).unwrap(),
            concat!(
                r#"{"channel":"","username":"","icon_url":"","icon_emoji":"","#,
                r##""attachments":[{"fallback":"","color":"#0076D7","author_name":"helmrelease/podinfo.apps","##,
                r#""text":"upgrade \u003cok\u003e \u0026 done","mrkdwn_in":["text"],"#,
                r#""fields":[{"title":"env","value":"prod","short":false},"#,
                r#"{"title":"revision","value":"6.5.0","short":false}]}]}"#
            )
        );
    }

    #[test]
    fn channel_username_and_error_colour() {
        let mut resolved = resolved();
        resolved.channel = "#flux".into();
        resolved.username = "flux".into();
        let body = String::from_utf8(build(&resolved, &event("error")).unwrap().body).unwrap();
        assert!(
            body.starts_with(r##"{"channel":"#flux","username":"flux""##),
            "{body}"
        );
        assert!(body.contains(r##""color":"#FF0000""##), "{body}");
    }

    #[test]
    fn bad_addresses_are_reported() {
        let mut resolved = resolved();
        resolved.address.clear();
        assert!(matches!(
            build(&resolved, &event("info")),
            Err(ProviderError::NoAddress { .. })
        ));
        resolved.address = "/hooks/id/token".into();
        assert!(matches!(
            build(&resolved, &event("info")),
            Err(ProviderError::BadAddress { .. })
        ));
    }
}
