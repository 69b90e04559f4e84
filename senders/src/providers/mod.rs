//! The provider contract. A provider turns its [`Input`] (the event after
//! the metadata rules, the resolved Provider and Secret values) into a
//! [`Plan`]: nothing to send (with why), one request and how its answer is
//! judged, a commit status, or a multi-step exchange. [`registry`] maps every
//! Flux provider type to its provider, exhaustively; the transport
//! ([`crate::http`]) sends requests and the classifier
//! ([`crate::classify`]) judges answers, so a provider only builds.
//!
//! Adding a type: its module (a unit struct implementing [`Provider`]), one
//! line in [`registry`], its fake in `tests/`, one row in its category's
//! table test, and its row in the README.

mod alertmanager;
mod azure_eventhub;
mod datadog;
mod discord;
mod generic;
mod git;
mod google_pubsub;
mod googlechat;
mod grafana;
mod incident_io;
mod lark;
mod matrix;
mod msteams;
mod nats;
mod opsgenie;
mod otel;
mod pagerduty;
mod rocket;
mod sentry;
mod shared;
mod slack;
mod slack_thread;
mod telegram;
mod webex;
mod zoom;
mod zulip;

use std::future::Future;
use std::pin::Pin;

use herald_flux::{FluxEvent, ProviderType};

use crate::config::Resolved;
use crate::http::{HttpSender, Request};
use crate::outcome::Outcome;

/// What a provider builds from.
pub struct Input<'a> {
    /// The event, with the Alert's metadata merged in.
    pub event: &'a FluxEvent,
    /// The Alert that matched the event.
    pub alert: &'a AlertIdentity,
    /// The Provider and its Secrets' values.
    pub resolved: &'a Resolved,
    /// The commit status identifier (its `commitStatusExpr`, evaluated only
    /// when a commit-status provider asks).
    pub identifier: &'a dyn Fn() -> Result<String, String>,
    /// Set when the Alert or its Provider asks for Slack threads
    /// (`herald.dev/slack-thread`).
    pub thread: Option<ThreadScope<'a>>,
}

/// What places a delivery in its Slack thread beyond the event and the
/// Provider: the cluster the event came from, the delivery (so that a
/// redelivery is not posted twice) and the event's time (the root shows the
/// newest event).
#[derive(Debug, Clone, Copy)]
pub struct ThreadScope<'a> {
    pub cluster: &'a str,
    pub delivery_id: &'a str,
    pub event_unix_nanos: i64,
}

impl Input<'_> {
    /// The commit status identifier.
    ///
    /// # Errors
    ///
    /// When `commitStatusExpr` cannot be evaluated.
    pub fn identifier(&self) -> Result<String, ProviderError> {
        (self.identifier)().map_err(ProviderError::Identifier)
    }
}

/// The Alert a delivery is for, as providers that name it see it (`otel`
/// makes a trace per Alert).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AlertIdentity {
    pub namespace: String,
    pub name: String,
    /// `metadata.uid`, or one derived from the namespace and name.
    pub uid: String,
}

/// The clients a planned write or exchange talks through, shared by every
/// delivery of a sender (connections and credentials are reused).
#[derive(Debug, Clone, Default)]
pub struct Clients {
    /// HTTP clients per proxy and TLS settings.
    pub http: HttpSender,
    /// Access tokens got by an exchange (GitHub App, Google, Entra ID).
    pub tokens: crate::tokens::Tokens,
    /// NATS connections per server and credentials.
    pub nats: nats::NatsConnections,
    /// Slack thread roots (HERALD_THREADS) and pacing per call; without
    /// them, threaded messages are posted unthreaded.
    pub threads: Option<crate::threads::Threads>,
}

/// What a delivery turns into.
pub enum Plan {
    /// Nothing to send, on purpose (e.g. a `Progressing` event for a git host).
    Skip(&'static str),
    /// One request.
    Request(Request),
    /// A commit status, written only if no newer event's status was.
    CommitStatus(CommitStatusPlan),
    /// Several requests run as one attempt (a repository dispatch, a
    /// change-request comment).
    Exchange(Box<dyn Exchange>),
}

/// A commit status to write.
pub struct CommitStatusPlan {
    /// `scheme://host/owner/repo`: with `sha` and `identifier`, what
    /// "never backwards" is kept per.
    pub repository: String,
    pub sha: String,
    pub identifier: String,
    /// How the host writes it.
    pub write: Box<dyn StatusWrite>,
}

/// The future a [`StatusWrite`] or [`Exchange`] returns.
pub type Writing<'a> = Pin<Box<dyn Future<Output = Outcome> + Send + 'a>>;

/// How one git host writes a planned status: read the current one, skip an
/// equal one, write otherwise. Holds a token: never log it.
pub trait StatusWrite: Send + Sync {
    /// Writes the status (or finds it already written).
    fn apply<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a>;
}

/// A planned exchange of several requests: its requests and how their
/// answers are judged. Holds a token: never log it.
pub trait Exchange: Send + Sync {
    /// Runs the requests; the outcome of the attempt.
    fn run<'a>(&'a self, clients: &'a Clients, resolved: &'a Resolved) -> Writing<'a>;

