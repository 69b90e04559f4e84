use super::*;
use herald_proto::Delivery;

fn entry(sequence: u64) -> Entry {
    Entry {
        sequence,
        subject: names::dead_subject("generic", "team.a", "hook"),
        letter: DeadLetter {
            delivery: Some(Delivery {
                id: "d1".to_owned(),
                event: Some(herald_proto::Event {
                    id: "e1".to_owned(),
                    message: "it broke".to_owned(),
                    ..herald_proto::Event::default()
                }),
                alert: Some(ObjectKey {
                    namespace: "team.a".to_owned(),
                    name: "on-call".to_owned(),
                    uid: "u1".to_owned(),
                }),
                provider: Some(ObjectKey {
                    namespace: "team.a".to_owned(),
                    name: "hook".to_owned(),
                    uid: String::new(),
                }),
                provider_type: "generic".to_owned(),
                routed_at: None,
                catalog: String::new(),
            }),
            reason: "destination answered 404".to_owned(),
            attempts: 1,
            last_status: 404,
            last_response: "not\nfound \u{1b}[31m".to_owned(),
            dead_at: Some(herald_flux::convert::to_time(
                Timestamp::from_second(1_700_000_000).unwrap(),
            )),
            ..DeadLetter::default()
        },
        stored_at: Timestamp::from_second(1_700_000_001).unwrap(),
    }
}

fn raw(sequence: u64, subject: &str) -> Entry {
    Entry {
        sequence,
        subject: subject.to_owned(),
        letter: DeadLetter {
            reason: "cannot decode the delivery".to_owned(),
            raw_payload: vec![1, 2, 3],
            ..DeadLetter::default()
        },
        stored_at: Timestamp::from_second(1_700_000_002).unwrap(),
    }
}

fn filter(edit: impl FnOnce(&mut Filter)) -> Filter {
    let mut filter = Filter::default();
    edit(&mut filter);
    filter
}

#[test]
fn filters_match_every_field_they_set() {
    let e = entry(7);
    let dead_at = e.dead_at();
    let second = jiff::SignedDuration::from_secs(1);
    for (f, expected) in [
        (Filter::default(), true),
        (filter(|f| f.provider = Some(String::new())), true),
        (filter(|f| f.provider = Some("team.a/hook".into())), true),
        (filter(|f| f.provider = Some("hook".into())), true),
        (filter(|f| f.provider = Some("team.b/hook".into())), false),
        (filter(|f| f.provider_type = Some("generic".into())), true),
        (filter(|f| f.provider_type = Some("unknown".into())), false),
        (filter(|f| f.alert = Some("team.a/on-call".into())), true),
        (filter(|f| f.alert = Some("on-call".into())), true),
        (filter(|f| f.alert = Some("hook".into())), false),
        (filter(|f| f.reason = Some("Answered 404".into())), true),
        (filter(|f| f.reason = Some("401".into())), false),
        (filter(|f| f.since = Some(dead_at)), true),
        (filter(|f| f.until = Some(dead_at)), true),
        (filter(|f| f.since = Some(dead_at + second)), false),
        (filter(|f| f.until = Some(dead_at - second)), false),
        (filter(|f| f.sequences = vec![3, 7]), true),
        (filter(|f| f.sequences = vec![8]), false),
    ] {
        assert_eq!(f.matches(&e), expected, "{f:?}");
    }
}

#[test]
fn letters_without_a_delivery_are_known_by_their_subject_and_time() {
    let e = raw(9, &names::dead_subject("unknown", "team.a", "hook"));
    assert_eq!(e.provider_type(), "unknown");
    assert_eq!(e.provider(), ("team.a".to_owned(), "hook".to_owned()));
    assert_eq!(e.alert(), None);
    assert_eq!(e.dead_at(), e.stored_at);
    assert!(filter(|f| f.provider = Some("team.a/hook".into())).matches(&e));
    assert!(!filter(|f| f.alert = Some("hook".into())).matches(&e));
    // The router's letters have no type: they are `unknown`.
    let mut routed = entry(1);
    if let Some(delivery) = routed.letter.delivery.as_mut() {
        delivery.provider_type.clear();
    }
    assert_eq!(routed.provider_type(), "unknown");
    // Something that is not a letter at all is still shown, by size.
    let junk = Entry::decode(
        3,
        "herald.dead.x".to_owned(),
        Bytes::from_static(&[0xff; 4]),
        Timestamp::UNIX_EPOCH,
    );
    assert!(junk.letter.reason.starts_with("not a herald.v1.DeadLetter"));
    assert_eq!(junk.letter.raw_payload.len(), 4);
    assert_eq!(junk.provider_type(), "x");
}

