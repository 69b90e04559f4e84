//! NATS connection and the JetStream streams and consumers Herald needs,
//! created or updated idempotently by each service at start.

use std::fmt;
use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use herald_proto::names;

use crate::budget::{Budgets, format_bytes};
use crate::edges::{Edge, EventSources};
use crate::health::Readiness;
use crate::nats_url::Servers;
pub use crate::nats_url::{ConnectError, redact};

/// Room kept in every message for what travels with an event after ingest:
/// headers, the routing data of its deliveries and the reason, attempts and
/// answer excerpt of its dead letter. An event may be up to `max_payload`
/// less this.
pub const ENVELOPE_RESERVE: usize = 64 * 1024;

/// Room kept in every message for its headers (ids, trace context, a dead
/// letter's reason) when deciding whether it fits `max_payload`.
pub const HEADER_ROOM: usize = 4 * 1024;

/// How long a JetStream request (an API call, a publish's ack, a key-value
/// read or write, a confirmed ack) waits for its answer. A request sent on a
/// connection that is then lost is never answered: this bounds how long the
/// work waiting on it stalls after a node loss. Healthy answers take
/// milliseconds. Ingest waits `--publish-timeout` for its publishes instead.
pub const JETSTREAM_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the client pings its server when nothing else arrives: a
/// server lost without closing the connection (a host or network failure)
/// is noticed after three unanswered pings, and the client moves to another
/// server of the list.
pub const PING_INTERVAL: Duration = Duration::from_secs(5);

/// How to reach NATS. Every flag is global: a command with subcommands of
/// its own (`herald dlq list`) takes them after the subcommand too.
#[derive(Clone, clap::Args)]
pub struct NatsArgs {
    /// NATS server URL(s), comma-separated [default: nats://127.0.0.1:4222;
    /// `herald standalone` starts its own server instead]. Credentials in a
    /// URL (`nats://user:password@host`, `nats://token@host`) are used to log
    /// in and never printed.
    #[arg(long, global = true, env = "HERALD_NATS_URL", hide_env_values = true)]
    pub nats_url: Option<String>,
    /// A NATS credentials file (for NGS or operator-mode servers).
    #[arg(long, global = true, env = "HERALD_NATS_CREDS")]
    pub nats_creds: Option<std::path::PathBuf>,
    /// The JetStream domain Herald's streams and buckets live in. Set it on
    /// an ingest at an edge, connected to its cluster's leaf node
    /// (`jetstream { domain }` there): its events are stored on the leaf
    /// node, on subjects of the domain's own, for the hub to source
    /// (`herald router --edge`). Unset, Herald uses the JetStream of the
    /// server it is connected to.
    #[arg(long, global = true, env = "HERALD_JETSTREAM_DOMAIN", value_parser = crate::edges::parse_domain)]
    pub jetstream_domain: Option<String>,
    /// Replicas of each Herald stream (1 for a single server, 3 in a cluster).
    #[arg(
        long,
        global = true,
        env = "HERALD_STREAM_REPLICAS",
        default_value_t = 1
    )]
    pub stream_replicas: usize,
    /// How long HERALD_EVENTS keeps events (a replayable log).
    #[arg(long, global = true, env = "HERALD_EVENTS_MAX_AGE", default_value = "7d", value_parser = parse_duration)]
    pub events_max_age: Duration,
    /// JetStream's duplicate window on HERALD_EVENTS: a request retried within
    /// it is stored once.
    #[arg(long, global = true, env = "HERALD_DUPLICATE_WINDOW", default_value = "5m", value_parser = parse_duration)]
    pub duplicate_window: Duration,
    /// How long HERALD_DEAD keeps dead letters.
    #[arg(long, global = true, env = "HERALD_DEAD_MAX_AGE", default_value = "30d", value_parser = parse_duration)]
    pub dead_max_age: Duration,
    /// The byte budget of each stream and bucket.
    #[command(flatten)]
    pub budgets: Budgets,
}

/// The key-value buckets of flood control (see [`Nats::ensure_flood_buckets`]).
#[derive(Clone, Debug)]
pub struct FloodBuckets {
    pub due: async_nats::jetstream::kv::Store,
    pub repeats: async_nats::jetstream::kv::Store,
    pub recovery: async_nats::jetstream::kv::Store,
}

