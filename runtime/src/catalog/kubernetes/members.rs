//! Member clusters: each cluster of the clusters file with a `kubeConfig`
//! gets its own Kubernetes catalog (its Alerts, Providers, Secrets and
//! object labels, read through the kubeconfig in a Secret of Herald's
//! namespace), which hears only that cluster's events. Events about its
//! objects are written in the member cluster, by its own source.
//!
//! A member's catalog exists from the moment the clusters file names it,
//! empty and not loaded until its cluster has been listed: the router holds
//! that cluster's events back until then, rather than route them without
//! the member's Alerts.

use std::collections::HashMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::{Client, Config};
use tokio_util::sync::CancellationToken;

use super::{KubeArgs, KubeSource, client};
use crate::catalog::{Catalog, CatalogWriter};
use crate::clusters::{Fleet, KubeConfigRef};
use crate::health::Readiness;

/// How often the clusters file and unreachable members are looked at again.
const RECHECK: Duration = Duration::from_secs(2);

/// A member being read, or waiting to be.
struct Running {
    config: KubeConfigRef,
    /// Set once its source runs.
    cancel: Option<CancellationToken>,
    /// Held until a source takes it.
    writer: Option<CatalogWriter>,
}

/// Keeps one catalog per member cluster of `fleet` in `hub`, until `cancel`
/// fires. `args` are the hub's Kubernetes settings (the hub's kubeconfig
/// reads the member kubeconfig Secrets; watch settings apply to members).
pub async fn run(
    hub: Catalog,
    fleet: Fleet,
    args: KubeArgs,
    readiness: Readiness,
    cancel: CancellationToken,
) {
    let mut hub_client: Option<Client> = None;
    let mut running: HashMap<String, Running> = HashMap::new();
    loop {
        let file = fleet.current();
        let wanted: HashMap<String, KubeConfigRef> = file
            .members()
            .map(|(name, config)| (name.to_owned(), config.clone()))
            .collect();
        // Gone, or pointing elsewhere now: stop it.
        running.retain(|name, member| {
            let keep = wanted.get(name) == Some(&member.config);
            if !keep {
                if let Some(cancel) = &member.cancel {
                    cancel.cancel();
                }
                hub.set_member(name, None);
                readiness.set_details(&format!("catalog:{name}"), Vec::new());
                tracing::info!(cluster = %name, "Member cluster removed.");
            }
            keep
        });
        for (name, config) in &wanted {
            let member = running.entry(name.clone()).or_insert_with(|| {
                let (catalog, writer) = Catalog::for_member(
                    format!("member cluster {name}"),
                    name,
                    hub.alert_options().clone(),
                    &readiness,
                );
                hub.set_member(name, Some(catalog));
                tracing::info!(cluster = %name, secret = %config.secret_ref.name, "Member cluster added.");
                Running {
                    config: config.clone(),
                    cancel: None,
                    writer: Some(writer),
                }
            });
            if member.cancel.is_some() {
                continue;
            }
            if hub_client.is_none() {
                match client(&args).await {
                    Ok(c) => hub_client = Some(c),
                    Err(error) => {
                        tracing::warn!(error = %format!("{error:#}"), "Cannot reach the hub cluster to read member kubeconfigs; retrying.");
                        break;
                    }
                }
            }
            let Some(hub_client) = &hub_client else { break };
            match member_client(hub_client, config).await {
                Ok(member_client) => {
                    let Some(writer) = member.writer.take() else {
                        continue;
                    };
                    let member_args = KubeArgs {
                        catalog_cluster: name.clone(),
                        ..args.clone()
                    };
                    let source = KubeSource::with_writer(member_client, &member_args, writer);
                    let child = cancel.child_token();
                    member.cancel = Some(child.clone());
                    tokio::spawn(source.run(child));
                    tracing::info!(cluster = %name, "Reading the member cluster's Alerts and Providers.");
                }
                Err(error) => {
                    readiness.set_details(
                        &format!("catalog:{name}"),
                        vec![format!("cannot reach member cluster {name}: {error:#}")],
                    );
                    tracing::warn!(cluster = %name, error = %format!("{error:#}"), "Cannot reach a member cluster; its events wait until it can be read.");
                }
            }
        }
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(RECHECK) => {}
        }
    }
}

/// A client for the member cluster whose kubeconfig is in `config`'s Secret,
/// in the hub client's namespace (Herald's).
async fn member_client(hub: &Client, config: &KubeConfigRef) -> anyhow::Result<Client> {
    let secrets: Api<Secret> = Api::default_namespaced(hub.clone());
    let name = &config.secret_ref.name;
    let secret = secrets
        .get(name)
        .await
        .map_err(|e| anyhow::anyhow!("cannot read the Secret {name}: {e}"))?;
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(&config.key))
        .map(|b| b.0.clone())
        .or_else(|| {
            secret
                .string_data
                .as_ref()
                .and_then(|d| d.get(&config.key))
                .map(|s| s.clone().into_bytes())
        })
        .ok_or_else(|| anyhow::anyhow!("the Secret {name} has no key {}", config.key))?;
    let text = String::from_utf8(bytes)
        .map_err(|_| anyhow::anyhow!("the kubeconfig in {name} is not UTF-8"))?;
    let kubeconfig = kube::config::Kubeconfig::from_yaml(&text)
        .map_err(|e| anyhow::anyhow!("the kubeconfig in {name} cannot be read: {e}"))?;
    let config =
        Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
            .await
            .map_err(|e| anyhow::anyhow!("the kubeconfig in {name} cannot be used: {e}"))?;
    Client::try_from(config).map_err(|e| anyhow::anyhow!("cannot build a client for {name}: {e}"))
}
