//! What the catalog alone cannot check about a Provider: whether its
//! type can send with the settings and Secret keys it has (a `github`
//! Provider whose Secret holds neither a token nor App keys, a `pagerduty`
//! Provider without a routing key, a proxy Secret without an address). Each
//! Provider is resolved against its Secrets and planned for a sample error
//! event, as a delivery would be; what stops it is a problem, found before
//! the first event instead of at the first dead letter. `herald validate`
//! and every service that sends run it (see
//! [`herald_runtime::catalog::install_checks`]).
//!
//! Message templates are rendered once for the sample event too: a
//! template that compiles but fails when it runs (a function given the
//! wrong arguments, blocks that are not a JSON array) is found here rather
//! than at its first delivery.
//!
//! Slack threads (`herald.dev/slack-thread`) are checked here too: on an
//! Alert or Provider whose Provider cannot thread (a webhook address, no
//! token or channel, another type) the annotation is a problem, and the
//! messages go unthreaded.

use std::path::Path;

use herald_flux::template::{
    AlertRef, RenderError, SLACK_BLOCKS_ANNOTATION, TEMPLATE_ANNOTATION, TemplateData, Templates,
};
use herald_flux::threads::slack_thread_setting;
use herald_flux::{FluxEvent, ProviderType};
use herald_runtime::Snapshot;
use herald_runtime::catalog::Problem;

use crate::config::{ResolveError, resolve};
use crate::providers::{self, AlertIdentity, Input};

/// An error event every provider type would send: about an object with a
/// uid, a commit and a change request.
fn sample_event() -> FluxEvent {
    let mut event = FluxEvent::from_json(
        br#"{"involvedObject":{"kind":"Kustomization","namespace":"flux-system","name":"check",
            "uid":"00000000-0000-4000-8000-000000000000",
            "apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
            "severity":"error","reason":"HealthCheckFailed","message":"check",
            "timestamp":"2024-01-01T00:00:00Z","reportingController":"kustomize-controller"}"#,
    )
    .unwrap_or_default();
    for (key, value) in [
        (
            "revision",
            "main@sha1:0000000000000000000000000000000000000000",
        ),
        ("change_request", "1"),
    ] {
        event.metadata.insert(key.to_owned(), value.to_owned());
    }
    event
}

/// Everything this module checks: [`provider_problems`] and
/// [`template_problems`].
#[must_use]
pub fn problems(snapshot: &Snapshot) -> Vec<Problem> {
    let mut found = provider_problems(snapshot);
    found.extend(template_problems(snapshot));
    found
}

/// The templates of every Alert and Provider that fail on the sample
/// event, and `herald.dev/slack-blocks` where no Slack Provider reads it.
#[must_use]
pub fn template_problems(snapshot: &Snapshot) -> Vec<Problem> {
    let event = sample_event();
    let mut out = Vec::new();
    let mut check = |templates: &Templates,
                     id: String,
                     file: &Path,
                     alert: AlertRef<'_>,
                     provider_type: Option<ProviderType>| {
        let data = TemplateData::new(&event, alert, "sample");
        // Empty for this one event may be meant (a condition on the
        // severity): the delivery then carries Flux's message.
        if let Some(Ok(template)) = &templates.message
            && let Err(error) = template.render(&data)
            && error != RenderError::Empty
        {
            out.push(Problem::error(
                file.to_owned(),
                id.clone(),
                format!(
                    "annotation {TEMPLATE_ANNOTATION} fails on a sample event: {error}; \
                     deliveries it fails for are sent with Flux's message"
                ),
            ));
        }
        let Some(blocks) = &templates.slack_blocks else {
            return;
        };
        if let Some(other) = provider_type.filter(|t| *t != ProviderType::Slack) {
            out.push(Problem::warning(
                file.to_owned(),
                id.clone(),
                format!(
                    "annotation {SLACK_BLOCKS_ANNOTATION} is read only for slack Providers; \
                     this one sends to {other}"
                ),
            ));
        } else if let Ok(template) = blocks
            && let Err(error) = template.render_blocks(&data)
        {
            out.push(Problem::error(
                file.to_owned(),
                id,
                format!(
                    "annotation {SLACK_BLOCKS_ANNOTATION} fails on a sample event: {error}; \
                     deliveries it fails for are sent without blocks"
                ),
            ));
        }
    };
    for (compiled, file) in snapshot.alerts() {
        if compiled.templates.is_empty() {
            continue;
        }
        let meta = &compiled.alert.meta;
        let provider_type = snapshot
            .provider(&meta.namespace, &compiled.alert.spec.provider_ref.name)
            .and_then(|p| p.provider_type());
        check(
            &compiled.templates,
            format!("Alert/{}", compiled.alert.key()),
            file,
            AlertRef {
                namespace: &meta.namespace,
                name: &meta.name,
            },
            provider_type,
        );
    }
    for (provider, file) in snapshot.providers() {
        let meta = &provider.meta;
        let Some(templates) = snapshot
            .provider_templates(&meta.namespace, &meta.name)
            .filter(|t| !t.is_empty())
        else {
            continue;
        };
        check(
            templates,
            format!("Provider/{}", provider.key()),
            file,
            AlertRef {
                namespace: &meta.namespace,
                name: "sample",
            },
            provider.provider_type(),
        );
    }
    out
}