/// The NATS URL used when none is given.
pub const DEFAULT_NATS_URL: &str = "nats://127.0.0.1:4222";

impl NatsArgs {
    /// The URL(s) to connect to, credentials included: never print this, print
    /// [`redact`] of it.
    #[must_use]
    pub fn url(&self) -> &str {
        self.nats_url.as_deref().unwrap_or(DEFAULT_NATS_URL)
    }

    /// Connects with `options` to the servers of [`NatsArgs::url`], the
    /// credentials of the URLs (and of `--nats-creds`) passed as options, so
    /// that no URL handed to async-nats (which logs them) carries a secret.
    ///
    /// # Errors
    ///
    /// [`ConnectError`], whose message never holds a credential.
    pub async fn connect_with(
        &self,
        options: async_nats::ConnectOptions,
    ) -> Result<async_nats::Client, ConnectError> {
        let servers = Servers::parse(self.url())?;
        let mut options = servers.apply(options);
        if let Some(creds) = &self.nats_creds {
            options = options.credentials_file(creds).await.map_err(|error| {
                ConnectError::CredentialsFile {
                    path: creds.clone(),
                    error,
                }
            })?;
        }
        options
            .connect(servers.addrs.clone())
            .await
            .map_err(|error| ConnectError::Connect {
                servers: servers.redacted.clone(),
                error,
            })
    }
}

impl NatsArgs {
    /// A JetStream context on `client` in `--jetstream-domain` (if any),
    /// whose requests wait `timeout` for their answer.
    #[must_use]
    pub fn context(&self, timeout: Duration, client: async_nats::Client) -> jetstream::Context {
        let builder = jetstream::ContextBuilder::new().timeout(timeout);
        match &self.jetstream_domain {
            Some(domain) => builder.domain(domain).build(client),
            None => builder.build(client),
        }
    }

    /// The subjects of HERALD_EVENTS in this process's domain: the hub's
    /// `herald.events.>`, or an edge's own (see
    /// [`names::edge_events_subjects`]).
    #[must_use]
    pub fn events_subjects(&self) -> String {
        match &self.jetstream_domain {
            Some(domain) => names::edge_events_subjects(domain),
            None => names::EVENTS_SUBJECTS.to_owned(),
        }
    }

    /// The subject an event from `cluster` is stored on in this process's domain.
    #[must_use]
    pub fn event_subject(&self, cluster: &str) -> String {
        match &self.jetstream_domain {
            Some(domain) => names::edge_event_subject(domain, cluster),
            None => names::event_subject(cluster),
        }
    }
}

impl fmt::Debug for NatsArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NatsArgs")
            .field("nats_url", &self.nats_url.as_deref().map(redact))
            .field("nats_creds", &self.nats_creds)
            .field("jetstream_domain", &self.jetstream_domain)
            .field("stream_replicas", &self.stream_replicas)
            .field("events_max_age", &self.events_max_age)
            .field("duplicate_window", &self.duplicate_window)
            .field("dead_max_age", &self.dead_max_age)
            .finish()
    }
}

/// Parses `90s`, `5m`, `7d` and other Go-style durations (plus `d` for days).
///
/// # Errors
///
/// A message saying what is wrong.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    if let Some(days) = text.strip_suffix('d') {
        let days: u64 = days
            .parse()
            .map_err(|_| format!("invalid duration {text:?}"))?;
        return Ok(Duration::from_secs(days * 86_400));
    }
    herald_flux::duration::parse(text)
}

/// A connected client with its JetStream context.
#[derive(Clone, Debug)]
pub struct Nats {
    pub client: async_nats::Client,
    pub jetstream: jetstream::Context,
    pub args: NatsArgs,
}

/// Connects to NATS, retrying until it answers, and keeps reconnecting for
/// ever after a loss. Readiness follows the connection.
///
/// # Errors
///
/// When the URL or the credentials file cannot be used.
pub async fn connect(args: &NatsArgs, name: &str, readiness: &Readiness) -> anyhow::Result<Nats> {
    connect_checked(args, name, "nats", readiness).await
}

