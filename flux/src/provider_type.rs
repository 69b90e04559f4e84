//! Every Provider `spec.type` the notification-controller's CRD accepts: the
//! one list of types in Herald. Validation, Flux's dispatch gating, and each
//! type's default pacing come from here.

use std::fmt;
use std::str::FromStr;

/// What kind of destination a type is, for Flux's gating (flux-providers §1.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Category {
    /// Chat and incident messages: every event the Alert matches, but
    /// Kustomization "commit status update" events.
    Message,
    /// The whole event forwarded (`generic`, `generic-hmac`): every event.
    Forward,
    /// Commit statuses on a git host: errors, commit status updates and
    /// events with a `commit` annotation.
    CommitStatus,
    /// Comments on a pull or merge request: events with a `change_request`
    /// annotation.
    ChangeRequest,
}

macro_rules! provider_types {
    ($($variant:ident = $name:literal, $category:ident;)+) => {
        /// A Provider `spec.type`.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum ProviderType {
            $(#[doc = concat!("`", $name, "`")] $variant,)+
        }

        impl ProviderType {
            /// Every type, in the CRD's order.
            pub const ALL: &'static [ProviderType] = &[$(ProviderType::$variant,)+];

            /// The `spec.type` value.
            #[must_use]
            pub fn as_str(self) -> &'static str {
                match self {
                    $(ProviderType::$variant => $name,)+
                }
            }

            /// Its category for Flux's gating.
            #[must_use]
            pub fn category(self) -> Category {
                match self {
                    $(ProviderType::$variant => Category::$category,)+
                }
            }
        }

        impl FromStr for ProviderType {
            type Err = UnknownType;

            fn from_str(text: &str) -> Result<Self, UnknownType> {
                match text {
                    $($name => Ok(ProviderType::$variant),)+
                    other => Err(UnknownType(other.to_owned())),
                }
            }
        }
    };
}

provider_types! {
    Slack = "slack", Message;
    Discord = "discord", Message;
    MsTeams = "msteams", Message;
    Rocket = "rocket", Message;
    Generic = "generic", Forward;
    GenericHmac = "generic-hmac", Forward;
    GitHub = "github", CommitStatus;
    GitLab = "gitlab", CommitStatus;
    Gitea = "gitea", CommitStatus;
    GiteaPullRequestComment = "giteapullrequestcomment", ChangeRequest;
    BitbucketServer = "bitbucketserver", CommitStatus;
    Bitbucket = "bitbucket", CommitStatus;
    AzureDevOps = "azuredevops", CommitStatus;
    GoogleChat = "googlechat", Message;
    GooglePubSub = "googlepubsub", Message;
    Webex = "webex", Message;
    Sentry = "sentry", Message;
    AzureEventHub = "azureeventhub", Message;
    Telegram = "telegram", Message;
    Lark = "lark", Message;
    Matrix = "matrix", Message;
    Opsgenie = "opsgenie", Message;
    Alertmanager = "alertmanager", Message;
    Grafana = "grafana", Message;
    GitHubDispatch = "githubdispatch", Message;
    GitHubPullRequestComment = "githubpullrequestcomment", ChangeRequest;
    GitLabMergeRequestComment = "gitlabmergerequestcomment", ChangeRequest;
    PagerDuty = "pagerduty", Message;
    Datadog = "datadog", Message;
    Nats = "nats", Message;
    Zulip = "zulip", Message;
    Otel = "otel", Message;
    Zoom = "zoom", Message;
    IncidentIo = "incident.io", Message;
}

/// A `spec.type` that is not a Flux provider type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown provider type {0:?}")]
pub struct UnknownType(pub String);

impl fmt::Display for ProviderType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl ProviderType {
    /// Whether it writes commit statuses.
    #[must_use]
    pub fn is_commit_status(self) -> bool {
        self.category() == Category::CommitStatus
    }

    /// The steady rate Herald keeps per destination of this type by default
    /// (messages per second), from the vendor's documented limits; `None`
    /// when the vendor documents none that a Flux installation could reach.
    /// Each is overridable with `--pace`; the README lists them with sources.
    #[must_use]
    pub fn default_pace(self) -> Option<f64> {
        match self {
            // One message per second per channel (Slack's chat.postMessage
            // and incoming webhooks).
            Self::Slack => Some(1.0),
            // Teams connectors and Workflows: about 4 requests per second
            // per webhook.
            Self::MsTeams => Some(4.0),
            // Discord webhooks: 30 messages per minute per channel.
            Self::Discord => Some(0.5),
            // Telegram bots: 1 message per second per chat, 20 per minute
            // per group (Flux alerts usually go to groups).
            Self::Telegram => Some(20.0 / 60.0),
            // Google Chat: 1 write per second per space.
            Self::GoogleChat => Some(1.0),
            // Lark custom bots: 100 per minute, 5 per second.
            Self::Lark => Some(100.0 / 60.0),
            // Synapse's default rc_message: 0.2 per second per user.
            Self::Matrix => Some(0.2),
            // PagerDuty's Events API: about 120 events per minute per
            // routing key; an info event is two (resolve, change event).
            Self::PagerDuty => Some(1.0),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_type_round_trips_and_there_are_34() {
        assert_eq!(ProviderType::ALL.len(), 34);
        for t in ProviderType::ALL {
            assert_eq!(t.as_str().parse::<ProviderType>(), Ok(*t));
        }
        assert!("Slack".parse::<ProviderType>().is_err());
        assert_eq!(
            "incident.io".parse::<ProviderType>(),
            Ok(ProviderType::IncidentIo)
        );
    }

    #[test]
    fn categories_follow_flux_gating() {
        let of = |c: Category| {
            ProviderType::ALL
                .iter()
                .filter(|t| t.category() == c)
                .map(|t| t.as_str())
                .collect::<Vec<_>>()
        };
        assert_eq!(
            of(Category::CommitStatus),
            [
                "github",
                "gitlab",
                "gitea",
                "bitbucketserver",
                "bitbucket",
                "azuredevops"
            ]
        );
        assert_eq!(of(Category::Forward), ["generic", "generic-hmac"]);
        assert_eq!(
            of(Category::ChangeRequest),
            [
                "giteapullrequestcomment",
                "githubpullrequestcomment",
                "gitlabmergerequestcomment"
            ]
        );
    }
}
