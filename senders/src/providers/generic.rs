//! `generic` and `generic-hmac`: the whole event as JSON (flux-providers §4.1–4.2).

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::shared::{json_content, parse_address};
use super::{Input, Plan, Provider, ProviderError};
use crate::config::Resolved;
use crate::http::Request;
use herald_flux::FluxEvent;

/// `generic`, or `generic-hmac` with `hmac`.
pub(super) struct Generic {
    pub hmac: bool,
}

impl Provider for Generic {
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError> {
        build(input.resolved, input.event, self.hmac).map(Plan::Request)
    }
}

/// Builds the generic request; with `hmac`, signs the body with the token.
fn build(resolved: &Resolved, event: &FluxEvent, hmac: bool) -> Result<Request, ProviderError> {
    let url = parse_address(resolved, &resolved.provider_type)?;
    let body = event.to_go_json();
    let mut headers = vec![
        json_content(),
        (
            "gotk-component".to_owned(),
            event.reporting_controller.clone(),
        ),
    ];
    for (name, value) in &resolved.headers {
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        headers.push((name.clone(), value.clone()));
    }
    if hmac {
        if resolved.token.is_empty() {
            return Err(ProviderError::missing(
                "generic-hmac",
                "HMAC key is empty: set token in the Provider's Secret",
            ));
        }
        let mut mac = Hmac::<Sha256>::new_from_slice(resolved.token.as_bytes())
            .map_err(|e| ProviderError::invalid("generic-hmac", e.to_string()))?;
        mac.update(&body);
        let signature = hex::encode(mac.finalize().into_bytes());
        headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case("X-Signature"));
        headers.push(("X-Signature".to_owned(), format!("sha256={signature}")));
    }
    Ok(Request::post(url, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn resolved(provider_type: &str) -> Resolved {
        Resolved {
            provider_type: provider_type.into(),
            address: "http://127.0.0.1:1/hook".into(),
            headers: BTreeMap::from([
                ("X-Signature".to_owned(), "forged".to_owned()),
                ("Gotk-Component".to_owned(), "overridden".to_owned()),
            ]),
            token: "key".into(),
            ..Resolved::default()
        }
    }

    #[test]
    fn generic_sends_the_event_with_secret_headers_last() {
        let event =
            FluxEvent::from_json(br#"{"reportingController":"kustomize-controller"}"#).unwrap();
        let request = build(&resolved("generic"), &event, false).unwrap();
        assert_eq!(request.body, event.to_go_json());
        assert!(
            request
                .headers
                .contains(&("Gotk-Component".into(), "overridden".into()))
        );
        assert!(!request.headers.iter().any(|(k, _)| k == "gotk-component"));
        assert!(
            request
                .headers
                .contains(&("X-Signature".into(), "forged".into()))
        );
    }

    #[test]
    fn hmac_signature_is_over_the_exact_body_and_wins() {
        let event = FluxEvent::from_json(br#"{"message":"a<b"}"#).unwrap();
        let request = build(&resolved("generic-hmac"), &event, true).unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"key").unwrap();
        mac.update(&request.body);
        let expected = format!("sha256={}", hex::encode(mac.finalize().into_bytes()));
        let signatures: Vec<_> = request
            .headers
            .iter()
            .filter(|(k, _)| k == "X-Signature")
            .collect();
        assert_eq!(signatures, [&("X-Signature".to_owned(), expected)]);
        let mut no_key = resolved("generic-hmac");
        no_key.token.clear();
        assert!(
            build(&no_key, &event, true)
                .err()
                .unwrap()
                .to_string()
                .contains("HMAC key is empty")
        );
    }
}
