use proptest::prelude::*;

use crate::git::{AzureDevOpsRepo, GitAddress, GitHost, gitlab_path_escape, parse_git_address};

fn parse(address: &str) -> GitAddress {
    parse_git_address(address).expect("git-urls accepts every address")
}

fn split(address: &str) -> (String, String) {
    let a = parse(address);
    (a.scheme_host, a.id)
}

#[test]
fn addresses_split_as_in_the_document_table() {
    // flux-providers §7.4 (asserted in util_test.go).
    let table = [
        (
            "https://github.com/foo/bar",
            "https://github.com",
            "foo/bar",
        ),
        (
            "https://example.com/foo/bar",
            "https://example.com",
            "foo/bar",
        ),
        (
            "https://gitlab.com/foo/bar.git",
            "https://gitlab.com",
            "foo/bar",
        ),
        (
            "git@gitlab.com:foo/bar.git",
            "https://gitlab.com",
            "foo/bar",
        ),
        (
            "ssh://git@github.com/stefanprodan/podinfo",
            "https://github.com",
            "stefanprodan/podinfo",
        ),
        (
            "https://gitlab.com/foo/bar/foo.git",
            "https://gitlab.com",
            "foo/bar/foo",
        ),
    ];
    for (address, host, id) in table {
        assert_eq!(
            split(address),
            (host.to_owned(), id.to_owned()),
            "address {address}"
        );
    }
}

#[test]
fn schemes_ports_and_paths_follow_git_urls() {
    let table = [
        // Every scheme but ssh is kept: self-hosted Gitea over http.
        (
            "http://gitea.local:3000/foo/bar",
            "http://gitea.local:3000",
            "foo/bar",
        ),
        (
            "git+ssh://git@example.com/foo/bar",
            "git+ssh://example.com",
            "foo/bar",
        ),
        (
            "git://example.com/foo/bar.git",
            "git://example.com",
            "foo/bar",
        ),
        (
            "HTTPS://GitHub.com/Foo/Bar",
            "https://GitHub.com",
            "Foo/Bar",
        ),
        // An SSH port is kept verbatim (a known limitation).
        (
            "ssh://git@gitlab.example.com:2222/foo/bar.git",
            "https://gitlab.example.com:2222",
            "foo/bar",
        ),
        // SCP-like without a user.
        ("github.com:foo/bar.git", "https://github.com", "foo/bar"),
        // One `.git` is stripped, all leading slashes are.
        (
            "https://example.com/foo/bar.git.git",
            "https://example.com",
            "foo/bar.git",
        ),
        (
            "https://github.com///foo/bar",
            "https://github.com",
            "foo/bar",
        ),
        // User-info, query and fragment are dropped; the path is decoded.
        (
            "https://user:pass@github.com/foo/bar?ref=main#x",
            "https://github.com",
            "foo/bar",
        ),
        (
            "https://gitlab.com/foo%20bar/baz",
            "https://gitlab.com",
            "foo bar/baz",
        ),
        // A numeric GitLab project id.
        ("https://gitlab.com/1234", "https://gitlab.com", "1234"),
        // Local paths.
        ("/srv/git/repo.git", "file://", "srv/git/repo"),
        ("file:///srv/git/repo.git", "file://", "srv/git/repo"),
        ("", "file://", ""),
        // Not a transport: tried as SCP-like, host = scheme.
        (
            "gopher://example.com/foo/bar",
            "https://gopher",
            "example.com/foo/bar",
        ),
        // A bad port fails url.Parse; the SCP regex then stops the path at
        // the `:` and takes the rest as the query.
        ("https://github.com:abc/foo", "https://https", "github.com"),
        // A bad escape fails url.Parse the same way.
        (
            "https://gitlab.com/foo%zz/bar",
            "https://https",
            "gitlab.com/foo",
        ),
    ];
    for (address, host, id) in table {
        assert_eq!(
            split(address),
            (host.to_owned(), id.to_owned()),
            "address {address}"
        );
    }
}

#[test]
fn github_and_gitea_need_owner_and_repo() {
    let a = parse("https://github.com/foo/bar");
    assert_eq!(a.owner_repo(GitHost::GitHub), Ok(("foo", "bar")));
    assert_eq!(a.owner_repo(GitHost::Gitea), Ok(("foo", "bar")));
    let deep = parse("https://github.com/foo/bar/baz");
    let err = |host| deep.owner_repo(host).unwrap_err().to_string();
    assert_eq!(err(GitHost::GitHub), "invalid repository id: 'foo/bar/baz'");
    assert_eq!(
        err(GitHost::Gitea),
        r#"invalid repository id "foo/bar/baz""#
    );
    // Bitbucket Cloud reads workspace/repo_slug and ignores the host.
    assert_eq!(
        err(GitHost::Bitbucket),
        r#"invalid repository id "foo/bar/baz""#
    );
    let bb = parse("https://bitbucket.org/workspace/repo.git");
    assert_eq!(bb.owner_repo(GitHost::Bitbucket), Ok(("workspace", "repo")));
    let short = parse("https://github.com/foo");
    assert_eq!(
        short.owner_repo(GitHost::GitHub).unwrap_err().to_string(),
        "invalid repository id: 'foo'"
    );
    // Go's strings.Split: an empty part still counts.
    assert_eq!(
        parse("https://github.com/foo/").owner_repo(GitHost::GitHub),
        Ok(("foo", ""))
    );
    // %q quoting of odd ids.
    let quoted = parse("https://gitea.io/a/b/\"c\"");
    assert_eq!(
        quoted.owner_repo(GitHost::Gitea).unwrap_err().to_string(),
        r#"invalid repository id "a/b/\"c\"""#
    );
}

