//! `herald get alerts|providers`: each object's readiness from the folder
//! catalog, joined with what its deliveries did from HERALD_OBJECTS.

use std::collections::BTreeMap;
use std::process::ExitCode;

use futures::{StreamExt as _, TryStreamExt as _};
use herald_flux::convert::from_time;
use herald_proto::{ObjectRecord, names};
use herald_runtime::catalog::{self, CatalogArgs, Severity, SourceKind};
use herald_runtime::nats::NatsArgs;
use prost::Message as _;
use serde::Serialize;

use super::connect;
use crate::output::{self, Format, Table, Tabular, or_dash, shorten, time};

/// HERALD_OBJECTS entries read at once.
const CONCURRENT_READS: usize = 32;

/// The longest status shown in the table; `-o json|yaml` shows it all.
const CELL_CHARS: usize = 100;

/// The longest last error shown in the table (a column before another).
const ERROR_CHARS: usize = 60;

/// What `herald get` lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    /// Alerts.
    #[value(alias = "alert")]
    Alerts,
    /// Providers.
    #[value(alias = "provider")]
    Providers,
}

impl Kind {
    /// The Kubernetes kind: `Alert`, `Provider`.
    fn name(self) -> &'static str {
        match self {
            Self::Alerts => "Alert",
            Self::Providers => "Provider",
        }
    }
}

/// `herald get`'s answer: one item per object.
#[derive(Debug, Serialize)]
pub struct ObjectList {
    /// `Alert` or `Provider`.
    pub kind: String,
    /// Sorted by namespace and name.
    pub items: Vec<ObjectStatus>,
    /// Why the catalog side is missing, if it is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub catalog_error: Option<String>,
    /// Why the delivery records are missing, if they are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub records_error: Option<String>,
}

/// One Alert or Provider: its readiness from the catalog, and what its
/// deliveries did from HERALD_OBJECTS.
#[derive(Debug, Serialize)]
pub struct ObjectStatus {
    pub namespace: String,
    pub name: String,
    /// A Provider's type; an Alert's Provider (`spec.providerRef.name`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    /// Whether the catalog holds it (an object known only from its records
    /// was deleted, or is not in the catalog read).
    pub in_catalog: bool,
    /// In the catalog, with no error: Herald uses it.
    pub ready: bool,
    /// The catalog's errors about it (why it is not ready).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub problems: Vec<String>,
    /// The catalog's warnings about it (it is used still).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
    /// Its newest delivery, accepted or failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivery: Option<LastDelivery>,
    /// The newest delivery its destination accepted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_delivered_at: Option<String>,
    /// The newest failure (retried or dead), and why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_failed_at: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_status: Option<u32>,
    /// Deliveries accepted, retried and dead, since the record began.
    pub delivered: u64,
    pub retried: u64,
    pub dead: u64,
    /// Deliveries its message template failed for (sent with Flux's
    /// message), since the record began.
    #[serde(skip_serializing_if = "is_zero")]
    pub template_failures: u64,
    /// Why its template failed for its newest delivery that used it, when
    /// it did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template_error: Option<String>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// The newest delivery of an object.
#[derive(Debug, Serialize)]
pub struct LastDelivery {
    pub at: String,
    /// `delivered` or `failed`.
    pub outcome: String,
}

impl ObjectStatus {
    fn new(namespace: &str, name: &str) -> Self {
        Self {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            provider_type: None,
            provider: None,
            in_catalog: false,
            ready: false,
            problems: Vec::new(),
            warnings: Vec::new(),
            last_delivery: None,
            last_delivered_at: None,
            last_failed_at: None,
            last_error: None,
            last_status: None,
            delivered: 0,
            retried: 0,
            dead: 0,
            template_failures: 0,
            template_error: None,
        }
    }

