//! One module per provider type, each turning a delivery into the HTTP request
//! the destination expects (flux-providers §4). A new type is one module and
//! one line in [`build`].

mod generic;
mod slack;

use herald_flux::FluxEvent;

use crate::config::Resolved;

pub(crate) use slack::web_api_result as slack_web_api_result;

/// How a response is judged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Validator {
    /// Any 2xx is success.
    Status,
    /// Slack's Web API: a 2xx whose JSON body has `"ok": true`.
    SlackWebApi,
}

/// A request ready to send. Holds secrets (URL, headers): never log it.
pub struct ProviderRequest {
    pub url: reqwest::Url,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub validator: Validator,
}

/// Builds the request for `event` (already merged for its Alert).
///
/// # Errors
///
/// Why this Provider cannot send, for the dead letter.
pub fn build(resolved: &Resolved, event: &FluxEvent) -> Result<ProviderRequest, String> {
    match resolved.provider_type.as_str() {
        "slack" => slack::build(resolved, event),
        "generic" => generic::build(resolved, event, false),
        "generic-hmac" => generic::build(resolved, event, true),
        other => Err(format!(
            "provider type {other:?} is not supported by this version of Herald"
        )),
    }
}

/// Whether [`build`] knows the type.
#[must_use]
pub fn is_supported(provider_type: &str) -> bool {
    matches!(provider_type, "slack" | "generic" | "generic-hmac")
}

/// Parses a Provider address that must be an absolute http(s) URL.
fn parse_address(resolved: &Resolved, what: &str) -> Result<reqwest::Url, String> {
    let shown = resolved.address_for_logs();
    if resolved.address.is_empty() {
        return Err(format!(
            "{what}: no address: set spec.address or the Secret's address"
        ));
    }
    let url = reqwest::Url::parse(&resolved.address)
        .map_err(|e| format!("{what}: invalid address {shown}: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{what}: address {shown} must be http or https"));
    }
    Ok(url)
}

/// `lower(kind)/name.namespace`, the object name most chat providers show.
fn object_name(event: &FluxEvent) -> String {
    let o = &event.involved_object;
    format!("{}/{}.{}", o.kind.to_lowercase(), o.name, o.namespace)
}
