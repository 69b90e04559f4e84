use crate::git::{BitbucketServerAddress, parse_bitbucket_server_address};

const SHA: &str = "00151b98e303e19610378e6f1c49e31e5e80cd3b";

fn parse(address: &str) -> BitbucketServerAddress {
    parse_bitbucket_server_address(address).expect("a valid clone URL")
}

#[test]
fn clone_urls_give_the_commits_endpoint() {
    // flux-providers §7.10; the builds URLs are those asserted in
    // bitbucketserver_test.go.
    let table = [
        ("https://example.com:7990/scm/projectfoo/repobar.git", ""),
        (
            "https://example.com:7990/context/scm/projectfoo/repobar.git",
            "/context",
        ),
        (
            "https://example.com:7990/context1/context2/context3/scm/projectfoo/repobar.git",
            "/context1/context2/context3",
        ),
        (
            "https://example.com:7990/scm/scm/projectfoo/repobar.git",
            "/scm",
        ),
        (
            "https://example.com:7990/scm/context2/scm/scm/projectfoo/repobar.git",
            "/scm/context2/scm",
        ),
        ("http://bitbucket.local/scm/projectfoo/repobar", ""),
    ];
    for (address, context) in table {
        let a = parse(address);
        assert_eq!(a.context_path, context, "address {address}");
        assert_eq!(
            (a.project_key.as_str(), a.repo_slug.as_str()),
            ("projectfoo", "repobar")
        );
        let origin = if address.starts_with("http:") {
            "http://bitbucket.local"
        } else {
            "https://example.com:7990"
        };
        let commits =
            format!("{origin}{context}/rest/api/latest/projects/projectfoo/repos/repobar/commits");
        assert_eq!(a.commits_url(), commits);
        assert_eq!(a.builds_url(SHA), format!("{commits}/{SHA}/builds"));
    }
}

#[test]
fn builds_urls_are_escaped_and_cleaned() {
    let a = parse("https://example.com//my%20ctx/scm/PRJ/my%20repo.git");
    assert_eq!(a.context_path, "//my ctx");
    assert_eq!(a.repo_slug, "my repo");
    assert_eq!(
        a.builds_url(SHA),
        format!(
            "https://example.com/my%20ctx/rest/api/latest/projects/PRJ/repos/my%20repo/commits/{SHA}/builds"
        )
    );
}

#[test]
fn bad_addresses_are_rejected_with_flux_texts() {
    let table = [
        (
            "ssh://git@example.com:7999/projectfoo/repobar.git",
            "could not parse git address: unsupported scheme type in address: ssh. Must be http or https",
        ),
        (
            "git@example.com:projectfoo/repobar.git",
            r#"could not parse git address: parse "git@example.com:projectfoo/repobar.git": first path segment in URL cannot contain colon"#,
        ),
        (
            "https://example.com:7990/projectfoo/repobar.git",
            "could not parse git address: supplied provider address is not http(s) git clone url",
        ),
        (
            "https://example.com:7990/scm/projectfoo/repobar/invalid.git",
            r#"could not parse git address: invalid repository id "projectfoo/repobar/invalid""#,
        ),
        (
            "https://example.com:7990/scm/repobar.git",
            r#"could not parse git address: invalid repository id "repobar""#,
        ),
        (
            "https://example.com:abc/scm/projectfoo/repobar.git",
            r#"could not parse git address: parse "https://example.com:abc/scm/projectfoo/repobar.git": invalid port ":abc" after host"#,
        ),
        (
            "https://example.com/scm/p/r%zz.git",
            r#"could not parse git address: parse "https://example.com/scm/p/r%zz.git": invalid URL escape "%zz""#,
        ),
        (
            "https://exa mple.com/scm/p/r.git",
            r#"could not parse git address: parse "https://exa mple.com/scm/p/r.git": invalid character " " in host name"#,
        ),
        (
            "https://us er@example.com/scm/p/r.git",
            r#"could not parse git address: parse "https://us er@example.com/scm/p/r.git": net/url: invalid userinfo"#,
        ),
        (
            "://example.com/scm/p/r.git",
            r#"could not parse git address: parse "://example.com/scm/p/r.git": missing protocol scheme"#,
        ),
        (
            "https://example.com/scm/p/r\n.git",
            r#"could not parse git address: parse "https://example.com/scm/p/r\n.git": net/url: invalid control character in URL"#,
        ),
    ];
    for (address, want) in table {
        let err = parse_bitbucket_server_address(address).unwrap_err();
        assert_eq!(err.to_string(), want, "address {address:?}");
    }
}
