//! Repository address parsing (flux-providers §7.4 `parseGitAddress` over
//! chainguard `git-urls`) and each host's reading of the repository path.

use std::sync::LazyLock;

use regex::Regex;

use super::gourl::{self, path_segment_escape};
use super::{GitError, GitHost};

/// The git transports `git-urls` accepts as URL schemes.
const TRANSPORTS: [&str; 9] = [
    "ssh", "git", "git+ssh", "http", "https", "ftp", "ftps", "rsync", "file",
];

/// The longest address `git-urls` tries as SCP-like (a ReDoS guard).
const MAX_SCP_LEN: usize = 2048;

/// git-urls' `scpSyntax`: `[user@]host:path[?query]`. The empty alternative
/// in `(?:\?||$)` always matches, so a path stops at the first character
/// outside its class and the rest is taken as the query.
static SCP_SYNTAX: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^([a-zA-Z0-9-._~]+@)?([a-zA-Z0-9._-]+):([a-zA-Z0-9./._-]+)(?:\?||$)(.*)$")
        .expect("scpSyntax is a valid regex")
});

/// A repository address split the way `parseGitAddress` splits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GitAddress {
    /// `{scheme}://{host[:port]}`, with `ssh` rewritten to `https`, e.g.
    /// `https://github.com` or `http://gitea.local:3000`.
    pub scheme_host: String,
    /// The path without its leading slashes and one trailing `.git`, e.g.
    /// `foo/bar` or `group/sub/project`.
    pub id: String,
}

/// An Azure DevOps repository (`{org}/{project}/_git/{repo}`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AzureDevOpsRepo {
    /// `{host}/{org}` lower-cased with trailing `/` trimmed, as the SDK
    /// normalises it, e.g. `https://dev.azure.com/foo`.
    pub org_url: String,
    /// The organization, as written.
    pub organization: String,
    /// The project, as written.
    pub project: String,
    /// The repository, as written.
    pub repository: String,
}

/// `parseGitAddress`: a standard URL whose scheme is a git transport, else an
/// SCP-like `[user@]host:path`, else a local path (scheme `file`, no host).
///
/// `ssh` becomes `https`; every other scheme is kept (so `http://` for a
/// self-hosted Gitea works) and so is a port, even an SSH one. User-info and
/// query are dropped; the path is percent-decoded as Go's `url.Parse` does.
///
/// # Errors
///
/// None in practice: like git-urls, the local-path fallback accepts any
/// string. The `Result` keeps the shape of the Go function.
pub fn parse_git_address(address: &str) -> Result<GitAddress, GitError> {
    let (scheme, host, path) = match gourl::parse(address) {
        Ok(url) if TRANSPORTS.contains(&url.scheme.as_str()) => (url.scheme, url.host, url.path),
        _ => match scp(address) {
            Some((host, path)) => ("ssh".to_owned(), host.to_owned(), path.to_owned()),
            None => ("file".to_owned(), String::new(), address.to_owned()),
        },
    };
    let scheme = if scheme == "ssh" {
        "https".to_owned()
    } else {
        scheme
    };
    let id = path.trim_start_matches('/');
    let id = id.strip_suffix(".git").unwrap_or(id);
    Ok(GitAddress {
        scheme_host: format!("{scheme}://{host}"),
        id: id.to_owned(),
    })
}

/// git-urls' `ParseScp`: the host and path of an SCP-like address.
fn scp(address: &str) -> Option<(&str, &str)> {
    if address.len() > MAX_SCP_LEN {
        return None;
    }
    let caps = SCP_SYNTAX.captures(address)?;
    Some((caps.get(2)?.as_str(), caps.get(3)?.as_str()))
}

/// GitLab's project path escaping: Go's `url.PathEscape`, then `.` → `%2E`
/// (`foo/bar` → `foo%2Fbar`, `grp/sub.proj` → `grp%2Fsub%2Eproj`).
#[must_use]
pub fn gitlab_path_escape(project: &str) -> String {
    path_segment_escape(project).replace('.', "%2E")
}

// === impl GitAddress ===

impl GitAddress {
    /// The `{host[:port]}` part of [`scheme_host`](Self::scheme_host).
    #[must_use]
    pub fn host(&self) -> &str {
        self.scheme_host
            .split_once("://")
            .map_or("", |(_, host)| host)
    }

    /// The `(owner, repo)` of a GitHub-family or Gitea-family address: the id
    /// must split into exactly two parts at `/` (either may be empty, as in
    /// Go). Bitbucket Cloud reads `(workspace, repo_slug)` the same way.
    ///
    /// # Errors
    ///
    /// [`GitError::InvalidRepositoryId`], worded for `host`: GitHub
    /// `invalid repository id: '{id}'`, the others `invalid repository id "{id}"`.
    pub fn owner_repo(&self, host: GitHost) -> Result<(&str, &str), GitError> {
        match self.id.split('/').collect::<Vec<_>>()[..] {
            [owner, repo] => Ok((owner, repo)),
            _ => Err(self.invalid(host)),
        }
    }

    /// The GitLab project: the whole id, sub-groups included, or a numeric
    /// project id; [`gitlab_path_escape`]d for use in an API path.
    #[must_use]
    pub fn gitlab_project(&self) -> String {
        gitlab_path_escape(&self.id)
    }

    /// The Azure DevOps repository: the id must have exactly four parts
    /// `{org}/{project}/{anything}/{repo}`.
    ///
    /// # Errors
    ///
    /// [`GitError::InvalidRepositoryId`] otherwise (e.g. the three-part
    /// legacy `{org}.visualstudio.com/{project}/_git/{repo}`).
    pub fn azure_devops_repo(&self) -> Result<AzureDevOpsRepo, GitError> {
        match self.id.split('/').collect::<Vec<_>>()[..] {
            [org, project, _, repo] => {
                let org_url = format!("{}/{org}", self.scheme_host);
                Ok(AzureDevOpsRepo {
                    org_url: super::go_lowercase(org_url.trim_end_matches('/')),
                    organization: org.to_owned(),
                    project: project.to_owned(),
                    repository: repo.to_owned(),
                })
            }
            _ => Err(self.invalid(GitHost::AzureDevOps)),
        }
    }

    /// The GitHub REST API base, ending in `/`: `https://api.github.com/` when
    /// the host is exactly `github.com`, else go-github's Enterprise rule:
    /// `{scheme_host}/api/v3/`, or `{scheme_host}/` when the host starts with
    /// `api.` or contains `.api.`.
    #[must_use]
    pub fn github_api_base(&self) -> String {
        let host = self.host();
        if host == "github.com" {
            "https://api.github.com/".to_owned()
        } else if host.starts_with("api.") || host.contains(".api.") {
            format!("{}/", self.scheme_host)
        } else {
            format!("{}/api/v3/", self.scheme_host)
        }
    }

    /// The GitLab REST API base, `{scheme_host}/api/v4/`.
    #[must_use]
    pub fn gitlab_api_base(&self) -> String {
        format!("{}/api/v4/", self.scheme_host)
    }

    fn invalid(&self, host: GitHost) -> GitError {
        GitError::InvalidRepositoryId {
            host,
            id: self.id.clone(),
        }
    }
}