#[test]
fn scans_read_only_the_subjects_a_filter_allows() {
    assert_eq!(Filter::default().subject(), "herald.dead.>");
    assert_eq!(
        filter(|f| f.reason = Some("401".into())).subject(),
        "herald.dead.>"
    );
    assert_eq!(
        filter(|f| f.provider_type = Some("unknown".into())).subject(),
        "herald.dead.unknown.*.*"
    );
    let f = filter(|f| {
        f.provider_type = Some("generic".into());
        f.provider = Some("team.a/hook".into());
    });
    assert_eq!(f.subject(), "herald.dead.generic.team_2Ea.hook");
    assert_eq!(
        filter(|f| f.provider = Some("hook".into())).subject(),
        "herald.dead.*.*.hook"
    );
    assert_eq!(
        f.subject(),
        names::dead_subject("generic", "team.a", "hook")
    );
}

#[test]
fn replays_go_to_the_providers_subject_with_their_ids_and_trace() {
    let mut e = entry(7);
    e.letter.traceparent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01".into();
    let republish = Republish::of(&e).unwrap();
    assert_eq!(republish.subject, "herald.deliveries.generic.team_2Ea.hook");
    let header = |name: &str| republish.headers.get(name).map(|v| v.as_str().to_owned());
    assert_eq!(header(names::MSG_ID_HEADER).as_deref(), Some("replay:d1:7"));
    assert_eq!(header(names::EVENT_ID_HEADER).as_deref(), Some("e1"));
    assert_eq!(
        header(names::TRACEPARENT_HEADER).as_deref(),
        Some(e.letter.traceparent.as_str())
    );
    let mut replayed = Delivery::decode(republish.payload).unwrap();
    assert!(
        replayed.routed_at.take().is_some(),
        "a replay is queued anew"
    );
    let mut original = e.letter.delivery.clone().unwrap();
    original.routed_at = None;
    assert_eq!(replayed, original);

    if let Some(delivery) = e.letter.delivery.as_mut() {
        delivery.provider_type.clear();
    }
    e.letter.traceparent.clear();
    let republish = Republish::of(&e).unwrap();
    assert_eq!(republish.subject, "herald.deliveries.unknown.team_2Ea.hook");
    assert!(republish.headers.get(names::TRACEPARENT_HEADER).is_none());

    let reason = Republish::of(&raw(9, "herald.dead.unknown.a.b"))
        .err()
        .unwrap();
    assert!(reason.contains("no delivery"), "{reason}");
}

#[test]
fn the_table_is_aligned_one_line_per_letter() {
    let mut long = entry(12345);
    long.letter.reason = format!("line one\nline two {}", "x".repeat(200));
    let table = render_table(&[entry(7), long, raw(9, "herald.dead.unknown.a.b")]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 4, "{table}");
    assert_eq!(
        lines[0],
        "SEQ    DEAD AT               PROVIDER             ALERT           ATTEMPTS  STATUS  REASON"
    );
    assert_eq!(
        lines[1],
        "7      2023-11-14T22:13:20Z  generic team.a/hook  team.a/on-call  1         404     destination answered 404"
    );
    assert!(lines[2].contains("line one\\nline two xxx"), "{table}");
    assert!(lines[2].ends_with('…'), "{table}");
    assert_eq!(
        lines[3],
        "9      2023-11-14T22:13:22Z  unknown a/b          -               0         -       cannot decode the delivery"
    );
}

#[test]
fn the_detail_shows_everything_and_no_terminal_escapes() {
    let detail = render_detail(&entry(7));
    assert_eq!(
        detail,
        "Sequence:      7\n\
         Subject:       herald.dead.generic.team_2Ea.hook\n\
         Dead at:       2023-11-14T22:13:20Z\n\
         Stored at:     2023-11-14T22:13:21Z\n\
         Reason:        destination answered 404\n\
         Attempts:      1\n\
         Last status:   404\n\
         Provider:      generic team.a/hook\n\
         Alert:         team.a/on-call (uid u1)\n\
         Delivery id:   d1\n\
         Event id:      e1\n\
         Traceparent:   -\n\
         Last response:\n  not\n  found \\u{1b}[31m\n\
         Event (Flux JSON):\n\
         {\"involvedObject\":{},\"severity\":\"\",\"timestamp\":null,\"message\":\"it broke\",\"reason\":\"\",\"reportingController\":\"\"}\n"
    );
    let detail = render_detail(&raw(9, "herald.dead.unknown.a.b"));
    assert!(
        detail.contains("Raw payload:   3 bytes (not a decodable delivery; cannot be replayed)\n"),
        "{detail}"
    );
    assert!(!detail.contains("Event"), "{detail}");
}