    /// Adds what HERALD_OBJECTS knows.
    fn add_record(&mut self, record: &ObjectRecord) {
        let delivered = record.last_delivered_at.as_ref().and_then(from_time);
        let failed = record.last_failed_at.as_ref().and_then(from_time);
        self.last_delivered_at = delivered.map(time);
        self.last_failed_at = failed.map(time);
        if failed.is_some() {
            self.last_error = Some(record.last_error.clone()).filter(|e| !e.is_empty());
            self.last_status = Some(record.last_status).filter(|s| *s != 0);
        }
        self.last_delivery = match (delivered, failed) {
            (Some(d), Some(f)) if f > d => Some((f, "failed")),
            (Some(d), _) => Some((d, "delivered")),
            (None, Some(f)) => Some((f, "failed")),
            (None, None) => None,
        }
        .map(|(at, outcome)| LastDelivery {
            at: time(at),
            outcome: outcome.to_owned(),
        });
        self.delivered = record.delivered;
        self.retried = record.retried;
        self.dead = record.dead;
        self.template_failures = record.template_failures;
        let rendered = record.last_rendered_at.as_ref().and_then(from_time);
        let template_failed = record.last_template_failed_at.as_ref().and_then(from_time);
        self.template_error = template_failed
            .filter(|f| rendered.is_none_or(|r| r < *f))
            .map(|_| record.last_template_error.clone());
    }
}

impl Tabular for ObjectList {
    fn table(&self) -> String {
        let providers = self.kind == "Provider";
        let mut table = Table::new(&[
            "NAMESPACE",
            "NAME",
            if providers { "TYPE" } else { "PROVIDER" },
            "READY",
            "LAST DELIVERY",
            "OUTCOME",
            "DELIVERED",
            "RETRIED",
            "DEAD",
            "LAST ERROR",
            "STATUS",
        ]);
        for item in &self.items {
            let status = if !item.in_catalog {
                "not in the catalog".to_owned()
            } else if let Some(problem) = item.problems.first() {
                problem.clone()
            } else if let Some(error) = &item.template_error {
                format!("template failing: {error}")
            } else {
                "-".to_owned()
            };
            let outcome = item.last_delivery.as_ref().map(|last| {
                match (last.outcome.as_str(), item.last_status) {
                    ("failed", Some(status)) => format!("failed ({status})"),
                    (outcome, _) => outcome.to_owned(),
                }
            });
            table.row(vec![
                item.namespace.clone(),
                item.name.clone(),
                or_dash(if providers {
                    item.provider_type.as_ref()
                } else {
                    item.provider.as_ref()
                }),
                if item.ready { "True" } else { "False" }.to_owned(),
                or_dash(item.last_delivery.as_ref().map(|l| &l.at)),
                or_dash(outcome),
                item.delivered.to_string(),
                item.retried.to_string(),
                item.dead.to_string(),
                shorten(&or_dash(item.last_error.as_ref()), ERROR_CHARS),
                shorten(&status, CELL_CHARS),
            ]);
        }
        table.render()
    }
}

/// `herald get alerts|providers`: the catalog joined with HERALD_OBJECTS.
/// Either side missing is said on stderr and the other shown; both missing
/// fails.
///
/// # Errors
///
/// When the output cannot be written.
pub async fn get(
    kind: Kind,
    catalog: &CatalogArgs,
    nats: &NatsArgs,
    format: Format,
) -> anyhow::Result<ExitCode> {
    let mut list = ObjectList {
        kind: kind.name().to_owned(),
        items: Vec::new(),
        catalog_error: None,
        records_error: None,
    };
    let mut rows: BTreeMap<(String, String), ObjectStatus> = BTreeMap::new();
    match catalog_rows(kind, catalog) {
        Ok(found) => rows = found,
        Err(error) => {
            eprintln!("herald get: {error}; showing the delivery records alone");
            list.catalog_error = Some(error);
        }
    }
    match records(kind, nats).await {
        Ok(records) => {
            for record in records {
                rows.entry((record.namespace.clone(), record.name.clone()))
                    .or_insert_with(|| ObjectStatus::new(&record.namespace, &record.name))
                    .add_record(&record);
            }
        }
        Err(error) => {
            let error = format!("{error:#}");
            eprintln!(
                "herald get: cannot read {} ({error}); showing the catalog alone",
                names::OBJECTS_BUCKET
            );
            list.records_error = Some(error);
        }
    }
    list.items = rows.into_values().collect();
    print!("{}", output::render(&list, format)?);
    if format == Format::Table && list.items.is_empty() {
        eprintln!("No {} found.", kind.name());
    }
    Ok(
        if list.catalog_error.is_some() && list.records_error.is_some() {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        },
    )
}

/// The objects of `kind` in the folder catalog, with their problems; an
/// object the catalog left out (it breaks its kind's rules) is listed, not
/// ready.
fn catalog_rows(
    kind: Kind,
    args: &CatalogArgs,
) -> Result<BTreeMap<(String, String), ObjectStatus>, String> {
    if args.source == SourceKind::Kubernetes {
        // The Kubernetes source writes Events and status as it reads: not
        // for a read command. kubectl shows the objects' Ready condition.
        return Err(
            "herald get reads a folder catalog (--config-dir) only; for the Kubernetes catalog, \
             `kubectl get alerts.notification.toolkit.fluxcd.io -A` shows readiness"
                .to_owned(),
        );
    }
    let mut snapshot = catalog::load_folder(
        &args.config_dir,
        &args.default_namespace,
        &args.alert_options(),
    )
    .map_err(|e| format!("cannot read the catalog {}: {e}", args.config_dir.display()))?;
    // As `herald validate` and a sender check them.
    let found = herald_senders::check::problems(&snapshot);
    snapshot.add_problems(found);
    let mut rows = BTreeMap::new();
    match kind {
        Kind::Alerts => {
            for compiled in snapshot.alerts.alerts() {
                let meta = &compiled.alert.meta;
                let mut row = ObjectStatus::new(&meta.namespace, &meta.name);
                row.provider = Some(compiled.alert.spec.provider_ref.name.clone());
                row.in_catalog = true;
                rows.insert((meta.namespace.clone(), meta.name.clone()), row);
            }
        }
        Kind::Providers => {
            for (provider, _) in snapshot.providers() {
                let meta = &provider.meta;
                let mut row = ObjectStatus::new(&meta.namespace, &meta.name);
                row.provider_type = Some(provider.spec.type_.clone());
                row.in_catalog = true;
                rows.insert((meta.namespace.clone(), meta.name.clone()), row);
            }
        }
    }
    let prefix = format!("{}/", kind.name());
    for problem in &snapshot.problems {
        let Some((namespace, name)) = problem
            .object
            .strip_prefix(&prefix)
            .and_then(|rest| rest.split_once('/'))
        else {
            continue;
        };
        let row = rows
            .entry((namespace.to_owned(), name.to_owned()))
            .or_insert_with(|| {
                // Left out of the catalog for this problem: read, but unused.
                let mut row = ObjectStatus::new(namespace, name);
                row.in_catalog = true;
                row
            });
        let text = format!("{}: {}", problem.file.display(), problem.reason);
        match problem.severity {
            Severity::Error => row.problems.push(text),
            Severity::Warning => row.warnings.push(text),
        }
    }
    for row in rows.values_mut() {
        // An object left out has no spec read; one with an error is not used as written.
        row.ready = row.in_catalog && row.problems.is_empty();
    }
    Ok(rows)
}

/// The HERALD_OBJECTS records of `kind`.
async fn records(kind: Kind, nats: &NatsArgs) -> anyhow::Result<Vec<ObjectRecord>> {
    let (client, js) = connect(nats, "herald-get").await?;
    let store = js.get_key_value(names::OBJECTS_BUCKET).await.map_err(|e| {
        anyhow::anyhow!(
            "no bucket {} (a sender creates it): {e}",
            names::OBJECTS_BUCKET
        )
    })?;
    let prefix = format!("{}.", names::escape_token(kind.name()));
    let keys: Vec<String> = store
        .keys()
        .await?
        .try_filter(|key| std::future::ready(key.starts_with(&prefix)))
        .try_collect()
        .await?;
    let values: Vec<anyhow::Result<Option<ObjectRecord>>> = futures::stream::iter(keys)
        .map(|key| {
            let store = &store;
            async move {
                let Some(value) = store.get(key.as_str()).await? else {
                    return Ok(None);
                };
                ObjectRecord::decode(value)
                    .map(Some)
                    .map_err(|e| anyhow::anyhow!("entry {key} is not a record: {e}"))
            }
        })
        .buffered(CONCURRENT_READS)
        .collect()
        .await;
    drop(client);
    values.into_iter().filter_map(Result::transpose).collect()
}
