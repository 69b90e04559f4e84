use super::*;

fn event() -> FluxEvent {
    let mut event = FluxEvent::from_json(
        br#"{"involvedObject":{"kind":"Kustomization","namespace":"apps","name":"web",
            "uid":"u-1","apiVersion":"kustomize.toolkit.fluxcd.io/v1"},
            "severity":"error","timestamp":"2024-03-05T14:07:09Z",
            "message":"Health check failed\nafter 5m","reason":"HealthCheckFailed",
            "reportingController":"kustomize-controller","reportingInstance":"kc-1"}"#,
    )
    .unwrap();
    event.metadata.insert(
        "revision".to_owned(),
        "main@sha1:0123456789abcdef".to_owned(),
    );
    event
}

fn data() -> TemplateData {
    TemplateData::new(
        &event(),
        AlertRef {
            namespace: "flux-system",
            name: "on-call",
        },
        "prod-eu",
    )
}

fn render(source: &str) -> Result<String, RenderError> {
    MessageTemplate::compile(source)
        .unwrap_or_else(|e| panic!("{source}: {e}"))
        .render(&data())
}

fn compile_error(source: &str) -> CompileError {
    MessageTemplate::compile(source).expect_err(source)
}

#[test]
fn the_data_has_go_field_names() {
    let cases = [
        (
            "{{ .InvolvedObject.Kind }}/{{ .InvolvedObject.Name }}.{{ .InvolvedObject.Namespace }}",
            "Kustomization/web.apps",
        ),
        (
            "{{ .InvolvedObject.UID }} {{ .InvolvedObject.APIVersion }}",
            "u-1 kustomize.toolkit.fluxcd.io/v1",
        ),
        ("{{ .Severity }} {{ .Reason }}", "error HealthCheckFailed"),
        ("{{ .Timestamp }}", "2024-03-05 14:07:09 +0000 UTC"),
        ("{{ .Message }}", "Health check failed\nafter 5m"),
        (
            r#"{{ index .Metadata "revision" }}|{{ index .Metadata "absent" }}|{{ .Metadata.absent }}"#,
            "main@sha1:0123456789abcdef||<no value>",
        ),
        (
            "{{ .ReportingController }}/{{ .ReportingInstance }}",
            "kustomize-controller/kc-1",
        ),
        (
            "{{ .Alert.Namespace }}/{{ .Alert.Name }} in {{ .Cluster }}",
            "flux-system/on-call in prod-eu",
        ),
        ("[{{ .RelatedObject.Name }}{{ .Action }}]", "[]"),
        (
            "{{ range $k, $v := .Metadata }}{{ $k }}={{ $v }}{{ end }}",
            "revision=main@sha1:0123456789abcdef",
        ),
        (
            "{{ with .InvolvedObject }}{{ .Kind }} {{ $.Severity }}{{ end }}",
            "Kustomization error",
        ),
        (
            r#"{{ if eq .Severity "error" }}:red_circle:{{ else }}:white_check_mark:{{ end }}"#,
            ":red_circle:",
        ),
        (
            r#"{{ define "name" }}{{ .Kind }}/{{ .Name }}{{ end }}{{ template "name" .InvolvedObject }}"#,
            "Kustomization/web",
        ),
        (
            r#"{{ printf "%s %q %d" .Reason "x" (len .Metadata) }}"#,
            r#"HealthCheckFailed "x" 1"#,
        ),
    ];
    for (source, expected) in cases {
        assert_eq!(render(source).unwrap(), expected, "{source}");
    }
    let empty = TemplateData::new(&FluxEvent::default(), AlertRef::default(), "");
    let zero = MessageTemplate::compile("{{ .Timestamp }}").unwrap();
    assert_eq!(
        zero.render(&empty).unwrap(),
        "0001-01-01 00:00:00 +0000 UTC"
    );
}