/// Connects as [`connect`] does, with the connection's readiness under
/// `check` (a process with several connections has one check for each).
///
/// # Errors
///
/// When the URL or the credentials file cannot be used.
pub async fn connect_checked(
    args: &NatsArgs,
    name: &str,
    check: &'static str,
    readiness: &Readiness,
) -> anyhow::Result<Nats> {
    readiness.register(check);
    let ready = readiness.clone();
    let options = async_nats::ConnectOptions::new()
        .name(name)
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(5))
        .ping_interval(PING_INTERVAL)
        .event_callback(move |event| {
            let ready = ready.clone();
            async move {
                match event {
                    async_nats::Event::Connected => {
                        tracing::info!(connection = check, "Connected to NATS.");
                        ready.set(check, true);
                    }
                    async_nats::Event::Disconnected => {
                        tracing::warn!(connection = check, "Disconnected from NATS; reconnecting.");
                        ready.set(check, false);
                    }
                    other => tracing::debug!(event = %other, "NATS client event."),
                }
            }
        });
    let client = args.connect_with(options).await?;
    if client.connection_state() == async_nats::connection::State::Connected {
        readiness.set(check, true);
    }
    let jetstream = args.context(JETSTREAM_TIMEOUT, client.clone());
    Ok(Nats {
        client,
        jetstream,
        args: args.clone(),
    })
}

// === impl Nats ===

impl Nats {
    /// Whether the connection is up right now.
    #[must_use]
    pub fn is_connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Creates or updates HERALD_EVENTS, with the edges it sources as
    /// `sources` says: the router sets them, ingest keeps those the stream has.
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_events_stream(&self, sources: EventSources<'_>) -> anyhow::Result<()> {
        let sources = match sources {
            EventSources::Own(edges) => {
                if !edges.is_empty() {
                    self.check_sources_supported()?;
                }
                edges.iter().map(Edge::source).collect()
            }
            EventSources::Keep => match self.jetstream.get_stream(names::EVENTS_STREAM).await {
                Ok(stream) => stream
                    .cached_info()
                    .config
                    .sources
                    .clone()
                    .unwrap_or_default(),
                Err(error)
                    if matches!(
                        error.kind(),
                        jetstream::context::GetStreamErrorKind::JetStream(e)
                            if e.error_code() == jetstream::ErrorCode::STREAM_NOT_FOUND
                    ) =>
                {
                    Vec::new()
                }
                Err(error) => {
                    return Err(self.setup_error(
                        names::EVENTS_STREAM,
                        self.args.budgets.events_max_bytes,
                        &error,
                    ));
                }
            },
        };
        self.ensure_stream(stream::Config {
            name: names::EVENTS_STREAM.to_owned(),
            description: Some("Flux events accepted by herald ingest.".to_owned()),
            subjects: vec![self.args.events_subjects()],
            sources: (!sources.is_empty()).then_some(sources),
            retention: stream::RetentionPolicy::Limits,
            max_age: self.args.events_max_age,
            max_bytes: budget(self.args.budgets.events_max_bytes),
            // Never drop an event to make room: it may not be routed yet.
            discard: stream::DiscardPolicy::New,
            duplicate_window: self.args.duplicate_window,
            storage: stream::StorageType::File,
            num_replicas: self.args.stream_replicas,
            ..stream::Config::default()
        })
        .await
    }

    /// Creates or updates HERALD_DELIVERIES.
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_deliveries_stream(&self) -> anyhow::Result<()> {
        self.ensure_stream(stream::Config {
            name: names::DELIVERIES_STREAM.to_owned(),
            description: Some("Notifications to send, one per (event, alert).".to_owned()),
            subjects: vec![names::DELIVERIES_SUBJECTS.to_owned()],
            retention: stream::RetentionPolicy::WorkQueue,
            max_bytes: budget(self.args.budgets.deliveries_max_bytes),
            discard: stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            num_replicas: self.args.stream_replicas,
            ..stream::Config::default()
        })
        .await
    }

    /// Creates or updates HERALD_DEAD.
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_dead_stream(&self) -> anyhow::Result<()> {
        self.ensure_stream(stream::Config {
            name: names::DEAD_STREAM.to_owned(),
            description: Some("Deliveries that failed for good, with the reason.".to_owned()),
            subjects: vec![names::DEAD_SUBJECTS.to_owned()],
            retention: stream::RetentionPolicy::Limits,
            max_age: self.args.dead_max_age,
            max_bytes: budget(self.args.budgets.dead_max_bytes),
            // A sender must always be able to bury a delivery.
            discard: stream::DiscardPolicy::Old,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            num_replicas: self.args.stream_replicas,
            ..stream::Config::default()
        })
        .await
    }

