//! Bitbucket Server / Data Center addresses (flux-providers §7.10
//! `parseBitbucketServerGitAddress`): HTTP(S) clone URLs with `/scm/`.

use super::gourl::{self, clean_path, path_escape};
use super::{GitError, GitHost};

/// The path segment every Bitbucket Server HTTP(S) clone URL has.
const SCM: &str = "/scm/";

/// A Bitbucket Server repository taken from its HTTP(S) clone URL, e.g.
/// `https://example.com:7990/context/scm/projectfoo/repobar.git`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BitbucketServerAddress {
    /// `http` or `https`.
    pub scheme: String,
    /// `host[:port]`.
    pub host: String,
    /// The context path: everything before the last `/scm/` (may be empty).
    pub context_path: String,
    /// The project key.
    pub project_key: String,
    /// The repository slug.
    pub repo_slug: String,
}

/// Parses a Bitbucket Server clone URL: scheme `http`/`https`, one trailing
/// `.git` stripped, the text after the LAST `/scm/` must be exactly
/// `{projectKey}/{repoSlug}`, and the text before it is the context path.
///
/// # Errors
///
/// [`GitError::BitbucketServerAddress`] (`could not parse git address: …`)
/// for an unparsable URL, a scheme other than http(s) or a path without
/// `/scm/`; [`GitError::InvalidRepositoryId`] for a remainder that is not two
/// segments.
pub fn parse_bitbucket_server_address(address: &str) -> Result<BitbucketServerAddress, GitError> {
    let url = gourl::parse(address).map_err(GitError::BitbucketServerAddress)?;
    if url.scheme != "http" && url.scheme != "https" {
        return Err(GitError::BitbucketServerAddress(format!(
            "unsupported scheme type in address: {}. Must be http or https",
            url.scheme
        )));
    }
    let path = url.path.strip_suffix(".git").unwrap_or(&url.path);
    let Some(at) = path.rfind(SCM) else {
        return Err(GitError::BitbucketServerAddress(
            "supplied provider address is not http(s) git clone url".to_owned(),
        ));
    };
    let (context_path, id) = (&path[..at], &path[at + SCM.len()..]);
    let [project_key, repo_slug] = id.split('/').collect::<Vec<_>>()[..] else {
        return Err(GitError::InvalidRepositoryId {
            host: GitHost::BitbucketServer,
            id: id.to_owned(),
        });
    };
    Ok(BitbucketServerAddress {
        scheme: url.scheme.clone(),
        host: url.host.clone(),
        context_path: context_path.to_owned(),
        project_key: project_key.to_owned(),
        repo_slug: repo_slug.to_owned(),
    })
}

impl BitbucketServerAddress {
    /// The commits endpoint,
    /// `{scheme}://{host}{context}/rest/api/latest/projects/{key}/repos/{slug}/commits`.
    #[must_use]
    pub fn commits_url(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme,
            self.host,
            path_escape(&self.commits_path())
        )
    }

    /// The build-status endpoint of a commit, `{commits_url}/{sha}/builds`,
    /// with the path cleaned as Go's `URL.JoinPath` does.
    #[must_use]
    pub fn builds_url(&self, sha: &str) -> String {
        let path = clean_path(&format!("{}/{sha}/builds", self.commits_path()));
        format!("{}://{}{}", self.scheme, self.host, path_escape(&path))
    }

    fn commits_path(&self) -> String {
        format!(
            "{}/rest/api/latest/projects/{}/repos/{}/commits",
            self.context_path, self.project_key, self.repo_slug
        )
    }
}