/// The problems of every Provider in `snapshot` that its type cannot send
/// with. What the catalog already reported about a Provider or its Secrets
/// (a Secret that does not exist, a SOPS-encrypted or `${VAR}` value) is not
/// repeated in other words.
#[must_use]
pub fn provider_problems(snapshot: &Snapshot) -> Vec<Problem> {
    let event = sample_event();
    let alert = AlertIdentity::default();
    let identifier = || Ok("check".to_owned());
    let reported: std::collections::HashSet<&str> = snapshot
        .problems
        .iter()
        .map(|p| p.object.as_str())
        .collect();
    let mut out = Vec::new();
    for (provider, file) in snapshot.providers() {
        let id = format!("Provider/{}", provider.key());
        let namespace = &provider.meta.namespace;
        let spec = &provider.spec;
        let secrets = [
            &spec.secret_ref,
            &spec.cert_secret_ref,
            &spec.proxy_secret_ref,
        ]
        .into_iter()
        .flatten()
        .map(|r| format!("Secret/{namespace}/{}", r.name));
        if reported.contains(id.as_str())
            || secrets.into_iter().any(|s| reported.contains(s.as_str()))
        {
            continue;
        }
        let resolved = match resolve(provider, snapshot) {
            Ok(resolved) => resolved,
            Err(ResolveError::MissingSecret { .. }) => continue,
            Err(error) => {
                out.push(Problem::error(file.to_owned(), id, error.to_string()));
                continue;
            }
        };
        let planned = providers::plan(&Input {
            event: &event,
            alert: &alert,
            resolved: &resolved,
            identifier: &identifier,
            thread: None,
        });
        if let Err(error) = planned {
            out.push(Problem::error(file.to_owned(), id, error.to_string()));
        }
    }
    out.extend(thread_problems(snapshot));
    out
}