#[test]
fn sprig_functions() {
    let cases = [
        (
            "{{ .Reason | upper }} {{ .Severity | lower }}",
            "HEALTHCHECKFAILED error",
        ),
        (
            r#"{{ "  x  " | trim }}|{{ "hello flux" | title }}"#,
            "x|Hello Flux",
        ),
        (
            r#"{{ .Reason | trimPrefix "Health" | trimSuffix "Failed" }}"#,
            "Check",
        ),
        (
            r#"{{ .Message | replace "\n" " " }}"#,
            "Health check failed after 5m",
        ),
        (
            r#"{{ contains "check" .Message }} {{ hasPrefix "Health" .Reason }} {{ hasSuffix "x" .Reason }}"#,
            "true true false",
        ),
        (
            r#"{{ index .Metadata "absent" | default "none" }} {{ .Reason | default "none" }}"#,
            "none HealthCheckFailed",
        ),
        (r#"{{ empty "" }} {{ empty .Reason }}"#, "true false"),
        (
            r#"{{ $r := index .Metadata "revision" }}{{ splitList "@" $r | join " at " }}"#,
            "main at sha1:0123456789abcdef",
        ),
        (
            r#"{{ $parts := split "@" (index .Metadata "revision") }}{{ $parts._0 }}"#,
            "main",
        ),
        (
            r#"{{ index .Metadata "revision" | trunc 9 }}|{{ "abc" | trunc -2 }}|{{ "é😀x" | trunc 2 }}"#,
            "main@sha1|bc|é😀",
        ),
        (
            r#"{{ quote .InvolvedObject.Name "a\"b" }} {{ squote .Severity }}"#,
            r#""web" "a\"b" 'error'"#,
        ),
        (
            "{{ toJson .Message }} {{ toJson .Alert }}",
            r#""Health check failed\nafter 5m" {"Name":"on-call","Namespace":"flux-system"}"#,
        ),
        (r#"{{ "<b>" | toJson }}"#, r#""\u003cb\u003e""#),
        (
            "{{ .Message | indent 2 }}",
            "  Health check failed\n  after 5m",
        ),
        ("x{{ .Reason | nindent 1 }}", "x\n HealthCheckFailed"),
        (
            r#"{{ date "Jan 2, 15:04 MST" .Timestamp }} {{ date "2006-01-02" 0 }}"#,
            "Mar 5, 14:07 UTC 1970-01-01",
        ),
        (
            r#"{{ "a&b" | urlquery }} {{ html "<x>" }}"#,
            "a%26b &lt;x&gt;",
        ),
    ];
    for (source, expected) in cases {
        assert_eq!(render(source).unwrap(), expected, "{source}");
    }
    let now = render("{{ now }}").unwrap();
    assert!(now.ends_with(" +0000 UTC") && now.len() >= 29, "{now}");
    assert!(layout::parse(&now).is_some(), "{now}");
}

#[test]
fn compile_errors_have_their_line_and_column() {
    let error = compile_error("ok\n  {{ .Message | }}");
    assert_eq!((error.line, error.column), (2, 19), "{error}");
    assert_eq!(error.to_string(), "line 2, column 19: empty command");
    let error = compile_error("{{ .Message");
    assert_eq!(error.line, 1);
    assert!(error.message.contains("unclosed action"), "{error}");

    let error = compile_error("first\nsecond {{ .Reason | uper }}");
    assert_eq!(
        error.to_string(),
        "line 2, column 21: function \"uper\" not defined (did you mean \"upper\"?)"
    );
    let error = compile_error("{{ if .Reason }}\n{{ frobnicate }}{{ end }}");
    assert_eq!((error.line, error.column), (2, 4), "{error}");
    assert_eq!(error.message, "function \"frobnicate\" not defined");

    let error = compile_error("{{ .InvolvedObject.Nme }}");
    assert_eq!(
        error.to_string(),
        "line 1, column 4: can't evaluate field Nme in type ObjectReference (did you mean .Name?)"
    );
    let error = compile_error("a\n{{ with .Alert }}{{ .Kind }}{{ end }}");
    assert_eq!((error.line, error.column), (2, 21), "{error}");
    assert!(
        error
            .message
            .starts_with("can't evaluate field Kind in type Alert")
    );
    let error = compile_error("{{ range .Metadata }}{{ .Name }}{{ end }}");
    assert!(error.message.contains("in type string"), "{error}");
    let error = compile_error("{{ $.Mesage }}");
    assert!(error.message.contains("did you mean .Message?"), "{error}");
    let error = compile_error("{{ (.InvolvedObject).Knd }}");
    assert!(error.message.contains("did you mean .Kind?"), "{error}");
    // What is only known when it runs is left to the run.
    for fine in [
        "{{ $o := .InvolvedObject }}{{ $o.Anything }}",
        r#"{{ define "x" }}{{ .Anything }}{{ end }}"#,
        "{{ .Metadata.anything }}",
    ] {
        assert!(MessageTemplate::compile(fine).is_ok(), "{fine}");
    }
}

#[test]
fn render_errors_say_why_and_runs_are_bounded() {
    let error = render("{{ trunc .Reason }}").unwrap_err();
    assert!(
        error.to_string().contains("wrong number of arguments"),
        "{error}"
    );
    let error = render(r#"{{ trunc "x" .Reason }}"#).unwrap_err();
    assert!(error.to_string().contains("expected an integer"), "{error}");
    let error = render(r#"{{ template "missing" }}"#).unwrap_err();
    assert!(error.to_string().contains("missing"), "{error}");
    let error = render(r#"{{ date "2006" "yesterday" }}"#).unwrap_err();
    assert!(error.to_string().contains("is not a time"), "{error}");
    let error = render("{{ range 20000 }}x{{ end }}").unwrap_err();
    assert!(error.to_string().contains("range"), "{error}");
    let error = render(r#"{{ if eq .Severity "info" }}ok{{ end }}  "#).unwrap_err();
    assert_eq!(error.to_string(), "the output is empty");
    let error = render("{{ range 9000 }}{{ $.Message }}{{ end }}").unwrap_err();
    assert_eq!(
        error.to_string(),
        format!("the output is longer than {MAX_OUTPUT_BYTES} bytes")
    );
}

#[test]
fn slack_blocks_must_be_a_json_array_of_blocks() {
    let blocks = MessageTemplate::compile(
        r#"[{"type": "section", "text": {"type": "mrkdwn", "text": {{ printf "*%s* %s" .InvolvedObject.Name .Message | toJson }}}}]"#,
    )
    .unwrap();
    assert_eq!(
        blocks.render_blocks(&data()).unwrap(),
        r#"[{"text":{"text":"*web* Health check failed\nafter 5m","type":"mrkdwn"},"type":"section"}]"#
    );
    for (source, why) in [
        ("{{ .Message }}", "not a JSON array of Slack blocks"),
        (r#"{"type": "section"}"#, "not a JSON array of Slack blocks"),
        (r#"[{"text": "x"}]"#, "block 0 has no \"type\""),
        ("[]", "the output has no block"),
    ] {
        let error = MessageTemplate::compile(source)
            .unwrap()
            .render_blocks(&data())
            .unwrap_err();
        assert!(error.to_string().contains(why), "{source}: {error}");
    }
}

#[test]
fn annotations_give_templates_and_problems() {
    let annotations: BTreeMap<String, String> = [
        (TEMPLATE_ANNOTATION.to_owned(), "{{ .Message }}".to_owned()),
        (
            SLACK_BLOCKS_ANNOTATION.to_owned(),
            "[\n{{ .Nope }}]".to_owned(),
        ),
    ]
    .into_iter()
    .collect();
    let (templates, problems) = Templates::from_annotations(&annotations);
    assert!(matches!(templates.message, Some(Ok(_))));
    assert!(matches!(templates.slack_blocks, Some(Err(_))));
    assert_eq!(
        problems,
        [
            "annotation herald.dev/slack-blocks does not compile at template line 2, column 4: \
          can't evaluate field Nope in type Event; deliveries are sent without it"
        ]
    );
    let (none, problems) = Templates::from_annotations(&BTreeMap::new());
    assert!(none.is_empty() && problems.is_empty());
}
