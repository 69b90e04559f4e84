//! `herald status`: Herald's streams, consumers, dead letters and buckets,
//! and the NATS server and cluster they live on; unhealthy (exit code 1)
//! when a stream or consumer is missing, a replica is not current or
//! offline, or NATS cannot be reached.

use std::process::ExitCode;
use std::time::Duration;

use async_nats::jetstream;
use herald_proto::names;
use herald_runtime::budget::format_bytes;
use herald_runtime::nats::{NatsArgs, redact};
use serde::Serialize;

use super::connect;
use crate::output::{self, Format, Table, Tabular, or_dash, time};

/// The streams Herald needs: each must exist.
const STREAMS: [&str; 4] = [
    names::EVENTS_STREAM,
    names::DELIVERIES_STREAM,
    names::GROUPS_STREAM,
    names::DEAD_STREAM,
];

/// The durable consumers Herald's services read with: each must exist.
const CONSUMERS: [(&str, &str); 2] = [
    (names::EVENTS_STREAM, names::ROUTER_CONSUMER),
    (names::DELIVERIES_STREAM, names::SENDER_CONSUMER),
];

/// The key-value buckets Herald keeps (each made by the service that first
/// needs it: one not made yet is no fault).
const BUCKETS: [&str; 8] = [
    names::OBJECTS_BUCKET,
    names::PACING_BUCKET,
    names::DEDUPE_BUCKET,
    names::COMMIT_STATUS_BUCKET,
    names::THREADS_BUCKET,
    names::GROUP_DUE_BUCKET,
    names::REPEATS_BUCKET,
    names::RECOVERY_BUCKET,
];

/// A stream past this share of its budget is a warning.
const BUDGET_WARNING_PERCENT: f64 = 90.0;

/// `herald status`'s answer.
#[derive(Debug, Default, Serialize)]
pub struct Status {
    /// False when something below is wrong; `problems` says what.
    pub healthy: bool,
    pub problems: Vec<String>,
    /// What deserves a look but does not stop Herald.
    pub warnings: Vec<String>,
    pub nats: NatsStatus,
    pub streams: Vec<StreamStatus>,
    pub consumers: Vec<ConsumerStatus>,
    pub dead_letters: DeadLetters,
    pub buckets: Vec<BucketStatus>,
}

/// The server Herald's JetStream answers from.
#[derive(Debug, Default, Serialize)]
pub struct NatsStatus {
    pub reachable: bool,
    /// `--nats-url`, credentials removed.
    pub urls: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connected_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server_version: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jetstream_domain: Option<String>,
    /// The account's JetStream use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jetstream: Option<AccountStatus>,
    /// The JetStream meta group, when this account may see it (the system
    /// account's `$SYS.REQ.SERVER.PING.JSZ`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meta: Option<MetaStatus>,
}

/// The account's JetStream use, from the JetStream account info.
#[derive(Debug, Default, Serialize)]
pub struct AccountStatus {
    pub streams: usize,
    pub consumers: usize,
    pub storage_bytes: u64,
    pub memory_bytes: u64,
    /// The account's storage limit, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_storage_bytes: Option<u64>,
}

/// The JetStream meta group: its leader and peers.
#[derive(Debug, Default, Serialize)]
pub struct MetaStatus {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cluster: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    pub peers: Vec<Replica>,
}

/// A member of a RAFT group (a stream's or the meta group).
#[derive(Debug, Serialize)]
pub struct Replica {
    pub name: String,
    pub leader: bool,
    pub current: bool,
    pub offline: bool,
    /// Operations behind the leader.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lag: Option<u64>,
    /// Milliseconds since the leader last heard from it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_ms: Option<u64>,
}

/// One of Herald's streams.
#[derive(Debug, Default, Serialize)]
pub struct StreamStatus {
    pub name: String,
    pub exists: bool,
    pub messages: u64,
    pub bytes: u64,
    /// Its byte budget (`max_bytes`); absent when it has none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_used_percent: Option<f64>,
    /// Its message limit, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_messages: Option<u64>,
    /// How long it keeps messages, if limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_seconds: Option<u64>,
    pub replicas: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<String>,
    /// Every replica, the leader among them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Replica>,
    /// `ok`, or what is wrong.
    pub health: String,
}

