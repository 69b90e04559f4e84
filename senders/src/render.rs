//! The sender's rendering step: before a provider builds its request, the
//! message template in force for the delivery (the Alert's
//! `herald.dev/template`, else its Provider's) replaces the event's message,
//! so every provider carries the rendered text where it carries Flux's
//! message. For a Slack Provider a `herald.dev/slack-blocks` template (the
//! Alert's, else the Provider's) gives the message's blocks.
//!
//! Templates were compiled with the catalog; one that did not compile is a
//! catalog problem and is not used. A template that fails while rendering
//! never sends a broken message: the delivery keeps Flux's message (and no
//! blocks), and the failure is returned for the caller to log, count and
//! note on the object's record.

use herald_flux::template::{
    AlertRef, MessageTemplate, SLACK_BLOCKS_ANNOTATION, Slot, TEMPLATE_ANNOTATION, TemplateData,
    Templates,
};
use herald_flux::{FluxEvent, ProviderType};

/// Whose annotation a template is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Alert,
    Provider,
}

impl Owner {
    /// `Alert` or `Provider`, as records and logs name the kind.
    #[must_use]
    pub fn kind(self) -> &'static str {
        match self {
            Self::Alert => "Alert",
            Self::Provider => "Provider",
        }
    }
}

/// What rendering did for one delivery.
#[derive(Debug, Default)]
pub struct Rendered {
    /// The templates that rendered.
    pub rendered: Vec<(Owner, &'static str)>,
    /// The templates that failed: whose, which annotation, and why.
    pub failed: Vec<Failure>,
}

/// A template that could not render a delivery's message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub owner: Owner,
    /// `template` or `slack-blocks`.
    pub annotation: &'static str,
    pub reason: String,
}

/// The template in force: the Alert's when it sets the annotation (even one
/// that does not compile: it is not replaced by another), else the
/// Provider's.
fn in_force<'a>(
    alert: Option<&'a Slot>,
    provider: Option<&'a Slot>,
) -> Option<(Owner, &'a MessageTemplate)> {
    let (owner, slot) = match (alert, provider) {
        (Some(slot @ Some(_)), _) => (Owner::Alert, slot),
        (_, Some(slot)) => (Owner::Provider, slot),
        (Some(slot), None) => (Owner::Alert, slot),
        (None, None) => return None,
    };
    match slot {
        Some(Ok(template)) => Some((owner, template.as_ref())),
        Some(Err(_)) | None => None,
    }
}

/// Renders the templates in force for a delivery of `event` into it.
pub fn apply(
    event: &mut FluxEvent,
    alert_templates: Option<&Templates>,
    provider_templates: Option<&Templates>,
    alert: AlertRef<'_>,
    cluster: &str,
    provider_type: Option<ProviderType>,
) -> Rendered {
    let mut out = Rendered::default();
    let message = in_force(
        alert_templates.map(|t| &t.message),
        provider_templates.map(|t| &t.message),
    );
    let blocks = if provider_type == Some(ProviderType::Slack) {
        in_force(
            alert_templates.map(|t| &t.slack_blocks),
            provider_templates.map(|t| &t.slack_blocks),
        )
    } else {
        None
    };
    if message.is_none() && blocks.is_none() {
        return out;
    }
    // Both templates see the event as Flux sent it.
    let data = TemplateData::new(event, alert, cluster);
    let short = |annotation: &'static str| annotation.trim_start_matches("herald.dev/");
    if let Some((owner, template)) = message {
        match template.render(&data) {
            Ok(text) => {
                event.message = text;
                out.rendered.push((owner, short(TEMPLATE_ANNOTATION)));
            }
            Err(error) => out.failed.push(Failure {
                owner,
                annotation: short(TEMPLATE_ANNOTATION),
                reason: error.to_string(),
            }),
        }
    }
    if let Some((owner, template)) = blocks {
        match template.render_blocks(&data) {
            Ok(json) => {
                event.slack_blocks = Some(json);
                out.rendered.push((owner, short(SLACK_BLOCKS_ANNOTATION)));
            }
            Err(error) => out.failed.push(Failure {
                owner,
                annotation: short(SLACK_BLOCKS_ANNOTATION),
                reason: error.to_string(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    fn templates(pairs: &[(&str, &str)]) -> Templates {
        let annotations: BTreeMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        Templates::from_annotations(&annotations).0
    }

    fn event() -> FluxEvent {
        FluxEvent::from_json(
            br#"{"involvedObject":{"kind":"Kustomization","namespace":"a","name":"web"},
                "severity":"error","message":"failed","reason":"HealthCheckFailed"}"#,
        )
        .unwrap()
    }

    const ALERT: AlertRef<'static> = AlertRef {
        namespace: "a",
        name: "on-call",
    };

    #[test]
    fn the_alert_template_wins_over_the_provider_default() {
        let alert = templates(&[(TEMPLATE_ANNOTATION, "alert: {{ .Message }}")]);
        let provider = templates(&[(TEMPLATE_ANNOTATION, "provider: {{ .Message }}")]);
        let mut e = event();
        let done = apply(&mut e, Some(&alert), Some(&provider), ALERT, "", None);
        assert_eq!(e.message, "alert: failed");
        assert_eq!(done.rendered, [(Owner::Alert, "template")]);
        let mut e = event();
        apply(
            &mut e,
            Some(&Templates::default()),
            Some(&provider),
            ALERT,
            "",
            None,
        );
        assert_eq!(e.message, "provider: failed");
        // An Alert template that does not compile is not replaced by the Provider's.
        let broken = templates(&[(TEMPLATE_ANNOTATION, "{{ .Message")]);
        let mut e = event();
        let done = apply(&mut e, Some(&broken), Some(&provider), ALERT, "", None);
        assert_eq!(e.message, "failed");
        assert!(done.rendered.is_empty() && done.failed.is_empty());
    }

    #[test]
    fn failures_keep_flux_message_and_blocks_are_for_slack_only() {
        let alert = templates(&[
            (TEMPLATE_ANNOTATION, r#"{{ trunc "x" .Message }}"#),
            (
                SLACK_BLOCKS_ANNOTATION,
                r#"[{"type":"section","text":{"type":"mrkdwn","text":{{ toJson .Message }}}}]"#,
            ),
        ]);
        let mut e = event();
        let done = apply(
            &mut e,
            Some(&alert),
            None,
            ALERT,
            "prod",
            Some(ProviderType::Slack),
        );
        assert_eq!(e.message, "failed");
        assert_eq!(done.failed.len(), 1);
        assert_eq!(
            (done.failed[0].owner, done.failed[0].annotation),
            (Owner::Alert, "template")
        );
        assert!(done.failed[0].reason.contains("expected an integer"));
        assert_eq!(done.rendered, [(Owner::Alert, "slack-blocks")]);
        assert!(
            e.slack_blocks
                .as_deref()
                .unwrap()
                .contains(r#""text":"failed""#)
        );
        let mut e = event();
        apply(
            &mut e,
            Some(&alert),
            None,
            ALERT,
            "prod",
            Some(ProviderType::Discord),
        );
        assert_eq!(e.slack_blocks, None);
    }
}