#[test]
fn gitlab_projects_are_path_escaped_with_dots() {
    // flux-providers §7.7.
    assert_eq!(gitlab_path_escape("foo/bar"), "foo%2Fbar");
    assert_eq!(gitlab_path_escape("grp/sub.proj"), "grp%2Fsub%2Eproj");
    assert_eq!(gitlab_path_escape("1234"), "1234");
    assert_eq!(gitlab_path_escape("a b/c~d_e-f"), "a%20b%2Fc~d_e-f");
    assert_eq!(gitlab_path_escape("ü;,?"), "%C3%BC%3B%2C%3F");
    let a = parse("https://gitlab.com/foo/bar/foo.git");
    assert_eq!(a.gitlab_project(), "foo%2Fbar%2Ffoo");
    assert_eq!(a.gitlab_api_base(), "https://gitlab.com/api/v4/");
}

#[test]
fn azure_devops_needs_four_parts() {
    // flux-providers §7.11.
    let repo = parse("https://dev.azure.com/foo/bar/_git/baz").azure_devops_repo();
    let want = AzureDevOpsRepo {
        org_url: "https://dev.azure.com/foo".into(),
        organization: "foo".into(),
        project: "bar".into(),
        repository: "baz".into(),
    };
    assert_eq!(repo, Ok(want));
    // The org URL is lower-cased; project and repo keep their case.
    let mixed = parse("https://Dev.Azure.com/MyOrg/My Project/_git/Repo").azure_devops_repo();
    let mixed = mixed.expect("four parts");
    assert_eq!(mixed.org_url, "https://dev.azure.com/myorg");
    assert_eq!(
        (mixed.project.as_str(), mixed.repository.as_str()),
        ("My Project", "Repo")
    );
    let legacy = parse("https://org.visualstudio.com/project/_git/repo").azure_devops_repo();
    assert_eq!(
        legacy.unwrap_err().to_string(),
        r#"invalid repository id "project/_git/repo""#
    );
}

#[test]
fn github_api_base_follows_go_github() {
    // flux-providers §7.6.
    let table = [
        ("https://github.com/foo/bar", "https://api.github.com/"),
        ("git@github.com:foo/bar.git", "https://api.github.com/"),
        ("http://github.com/foo/bar", "https://api.github.com/"),
        (
            "https://ghe.example.com/foo/bar",
            "https://ghe.example.com/api/v3/",
        ),
        (
            "https://github.com:443/foo/bar",
            "https://github.com:443/api/v3/",
        ),
        ("https://GitHub.com/foo/bar", "https://GitHub.com/api/v3/"),
        (
            "https://api.ghe.example.com/foo/bar",
            "https://api.ghe.example.com/",
        ),
        (
            "https://ghe.api.example.com/foo/bar",
            "https://ghe.api.example.com/",
        ),
    ];
    for (address, base) in table {
        assert_eq!(parse(address).github_api_base(), base, "address {address}");
    }
}

fn host() -> impl Strategy<Value = String> {
    (
        "[a-z][a-z0-9-]{0,15}(\\.[a-z]{2,6}){1,2}",
        prop::option::of(1u16..),
    )
        .prop_map(|(name, port)| port.map_or(name.clone(), |p| format!("{name}:{p}")))
}

fn segment() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_-][A-Za-z0-9_.-]{0,19}"
        .prop_filter("a repo named *.git loses it", |s| !s.ends_with(".git"))
}

proptest! {
    #[test]
    fn https_addresses_round_trip(
        host in host(), owner in segment(), repo in segment(), dot_git in any::<bool>(),
    ) {
        let suffix = if dot_git { ".git" } else { "" };
        let a = parse(&format!("https://{host}/{owner}/{repo}{suffix}"));
        prop_assert_eq!(&a.scheme_host, &format!("https://{host}"));
        prop_assert_eq!(&a.id, &format!("{owner}/{repo}"));
        prop_assert_eq!(a.host(), host.as_str());
        prop_assert_eq!(a.owner_repo(GitHost::GitHub), Ok((owner.as_str(), repo.as_str())));

        let bare = host.split(':').next().unwrap_or_default();
        let scp = parse(&format!("git@{bare}:{owner}/{repo}{suffix}"));
        prop_assert_eq!(scp.scheme_host, format!("https://{bare}"));
        prop_assert_eq!(scp.id, format!("{owner}/{repo}"));
    }
}