/// A durable consumer of Herald's services.
#[derive(Debug, Default, Serialize)]
pub struct ConsumerStatus {
    pub stream: String,
    pub name: String,
    pub exists: bool,
    /// Messages not yet delivered to it: its lag.
    pub pending: u64,
    /// Delivered, not yet acknowledged.
    pub ack_pending: usize,
    /// Delivered more than once and not yet acknowledged.
    pub redelivered: usize,
    /// Pull requests waiting for messages (about one per service replica).
    pub waiting: usize,
}

/// HERALD_DEAD at a glance (`herald dlq list` shows each).
#[derive(Debug, Default, Serialize)]
pub struct DeadLetters {
    pub count: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest: Option<String>,
}

/// One of Herald's key-value buckets.
#[derive(Debug, Default, Serialize)]
pub struct BucketStatus {
    pub name: String,
    pub exists: bool,
    /// Stored values (a deleted key counts until compacted).
    pub entries: u64,
    pub bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget_used_percent: Option<f64>,
    pub replicas: usize,
    /// Every replica, the leader among them.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub peers: Vec<Replica>,
    /// `ok`, `not created yet` (its service has not started), or what is wrong.
    pub health: String,
}

impl Status {
    fn problem(&mut self, text: String) {
        self.problems.push(text);
    }
}