    /// Whether it takes the destination's turn before each of its calls
    /// itself (else the sender takes one turn before it runs).
    fn paces_itself(&self) -> bool {
        false
    }
}

/// A provider type's builder.
pub trait Provider: Sync {
    /// What to send for `input`.
    ///
    /// # Errors
    ///
    /// Why this Provider cannot send, for the dead letter.
    fn plan(&self, input: &Input<'_>) -> Result<Plan, ProviderError>;
}

/// Why a Provider cannot send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// A `spec.type` that is not a Flux provider type.
    #[error("provider type {0:?} is not a Flux provider type")]
    Unsupported(String),
    /// No address where one is needed.
    #[error("{what}: no address: set spec.address or the Secret's address")]
    NoAddress { what: String },
    /// An address that is not an absolute http(s) URL.
    #[error("{what}: invalid address {shown}: {reason}")]
    BadAddress {
        what: String,
        /// The address as logs may show it.
        shown: String,
        reason: String,
    },
    /// A required setting is empty.
    #[error("{what}: {missing}")]
    Missing { what: String, missing: String },
    /// A setting has a value the type cannot use.
    #[error("{what}: {problem}")]
    Invalid { what: String, problem: String },
    /// The commit status identifier (`commitStatusExpr`) failed.
    #[error("{0}")]
    Identifier(String),
}

impl ProviderError {
    /// A required setting of `what` is empty; `missing` says which.
    pub fn missing(what: impl Into<String>, missing: impl Into<String>) -> Self {
        Self::Missing {
            what: what.into(),
            missing: missing.into(),
        }
    }

    /// A setting of `what` cannot be used; `problem` says why.
    pub fn invalid(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid {
            what: what.into(),
            problem: problem.into(),
        }
    }
}

/// Why `resolved` cannot thread Slack messages (threads need Slack's Web
/// API), or `None` when it can.
#[must_use]
pub fn slack_thread_unsupported(resolved: &Resolved) -> Option<String> {
    slack_thread::unsupported(resolved)
}

/// The provider of each Flux type. Exhaustive: a new [`ProviderType`] must
/// be given its provider here.
#[must_use]
pub fn registry(provider_type: ProviderType) -> &'static dyn Provider {
    use ProviderType as T;
    match provider_type {
        T::Slack => &slack::Slack,
        T::Discord => &discord::Discord,
        T::MsTeams => &msteams::MsTeams,
        T::Rocket => &rocket::Rocket,
        T::Generic => &generic::Generic { hmac: false },
        T::GenericHmac => &generic::Generic { hmac: true },
        T::GitHub => &git::CommitStatus(git::github::plan),
        T::GitLab => &git::CommitStatus(git::gitlab::plan),
        T::Gitea => &git::CommitStatus(git::gitea::plan),
        T::Bitbucket => &git::CommitStatus(git::bitbucket::plan),
        T::BitbucketServer => &git::CommitStatus(git::bitbucket_server::plan),
        T::AzureDevOps => &git::CommitStatus(git::azure_devops::plan),
        T::GitHubDispatch => &git::github_dispatch::GitHubDispatch,
        T::GitHubPullRequestComment | T::GitLabMergeRequestComment | T::GiteaPullRequestComment => {
            &git::pull_request_comment::PullRequestComment
        }
        T::Grafana => &grafana::Grafana,
        T::Webex => &webex::Webex,
        T::Lark => &lark::Lark,
        T::Zoom => &zoom::Zoom,
        T::IncidentIo => &incident_io::IncidentIo,
        T::Telegram => &telegram::Telegram,
        T::Matrix => &matrix::Matrix,
        T::Zulip => &zulip::Zulip,
        T::GoogleChat => &googlechat::GoogleChat,
        T::PagerDuty => &pagerduty::PagerDuty,
        T::Opsgenie => &opsgenie::Opsgenie,
        T::Datadog => &datadog::Datadog,
        T::Sentry => &sentry::Sentry,
        T::GooglePubSub => &google_pubsub::GooglePubSub,
        T::Alertmanager => &alertmanager::Alertmanager,
        T::Otel => &otel::Otel,
        T::Nats => &nats::Nats,
        T::AzureEventHub => &azure_eventhub::AzureEventHub,
    }
}

/// Plans what to send for `input` with its type's provider.
///
/// # Errors
///
/// Why this Provider cannot send, for the dead letter.
pub fn plan(input: &Input<'_>) -> Result<Plan, ProviderError> {
    let provider_type = &input.resolved.provider_type;
    provider_type
        .parse::<ProviderType>()
        .map(registry)
        .map_err(|_| ProviderError::Unsupported(provider_type.clone()))?
        .plan(input)
}