    /// Creates or updates HERALD_GROUPS (deliveries of Alerts that group,
    /// gathered per group until the group's digest is due; the flusher
    /// removes what it flushed).
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_groups_stream(&self) -> anyhow::Result<()> {
        self.ensure_stream(stream::Config {
            name: names::GROUPS_STREAM.to_owned(),
            description: Some("Deliveries gathered per group until its digest is due.".to_owned()),
            subjects: vec![names::GROUPS_SUBJECTS.to_owned()],
            retention: stream::RetentionPolicy::Limits,
            max_bytes: budget(self.args.budgets.groups_max_bytes),
            discard: stream::DiscardPolicy::New,
            duplicate_window: Duration::from_secs(120),
            storage: stream::StorageType::File,
            num_replicas: self.args.stream_replicas,
            ..stream::Config::default()
        })
        .await
    }

    /// Creates or updates the buckets of flood control: HERALD_GROUP_DUE
    /// (when each group is due), HERALD_REPEATS (repeat-threshold counts,
    /// kept a day: no window is longer) and HERALD_RECOVERY (objects whose
    /// error was notified, kept a week), in that order.
    ///
    /// # Errors
    ///
    /// When JetStream refuses a configuration or does not answer.
    pub async fn ensure_flood_buckets(&self) -> anyhow::Result<FloodBuckets> {
        let bucket = |name: &str, description: &str, max_age: Duration| {
            let config = async_nats::jetstream::kv::Config {
                bucket: name.to_owned(),
                description: description.to_owned(),
                history: 1,
                max_age,
                max_bytes: budget(self.args.budgets.kv_max_bytes),
                storage: stream::StorageType::File,
                num_replicas: self.args.stream_replicas,
                ..Default::default()
            };
            let name = name.to_owned();
            async move {
                self.jetstream
                    .create_or_update_key_value(config)
                    .await
                    .map_err(|e| self.setup_error(&name, self.args.budgets.kv_max_bytes, &e))
            }
        };
        let day = Duration::from_secs(86_400);
        Ok(FloodBuckets {
            due: bucket(
                names::GROUP_DUE_BUCKET,
                "When each group's digest is due.",
                3 * day,
            )
            .await?,
            repeats: bucket(
                names::REPEATS_BUCKET,
                "Repeat-threshold sightings per Alert, object and reason.",
                day,
            )
            .await?,
            recovery: bucket(
                names::RECOVERY_BUCKET,
                "Objects whose error was notified, until they recover.",
                7 * day,
            )
            .await?,
        })
    }