/// `herald status`: streams, consumers, dead letters, buckets and NATS.
/// Exit code 1 when something is unhealthy, with the reasons on stderr.
///
/// # Errors
///
/// When the output cannot be written.
pub async fn status(nats: &NatsArgs, format: Format) -> anyhow::Result<ExitCode> {
    let mut status = Status {
        nats: NatsStatus {
            urls: redact(nats.url()),
            jetstream_domain: nats.jetstream_domain.clone(),
            ..NatsStatus::default()
        },
        ..Status::default()
    };
    match connect(nats, "herald-status").await {
        Ok((client, js)) => {
            gather(&mut status, &client, &js).await;
            client.flush().await.ok();
        }
        Err(error) => status.problem(format!("cannot reach NATS: {error:#}")),
    }
    status.healthy = status.problems.is_empty();
    print!("{}", output::render(&status, format)?);
    for problem in &status.problems {
        eprintln!("herald status: unhealthy: {problem}");
    }
    Ok(if status.healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Fills `status` from the server.
async fn gather(status: &mut Status, client: &async_nats::Client, js: &jetstream::Context) {
    let info = client.server_info();
    status.nats.reachable = true;
    status.nats.connected_url = Some(format!("nats://{}:{}", info.host, info.port));
    status.nats.server_name = Some(info.server_name.clone());
    status.nats.server_version = Some(info.version.clone());
    status.nats.cluster = info.cluster.clone().filter(|c| !c.is_empty());
    match js.query_account().await {
        Ok(account) => {
            if status.nats.jetstream_domain.is_none() {
                status.nats.jetstream_domain = account.domain.clone().filter(|d| !d.is_empty());
            }
            status.nats.jetstream = Some(AccountStatus {
                streams: account.streams,
                consumers: account.consumers,
                storage_bytes: account.storage,
                memory_bytes: account.memory,
                max_storage_bytes: account
                    .limits
                    .max_storage
                    .and_then(|max| u64::try_from(max).ok())
                    .filter(|max| *max > 0),
            });
        }
        Err(error) => status.problem(format!("JetStream does not answer: {error}")),
    }
    status.nats.meta = meta(client).await;
    if let Some(meta) = &status.nats.meta {
        for peer in &meta.peers {
            if peer.offline {
                status
                    .problems
                    .push(format!("JetStream meta peer {} is offline", peer.name));
            }
        }
    }
    for name in STREAMS {
        let stream = stream_status(js, name).await;
        match stream {
            Ok(Some((stream, info))) => {
                if stream.health != "ok" {
                    status.problem(format!("{name}: {}", stream.health));
                }
                if let Some(used) = stream.budget_used_percent
                    && used >= BUDGET_WARNING_PERCENT
                {
                    status
                        .warnings
                        .push(format!("{name} has used {used:.0}% of its budget"));
                }
                if name == names::DEAD_STREAM {
                    status.dead_letters = DeadLetters {
                        count: info.state.messages,
                        bytes: info.state.bytes,
                        oldest: (info.state.messages > 0)
                            .then(|| time(output::nats_time(info.state.first_timestamp))),
                    };
                }
                status.streams.push(stream);
            }
            Ok(None) => {
                status.problem(format!(
                    "stream {name} does not exist (Herald's services create it when they start)"
                ));
                status.streams.push(StreamStatus {
                    name: name.to_owned(),
                    health: "missing".to_owned(),
                    ..StreamStatus::default()
                });
            }
            Err(error) => {
                status.problem(format!("cannot read stream {name}: {error}"));
                status.streams.push(StreamStatus {
                    name: name.to_owned(),
                    health: format!("unreadable: {error}"),
                    ..StreamStatus::default()
                });
            }
        }
    }
    for (stream, name) in CONSUMERS {
        let exists = status.streams.iter().any(|s| s.name == stream && s.exists);
        let mut consumer = ConsumerStatus {
            stream: stream.to_owned(),
            name: name.to_owned(),
            ..ConsumerStatus::default()
        };
        if exists {
            match consumer_info(js, stream, name).await {
                Ok(Some(info)) => {
                    consumer.exists = true;
                    consumer.pending = info.num_pending;
                    consumer.ack_pending = info.num_ack_pending;
                    consumer.redelivered = info.num_redelivered;
                    consumer.waiting = info.num_waiting;
                    if info.num_pending > 0 && info.num_waiting == 0 && info.num_ack_pending == 0 {
                        status.warnings.push(format!(
                            "{name} has {} messages to read on {stream} and is neither reading \
                             nor working on any: is its service running?",
                            info.num_pending
                        ));
                    }
                }
                Ok(None) => status.problem(format!(
                    "consumer {name} on {stream} does not exist (its service creates it when it starts)"
                )),
                Err(error) => status.problem(format!("cannot read consumer {name} on {stream}: {error}")),
            }
        }
        status.consumers.push(consumer);
    }
    for name in BUCKETS {
        match stream_status(js, &format!("KV_{name}")).await {
            Ok(Some((stream, _))) => {
                if stream.health != "ok" {
                    status.problem(format!("bucket {name}: {}", stream.health));
                }
                status.buckets.push(BucketStatus {
                    name: name.to_owned(),
                    exists: true,
                    entries: stream.messages,
                    bytes: stream.bytes,
                    max_bytes: stream.max_bytes,
                    budget_used_percent: stream.budget_used_percent,
                    replicas: stream.replicas,
                    peers: stream.peers,
                    health: stream.health,
                });
            }
            Ok(None) => status.buckets.push(BucketStatus {
                name: name.to_owned(),
                health: "not created yet".to_owned(),
                ..BucketStatus::default()
            }),
            Err(error) => status.problem(format!("cannot read bucket {name}: {error}")),
        }
    }
}

/// A stream's state and health, `None` when it does not exist.
async fn stream_status(
    js: &jetstream::Context,
    name: &str,
) -> Result<Option<(StreamStatus, jetstream::stream::Info)>, String> {
    let stream = match js.get_stream(name).await {
        Ok(stream) => stream,
        Err(error)
            if matches!(
                error.kind(),
                jetstream::context::GetStreamErrorKind::JetStream(e)
                    if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
            ) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(error.to_string()),
    };
    let info = stream.get_info().await.map_err(|e| e.to_string())?;
    let config = &info.config;
    let max_bytes = u64::try_from(config.max_bytes).ok().filter(|b| *b > 0);
    let mut out = StreamStatus {
        name: name.to_owned(),
        exists: true,
        messages: info.state.messages,
        bytes: info.state.bytes,
        max_bytes,
        budget_used_percent: max_bytes.map(|max| percent(info.state.bytes, max)),
        max_messages: u64::try_from(config.max_messages).ok().filter(|m| *m > 0),
        max_age_seconds: (!config.max_age.is_zero()).then_some(config.max_age.as_secs()),
        replicas: config.num_replicas.max(1),
        leader: None,
        peers: Vec::new(),
        health: "ok".to_owned(),
    };
    let mut faults = Vec::new();
    if let Some(cluster) = &info.cluster {
        out.leader = cluster.leader.clone().filter(|l| !l.is_empty());
        if let Some(leader) = &out.leader {
            out.peers.push(Replica {
                name: leader.clone(),
                leader: true,
                current: true,
                offline: false,
                lag: None,
                active_ms: None,
            });
        } else {
            faults.push("no leader".to_owned());
        }
        for peer in &cluster.replicas {
            if peer.offline {
                faults.push(format!("replica {} is offline", peer.name));
            } else if !peer.current {
                faults.push(format!(
                    "replica {} is not current (last seen {:.1}s ago, {} operations behind)",
                    peer.name,
                    peer.active.as_secs_f64(),
                    peer.lag.unwrap_or(0)
                ));
            }
            out.peers.push(Replica {
                name: peer.name.clone(),
                leader: false,
                current: peer.current,
                offline: peer.offline,
                lag: peer.lag,
                active_ms: u64::try_from(peer.active.as_millis()).ok(),
            });
        }
        let missing = out.replicas.saturating_sub(out.peers.len());
        if out.replicas > 1 && missing > 0 {
            faults.push(format!(
                "{missing} of {} replicas are not placed",
                out.replicas
            ));
        }
    }
    if !faults.is_empty() {
        out.health = faults.join("; ");
    }
    Ok(Some((out, info)))
}

/// A consumer's state, `None` when it does not exist.
async fn consumer_info(
    js: &jetstream::Context,
    stream: &str,
    name: &str,
) -> Result<Option<jetstream::consumer::Info>, String> {
    let stream = js.get_stream(stream).await.map_err(|e| e.to_string())?;
    match stream.consumer_info(name).await {
        Ok(info) => Ok(Some(info)),
        Err(error) if error.to_string().contains("consumer not found") => Ok(None),
        Err(error) => Err(error.to_string()),
    }
}

/// The JetStream meta group as the system account sees it; `None` for any
/// other account (the request has no responder) or a server without a cluster.
async fn meta(client: &async_nats::Client) -> Option<MetaStatus> {
    let reply = tokio::time::timeout(
        Duration::from_secs(1),
        client.request("$SYS.REQ.SERVER.PING.JSZ", "{}".into()),
    )
    .await
    .ok()?
    .ok()?;
    let body: serde_json::Value = serde_json::from_slice(&reply.payload).ok()?;
    let cluster = body.get("data")?.get("meta_cluster")?;
    let leader = cluster
        .get("leader")
        .and_then(|l| l.as_str())
        .filter(|l| !l.is_empty())
        .map(str::to_owned);
    let mut peers: Vec<Replica> = leader
        .iter()
        .map(|name| Replica {
            name: name.clone(),
            leader: true,
            current: true,
            offline: false,
            lag: None,
            active_ms: None,
        })
        .collect();
    for peer in cluster
        .get("replicas")
        .and_then(|r| r.as_array())
        .into_iter()
        .flatten()
    {
        peers.push(Replica {
            name: peer.get("name")?.as_str()?.to_owned(),
            leader: false,
            current: peer
                .get("current")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            offline: peer
                .get("offline")
                .and_then(serde_json::Value::as_bool)
                .unwrap_or(false),
            lag: peer.get("lag").and_then(serde_json::Value::as_u64),
            active_ms: peer
                .get("active")
                .and_then(serde_json::Value::as_u64)
                .map(|nanos| nanos / 1_000_000),
        });
    }
    Some(MetaStatus {
        cluster: cluster
            .get("name")
            .and_then(|n| n.as_str())
            .map(str::to_owned),
        leader,
        peers,
    })
}

/// `part` as a percentage of `whole`, to one decimal.
fn percent(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    ((part as f64 / whole as f64) * 1000.0).round() / 10.0
}

impl Tabular for Status {
    fn table(&self) -> String {
        let nats = &self.nats;
        let mut out = String::new();
        out.push_str("NATS\n");
        let mut line = |name: &str, value: String| {
            out.push_str(&format!(
                "  {:<12}{}\n",
                format!("{name}:"),
                output::one_line(&value)
            ));
        };
        line("URLs", nats.urls.clone());
        if nats.reachable {
            line(
                "Server",
                format!(
                    "{} {} at {}",
                    or_dash(nats.server_name.as_ref()),
                    or_dash(nats.server_version.as_ref()),
                    or_dash(nats.connected_url.as_ref())
                ),
            );
            line("Cluster", or_dash(nats.cluster.as_ref()));
            line("Domain", or_dash(nats.jetstream_domain.as_ref()));
            if let Some(account) = &nats.jetstream {
                line(
                    "JetStream",
                    format!(
                        "{} streams, {} consumers, {} stored{}",
                        account.streams,
                        account.consumers,
                        format_bytes(account.storage_bytes),
                        account
                            .max_storage_bytes
                            .map(|max| format!(" of {}", format_bytes(max)))
                            .unwrap_or_default()
                    ),
                );
            }
            line(
                "Meta group",
                match &nats.meta {
                    Some(meta) => format!(
                        "leader {}; peers {}",
                        or_dash(meta.leader.as_ref()),
                        peers(&meta.peers)
                    ),
                    None => "not visible to this account (the system account sees it)".to_owned(),
                },
            );
        } else {
            line("Server", "unreachable".to_owned());
        }
        if !self.streams.is_empty() {
            let mut table = Table::new(&[
                "STREAM", "MESSAGES", "BYTES", "BUDGET", "USED", "REPLICAS", "LEADER", "HEALTH",
            ]);
            for stream in &self.streams {
                table.row(vec![
                    stream.name.clone(),
                    stream.messages.to_string(),
                    format_bytes(stream.bytes),
                    or_dash(stream.max_bytes.map(format_bytes)),
                    or_dash(stream.budget_used_percent.map(|p| format!("{p:.1}%"))),
                    replicas(stream.replicas, &stream.peers),
                    or_dash(stream.leader.as_ref()),
                    stream.health.clone(),
                ]);
            }
            out.push('\n');
            out.push_str(&table.render());
        }
        if !self.consumers.is_empty() {
            let mut table = Table::new(&[
                "CONSUMER",
                "STREAM",
                "PENDING",
                "ACK PENDING",
                "REDELIVERED",
                "WAITING",
            ]);
            for consumer in &self.consumers {
                let cells = if consumer.exists {
                    vec![
                        consumer.pending.to_string(),
                        consumer.ack_pending.to_string(),
                        consumer.redelivered.to_string(),
                        consumer.waiting.to_string(),
                    ]
                } else {
                    vec![
                        "missing".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                        "-".to_owned(),
                    ]
                };
                let mut row = vec![consumer.name.clone(), consumer.stream.clone()];
                row.extend(cells);
                table.row(row);
            }
            out.push('\n');
            out.push_str(&table.render());
        }
        if nats.reachable {
            out.push_str(&format!(
                "\nDead letters: {} ({}){}\n",
                self.dead_letters.count,
                format_bytes(self.dead_letters.bytes),
                self.dead_letters
                    .oldest
                    .as_ref()
                    .map(|at| format!(", oldest {at}"))
                    .unwrap_or_default()
            ));
        }
        if !self.buckets.is_empty() {
            let mut table = Table::new(&[
                "BUCKET", "ENTRIES", "BYTES", "BUDGET", "USED", "REPLICAS", "HEALTH",
            ]);
            for bucket in &self.buckets {
                if bucket.exists {
                    table.row(vec![
                        bucket.name.clone(),
                        bucket.entries.to_string(),
                        format_bytes(bucket.bytes),
                        or_dash(bucket.max_bytes.map(format_bytes)),
                        or_dash(bucket.budget_used_percent.map(|p| format!("{p:.1}%"))),
                        replicas(bucket.replicas, &bucket.peers),
                        bucket.health.clone(),
                    ]);
                } else {
                    let mut row = vec![bucket.name.clone()];
                    row.extend(std::iter::repeat_n("-".to_owned(), 5));
                    row.push(bucket.health.clone());
                    table.row(row);
                }
            }
            out.push('\n');
            out.push_str(&table.render());
        }
        out.push('\n');
        for warning in &self.warnings {
            out.push_str(&format!("Warning: {}\n", output::one_line(warning)));
        }
        if self.healthy {
            out.push_str("Healthy.\n");
        } else {
            out.push_str("Unhealthy:\n");
            for problem in &self.problems {
                out.push_str(&format!("  - {}\n", output::one_line(problem)));
            }
        }
        out
    }
}

/// A replica count, with the replicas when there are several.
fn replicas(count: usize, replicas: &[Replica]) -> String {
    if count <= 1 || replicas.is_empty() {
        count.to_string()
    } else {
        format!("{count} ({})", peers(replicas))
    }
}

/// Replicas for people: `n1*, n2, n3 not current, n4 offline`, the leader starred.
fn peers(peers: &[Replica]) -> String {
    peers
        .iter()
        .map(|peer| {
            let mut text = peer.name.clone();
            if peer.leader {
                text.push('*');
            } else if peer.offline {
                text.push_str(" offline");
            } else if !peer.current {
                text.push_str(" not current");
            }
            text
        })
        .collect::<Vec<_>>()
        .join(", ")
}