/// The `herald.dev/slack-thread` annotations that cannot be followed: a
/// value other than `true` or `false` on a Provider (an Alert's is found
/// when it is compiled), and `true` on a Provider, or an Alert of a
/// Provider, that cannot thread.
fn thread_problems(snapshot: &Snapshot) -> Vec<Problem> {
    let mut out = Vec::new();
    for (provider, file) in snapshot.providers() {
        let id = format!("Provider/{}", provider.key());
        match slack_thread_setting(&provider.meta.annotations) {
            Err(problem) => out.push(Problem::error(file.to_owned(), id, problem)),
            Ok(Some(true)) => {
                if let Some(why) = resolve(provider, snapshot)
                    .ok()
                    .and_then(|r| providers::slack_thread_unsupported(&r))
                {
                    out.push(Problem::error(file.to_owned(), id, why));
                }
            }
            Ok(_) => {}
        }
    }
    for (compiled, file) in snapshot.alerts() {
        let alert = &compiled.alert;
        if slack_thread_setting(&alert.meta.annotations) != Ok(Some(true)) {
            continue;
        }
        let why = snapshot
            .provider(&alert.meta.namespace, &alert.spec.provider_ref.name)
            .and_then(|provider| resolve(&provider, snapshot).ok())
            .and_then(|r| providers::slack_thread_unsupported(&r));
        if let Some(why) = why {
            out.push(Problem::error(
                file.to_owned(),
                format!("Alert/{}", alert.key()),
                format!("its Provider cannot thread: {why}"),
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use herald_flux::objects::parse_documents;

    fn problems(yaml: &str) -> Vec<String> {
        let objects = parse_documents(yaml, "ns")
            .unwrap()
            .into_iter()
            .map(|o| (std::path::PathBuf::from("p.yaml"), o.unwrap()))
            .collect();
        let snapshot = Snapshot::from_objects(objects, Vec::new(), &Default::default());
        super::problems(&snapshot)
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    const P: &str = "apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Provider\n";

    #[test]
    fn providers_their_type_cannot_send_with_are_named_and_usable_ones_are_not() {
        let yaml = format!(
            "{P}metadata: {{name: gh}}\nspec: {{type: github, address: 'https://github.com/o/r', secretRef: {{name: empty}}}}\n---\n\
             {P}metadata: {{name: pd}}\nspec: {{type: pagerduty, address: 'https://events.pagerduty.com'}}\n---\n\
             {P}metadata: {{name: ok}}\nspec: {{type: generic, address: 'https://hooks.example/x'}}\n---\n\
             {P}metadata: {{name: gone}}\nspec: {{type: slack, secretRef: {{name: missing}}}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: empty}}\nstringData: {{other: x}}\n"
        );
        let found = problems(&yaml);
        assert_eq!(found.len(), 2, "{found:?}");
        assert!(
            found[0].starts_with("p.yaml: Provider/ns/gh: "),
            "{found:?}"
        );
        assert!(
            found[0].contains("github token or github app details must be specified"),
            "{found:?}"
        );
        assert!(
            found[1].starts_with("p.yaml: Provider/ns/pd: "),
            "{found:?}"
        );
    }

    #[test]
    fn slack_threads_that_cannot_be_kept_are_named_on_their_object() {
        let annotated =
            |value: &str| format!("annotations: {{herald.dev/slack-thread: '{value}'}}");
        let yaml = format!(
            "{P}metadata: {{name: hook, {}}}\nspec: {{type: slack, address: 'https://hooks.slack.com/services/T/B/X'}}\n---\n\
             {P}metadata: {{name: bot, {}}}\nspec: {{type: slack, channel: alerts, address: 'https://slack.com/api/chat.postMessage', secretRef: {{name: bot}}}}\n---\n\
             {P}metadata: {{name: odd, {}}}\nspec: {{type: slack, address: 'https://hooks.slack.com/services/T/B/Y'}}\n---\n\
             {P}metadata: {{name: plain}}\nspec: {{type: slack, address: 'https://hooks.slack.com/services/T/B/Z'}}\n---\n\
             {P}metadata: {{name: teams, {}}}\nspec: {{type: msteams, address: 'https://teams.example/hook'}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {{name: asks, {}}}\nspec: {{providerRef: {{name: plain}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {{name: fine, {}}}\nspec: {{providerRef: {{name: bot}}, eventSources: [{{kind: Kustomization, name: '*'}}]}}\n---\n\
             apiVersion: v1\nkind: Secret\nmetadata: {{name: bot}}\nstringData: {{token: xoxb-1}}\n",
            annotated("true"),
            annotated("true"),
            annotated("yes"),
            annotated("true"),
            annotated("true"),
            annotated("true"),
        );
        let found = problems(&yaml);
        assert_eq!(found.len(), 4, "{found:?}");
        let on = |object: &str| {
            found
                .iter()
                .find(|p| p.contains(&format!(" {object}: ")))
                .cloned()
                .unwrap_or_default()
        };
        assert!(
            on("Provider/ns/hook")
                .contains("posts to a webhook, so its messages are sent unthreaded"),
            "{found:?}"
        );
        assert!(
            on("Provider/ns/odd").contains("must be \"true\" or \"false\" (got \"yes\")"),
            "{found:?}"
        );
        assert!(
            on("Provider/ns/teams").contains("slack Providers only"),
            "{found:?}"
        );
        assert!(
            on("Alert/ns/asks").contains("its Provider cannot thread"),
            "{found:?}"
        );
        assert!(
            !found.iter().any(|p| p.contains("hooks.slack.com")),
            "{found:?}"
        );
    }

    #[test]
    fn templates_that_fail_on_the_sample_event_are_named() {
        let yaml = format!(
            "{P}metadata: {{name: chat, annotations: {{herald.dev/slack-blocks: '[{{{{ .Message | toJson }}}}]'}}}}\n\
             spec: {{type: slack, address: 'https://hooks.example/x'}}\n---\n\
             {P}metadata: {{name: hook, annotations: {{herald.dev/slack-blocks: '[]', herald.dev/template: '{{{{ .Message }}}}'}}}}\n\
             spec: {{type: generic, address: 'https://hooks.example/y'}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {{name: a, annotations: {{herald.dev/template: '{{{{ trunc .Reason }}}}'}}}}\n\
             spec: {{providerRef: {{name: chat}}, eventSources: [{{kind: Bucket, name: '*'}}]}}\n---\n\
             apiVersion: notification.toolkit.fluxcd.io/v1beta3\nkind: Alert\n\
             metadata: {{name: quiet, annotations: {{herald.dev/template: '{{{{ if eq .Severity \"info\" }}}}ok{{{{ end }}}}'}}}}\n\
             spec: {{providerRef: {{name: chat}}, eventSources: [{{kind: Bucket, name: '*'}}]}}\n"
        );
        let found = problems(&yaml);
        // Empty for the sample (an error) may be meant: not a problem.
        assert_eq!(found.len(), 3, "{found:?}");
        assert!(
            found[0].starts_with(
                "p.yaml: Alert/ns/a: annotation herald.dev/template fails on a sample event: \
                 wrong number of arguments"
            ),
            "{found:?}"
        );
        assert!(
            found[1].starts_with(
                "p.yaml: Provider/ns/chat: annotation herald.dev/slack-blocks fails on a sample \
                 event: the output is not a JSON array of Slack blocks"
            ),
            "{found:?}"
        );
        assert_eq!(
            found[2],
            "warning: p.yaml: Provider/ns/hook: annotation herald.dev/slack-blocks is read only \
             for slack Providers; this one sends to generic"
        );
    }
}