    /// Creates or updates the HERALD_DEDUPE key-value bucket, whose entries
    /// expire `3 × interval` after their last update.
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_dedupe_bucket(
        &self,
        interval: Duration,
    ) -> anyhow::Result<async_nats::jetstream::kv::Store> {
        self.jetstream
            .create_or_update_key_value(async_nats::jetstream::kv::Config {
                bucket: names::DEDUPE_BUCKET.to_owned(),
                description: "Flux dedupe windows, one per dedupe key.".to_owned(),
                history: 1,
                max_age: interval * 3,
                max_bytes: budget(self.args.budgets.kv_max_bytes),
                storage: stream::StorageType::File,
                num_replicas: self.args.stream_replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| self.setup_error(names::DEDUPE_BUCKET, self.args.budgets.kv_max_bytes, &e))
    }

    /// Creates or updates the HERALD_PACING key-value bucket (per-destination
    /// pacing shared by every sender replica).
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_pacing_bucket(&self) -> anyhow::Result<async_nats::jetstream::kv::Store> {
        self.jetstream
            .create_or_update_key_value(async_nats::jetstream::kv::Config {
                bucket: names::PACING_BUCKET.to_owned(),
                description: "Per-destination pacing, shared by every sender.".to_owned(),
                history: 1,
                max_age: Duration::from_secs(24 * 3600),
                max_bytes: budget(self.args.budgets.kv_max_bytes),
                storage: stream::StorageType::File,
                num_replicas: self.args.stream_replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| self.setup_error(names::PACING_BUCKET, self.args.budgets.kv_max_bytes, &e))
    }

    /// Creates or updates the HERALD_THREADS key-value bucket (Slack thread
    /// roots), whose entries expire `ttl` after their last update.
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_threads_bucket(
        &self,
        ttl: Duration,
    ) -> anyhow::Result<async_nats::jetstream::kv::Store> {
        self.jetstream
            .create_or_update_key_value(async_nats::jetstream::kv::Config {
                bucket: names::THREADS_BUCKET.to_owned(),
                description: "Slack thread roots, one per object, revision, cluster and channel."
                    .to_owned(),
                history: 1,
                max_age: ttl,
                max_bytes: budget(self.args.budgets.kv_max_bytes),
                storage: stream::StorageType::File,
                num_replicas: self.args.stream_replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                self.setup_error(names::THREADS_BUCKET, self.args.budgets.kv_max_bytes, &e)
            })
    }

    /// Creates or updates the HERALD_COMMIT_STATUS key-value bucket (the
    /// newest applied commit status per repository, commit and identifier).
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_commit_status_bucket(
        &self,
    ) -> anyhow::Result<async_nats::jetstream::kv::Store> {
        self.ensure_record_bucket(
            names::COMMIT_STATUS_BUCKET,
            "The newest applied commit status per repository, commit and identifier.",
        )
        .await
    }

    /// Creates or updates the HERALD_OBJECTS key-value bucket (what Herald
    /// knows of each Alert and Provider from its deliveries).
    ///
    /// # Errors
    ///
    /// When JetStream refuses the configuration or does not answer.
    pub async fn ensure_objects_bucket(&self) -> anyhow::Result<async_nats::jetstream::kv::Store> {
        self.ensure_record_bucket(
            names::OBJECTS_BUCKET,
            "What Herald knows of each Alert and Provider from its deliveries.",
        )
        .await
    }

    /// A key-value bucket of long-lived records (one value per key, kept
    /// 90 days, within the bucket budget).
    async fn ensure_record_bucket(
        &self,
        bucket: &str,
        description: &str,
    ) -> anyhow::Result<async_nats::jetstream::kv::Store> {
        self.jetstream
            .create_or_update_key_value(async_nats::jetstream::kv::Config {
                bucket: bucket.to_owned(),
                description: description.to_owned(),
                history: 1,
                max_age: Duration::from_secs(90 * 86_400),
                max_bytes: budget(self.args.budgets.kv_max_bytes),
                storage: stream::StorageType::File,
                num_replicas: self.args.stream_replicas,
                ..Default::default()
            })
            .await
            .map_err(|e| self.setup_error(bucket, self.args.budgets.kv_max_bytes, &e))
    }

    async fn ensure_stream(&self, config: stream::Config) -> anyhow::Result<()> {
        let name = config.name.clone();
        let max_bytes = u64::try_from(config.max_bytes).unwrap_or(0);
        self.jetstream
            .create_or_update_stream(config)
            .await
            .map_err(|e| self.setup_error(&name, max_bytes, &e))?;
        tracing::debug!(stream = %name, "Stream ready.");
        Ok(())
    }

    /// Sourcing edges needs subject transforms on sources (nats-server
    /// 2.10): an older server would take the configuration and drop the
    /// transforms without a word, leaving every edge to name its own cluster.
    fn check_sources_supported(&self) -> anyhow::Result<()> {
        let version = self.client.server_info().version;
        if !transforms_sources(&version) {
            anyhow::bail!(
                "--edge needs nats-server 2.10 or later (subject transforms on stream sources); \
                 the hub runs {version}"
            );
        }
        Ok(())
    }

    /// The error for a stream or bucket JetStream would not create; when it
    /// lacks the storage for the budget, says which settings to change.
    fn setup_error(
        &self,
        name: &str,
        max_bytes: u64,
        error: &dyn std::fmt::Display,
    ) -> anyhow::Error {
        let text = error.to_string();
        if crate::budget::is_out_of_room(&text) {
            anyhow::anyhow!(
                "cannot create or update {name} with a budget of {} ({} replicas): the NATS \
                 server has not that much JetStream storage left (its max_file_store, less what \
                 other streams reserve; Herald's budgets take {} per replica in all): lower the \
                 --*-max-bytes budgets or give JetStream more storage ({text})",
                format_bytes(max_bytes),
                self.args.stream_replicas,
                format_bytes(self.args.budgets.total()),
            )
        } else if let Some(domain) = &self.args.jetstream_domain
            && (text.contains("no responders") || text.contains("timed out"))
        {
            anyhow::anyhow!(
                "cannot create or update {name}: no JetStream answers in domain {domain} \
                 (--jetstream-domain): connect to the edge's leaf node, whose nats.conf has \
                 `jetstream {{ domain: {domain} }}` ({text})"
            )
        } else {
            anyhow::anyhow!("cannot create or update {name}: {text}")
        }
    }

    /// The largest message the server takes (`max_payload`), headers included.
    #[must_use]
    pub fn max_payload(&self) -> usize {
        self.client.max_payload()
    }

    /// Creates or updates a durable pull consumer and returns it.
    ///
    /// # Errors
    ///
    /// When the stream is missing or JetStream refuses the configuration.
    pub async fn ensure_consumer(
        &self,
        stream_name: &str,
        config: consumer::pull::Config,
    ) -> anyhow::Result<consumer::Consumer<consumer::pull::Config>> {
        let durable = config.durable_name.clone().unwrap_or_default();
        let consumer = self
            .jetstream
            .create_consumer_on_stream(config, stream_name)
            .await
            .map_err(|e| {
                anyhow::anyhow!("cannot create or update consumer {durable} on {stream_name}: {e}")
            })?;
        tracing::debug!(stream = %stream_name, consumer = %durable, "Consumer ready.");
        Ok(consumer)
    }
}

/// Whether a nats-server of `version` (`2.10.26`, `v2.15.1`) applies
/// subject transforms on stream sources (2.10 and later).
fn transforms_sources(version: &str) -> bool {
    let mut parts = version
        .trim_start_matches('v')
        .split(['.', '-'])
        .map(|part| part.parse::<u64>().unwrap_or(0));
    let (major, minor) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (major, minor) >= (2, 10)
}

/// A budget as JetStream takes it: `-1` (none) for 0.
fn budget(bytes: u64) -> i64 {
    if bytes == 0 {
        -1
    } else {
        i64::try_from(bytes).unwrap_or(i64::MAX)
    }
}

/// A durable pull consumer as Herald's services use them: explicit acks,
/// unlimited redelivery (services decide when a message is dead), and at most
/// `max_ack_pending` messages out at once across every replica.
#[must_use]
pub fn durable_consumer(
    name: &str,
    description: &str,
    ack_wait: Duration,
    max_ack_pending: usize,
) -> consumer::pull::Config {
    consumer::pull::Config {
        durable_name: Some(name.to_owned()),
        description: Some(description.to_owned()),
        deliver_policy: consumer::DeliverPolicy::All,
        ack_policy: consumer::AckPolicy::Explicit,
        ack_wait,
        max_deliver: -1,
        max_ack_pending: i64::try_from(max_ack_pending).unwrap_or(i64::MAX),
        ..consumer::pull::Config::default()
    }
}

/// Retries `op` with a capped backoff until it succeeds or `cancel` fires;
/// used at start-up, when NATS may not be up yet. A cancellation does not
/// wait for the attempt in hand (which may wait for NATS for a while).
///
/// # Errors
///
/// The last error, when cancelled before a success.
pub async fn retry_until_ready<T, F, Fut>(
    what: &str,
    cancel: &tokio_util::sync::CancellationToken,
    mut op: F,
) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<T>>,
{
    let mut delay = Duration::from_millis(100);
    loop {
        let attempt = tokio::select! {
            () = cancel.cancelled() => {
                return Err(anyhow::anyhow!("stopped before {what} was set up"));
            }
            attempt = op() => attempt,
        };
        match attempt {
            Ok(value) => return Ok(value),
            Err(error) => {
                tracing::warn!(error = %error, "Cannot set up {what} yet; retrying.");
                tokio::select! {
                    () = cancel.cancelled() => return Err(error),
                    () = tokio::time::sleep(delay) => {}
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn subject_transforms_on_sources_need_nats_server_2_10() {
        for (version, supported) in [
            ("2.15.1", true),
            ("v2.10.0", true),
            ("2.10.26-RC.1", true),
            ("3.0.0", true),
            ("2.9.10", false),
            ("2.2.0", false),
            ("", false),
        ] {
            assert_eq!(super::transforms_sources(version), supported, "{version}");
        }
    }
}
