use super::event;
use crate::git::{
    describe_reason, go_lowercase, name_and_description, object_name, split_camelcase,
};

#[test]
fn reasons_are_described_as_in_the_document() {
    // flux-providers §3.7.
    let table = [
        ("ApplySucceeded", "apply succeeded"),
        ("ReconciliationSucceeded", "reconciliation succeeded"),
        ("HealthCheckFailed", "health check failed"),
        ("reason", "reason"),
        ("ArtifactUpToDate", "artifact up to date"),
        ("V2Update", "v 2 update"),
        ("a_b", "a _ b"),
        ("", ""),
    ];
    for (reason, want) in table {
        assert_eq!(describe_reason(reason), want, "reason {reason:?}");
    }
}

#[test]
fn an_upper_case_run_gives_its_last_rune_to_a_lower_case_run() {
    assert_eq!(split_camelcase("PDFLoader"), ["PDF", "Loader"]);
    assert_eq!(split_camelcase("GitRepository"), ["Git", "Repository"]);
    assert_eq!(split_camelcase("AbC"), ["Ab", "C"]);
    assert_eq!(split_camelcase("Progressing"), ["Progressing"]);
    assert_eq!(split_camelcase("HTTP2Server"), ["HTTP", "2", "Server"]);
    assert!(split_camelcase("").is_empty());
}

#[test]
fn classes_are_general_categories_not_derived_properties() {
    // U+00AA ª is Lo (Rust calls it lowercase), so it is "other" as in Go.
    assert_eq!(split_camelcase("ªb"), ["ª", "b"]);
    // ½ is No (Rust calls it numeric); ٣ (Arabic-Indic three) is Nd.
    assert_eq!(split_camelcase("a½"), ["a", "½"]);
    assert_eq!(split_camelcase("x٣"), ["x", "٣"]);
    // Ⅻ is Nl with the Uppercase property: "other" in Go.
    assert_eq!(split_camelcase("AⅫ"), ["A", "Ⅻ"]);
    assert_eq!(describe_reason("ÉtatRéussi"), "état réussi");
}

#[test]
fn lower_casing_is_go_simple_mapping() {
    assert_eq!(go_lowercase("İ"), "i");
    // No final-sigma rule, unlike str::to_lowercase.
    assert_eq!(go_lowercase("ΟΔΟΣ"), "οδοσ");
    assert_eq!(go_lowercase("Kustomization/GitOps"), "kustomization/gitops");
}

#[test]
fn object_names_are_lower_kind_slash_name() {
    // flux-providers §3.5 `lower(kind/name)`.
    assert_eq!(
        object_name("GitRepository", "WebApp"),
        "gitrepository/webapp"
    );
    // notification-controller TestUtil_NameAndDescription.
    let e = event(
        "Kustomization",
        "flux-system",
        "gitops-system",
        "ApplySucceeded",
        &[],
    );
    assert_eq!(
        name_and_description(&e),
        (
            "kustomization/gitops-system".to_owned(),
            "apply succeeded".to_owned()
        )
    );
}
