//! Table tests of whole policies: parsing, every error by its path, and
//! evaluation of files.

use std::path::Path;
use std::time::{Duration, SystemTime};

use super::*;

const DAY: Duration = Duration::from_secs(86_400);
const MIB: u64 = 1024 * 1024;

/// The example of issue 3.
const EXAMPLE: &str = r#"
name: cold-images
selector: {volumes: ["line-3/*"], labels: {app: inspection}}
schedule: "0 * * * *"
lake: {url: "s3://lake/site-a", credentials: env}
keyTemplate: "{site}/{namespace}/{pvc}/{path}"
rules:
  - name: images-older-than-7d
    include: ["**/*.jpg", "**/*.png"]
    exclude: ["tmp/**"]
    modifiedBefore: 7d
    action: move
watermarks: {high: 85%, low: 70%}
bandwidth: {limit: 50MiB/s}
"#;

/// Every field of the schema, set.
const KITCHEN_SINK: &str = r#"
name: everything
selector:
  volumes: ["line-3/*", "line-4/**"]
  labels: {app: inspection, tier: "1"}
schedule: "*/30 * * * *"
lake: {url: "file:///srv/lake", credentials: /etc/strata/lake.env}
keyTemplate: "{site}/{namespace}/{pvc}/{volume}/{path}"
rules:
  - name: big-and-cold
    include: ["**/*.mp4"]
    exclude: ["keep/**"]
    modifiedBefore: 2w
    accessedBefore: 30d
    minSize: 10MiB
    maxSize: 4GiB
    action: copy
  - name: logs
    include: ["logs/**"]
    modifiedBefore: 1d
    action: move
watermarks: {high: 90, low: 75.5%}
bandwidth:
  limit: 50MiB/s
  timetable:
    - {days: [mon-fri], hours: "08-18", limit: 5MiB/s}
    - {days: [sun], limit: unlimited}
"#;

fn policy(yaml: &str) -> Policy {
    parse_policy(yaml).unwrap_or_else(|e| panic!("policy rejected:\n{e}"))
}

fn errors(yaml: &str) -> Vec<String> {
    match parse_policy(yaml) {
        Ok(_) => panic!("policy accepted:\n{yaml}"),
        Err(e) => e.errors().iter().map(ToString::to_string).collect(),
    }
}

/// A valid policy with `rule` (YAML lines at rule indentation) as its only rule.
fn with_rule(rule: &str) -> String {
    format!("name: p\nlake: {{url: \"file:///lake\"}}\nrules:\n  - name: r\n{rule}")
}

fn file(path: &str, size: u64, age: Duration, idle: Duration, now: SystemTime) -> FileFacts<'_> {
    FileFacts {
        path: Path::new(path),
        size,
        modified: now - age,
        accessed: now - idle,
    }
}

#[test]
fn policy_example_parses() {
    let p = policy(EXAMPLE);
    assert_eq!(p.name(), "cold-images");
    assert_eq!(p.schedule().map(Schedule::as_str), Some("0 * * * *"));
    assert_eq!(p.lake().url().as_str(), "s3://lake/site-a");
    assert_eq!(p.lake().credentials(), &Credentials::Env);
    assert_eq!(p.rules().len(), 1);
    assert_eq!(p.rules()[0].action(), Action::Move);
    assert_eq!(p.bandwidth_at(Weekday::Mon, 9), Some(50 * MIB));
    let w = p.watermarks().unwrap();
    assert_eq!((w.high(), w.low()), (85.0, 70.0));
}

#[test]
fn policy_kitchen_sink_round_trips_through_serde() {
    let p = policy(KITCHEN_SINK);
    // The serde types accept everything the decoder does, and agree with it.
    let direct: PolicySpec = serde_yaml_ng::from_str(KITCHEN_SINK).unwrap();
    assert_eq!(p.spec(), &direct);
    let stored = serde_yaml_ng::to_string(p.spec()).unwrap();
    let again = policy(&stored);
    assert_eq!(again.spec(), p.spec());
    let from_spec = Policy::try_from(p.spec()).unwrap();
    assert_eq!(from_spec.spec(), p.spec());
    assert_eq!(
        p.lake().credentials(),
        &Credentials::File("/etc/strata/lake.env".into())
    );
    assert_eq!(p.bandwidth_at(Weekday::Tue, 10), Some(5 * MIB));
    assert_eq!(p.bandwidth_at(Weekday::Sun, 10), None);
    assert_eq!(p.bandwidth_at(Weekday::Sat, 10), Some(50 * MIB));
    assert_eq!(p.watermarks().unwrap().high(), 90.0);
}

#[test]
fn policy_three_mistakes_three_paths() {
    let yaml = r#"
name: cold-images
lake: {url: "s3://lake/site-a"}
keyTemplate: "{site}/{pod}/{path}"
rules:
  - name: images
    include: ["**/*.jpg"]
    modifiedBefore: 7 days
    action: move
watermarks: {high: 70%, low: 85%}
"#;
    let errs = parse_policy(yaml).unwrap_err();
    assert_eq!(
        errs.paths(),
        ["keyTemplate", "rules[0].modifiedBefore", "watermarks.low"],
        "{errs}"
    );
    assert_eq!(
        errs.errors()[1].to_string(),
        r#"rules[0].modifiedBefore: expected a duration like 7d, got "7 days" (units: s, m, h, d, w)"#
    );
    assert_eq!(errs.to_string().lines().count(), 3);
}

#[test]
fn policy_errors_by_path() {
    let cases: &[(&str, &str)] = &[
        // unknown fields, at every level
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\ncolour: red",
            "colour: unknown field; expected one of name,",
        ),
        (
            "name: p\nlake: {url: \"file:///l\", region: eu}\nrules: [{name: r, include: [a], action: move}]",
            "lake.region: unknown field",
        ),
        (
            &with_rule("    include: [a]\n    action: move\n    modifedBefore: 7d"),
            "rules[0].modifedBefore: unknown field, did you mean modifiedBefore?",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nkey_template: \"{path}\"\nrules: [{name: r, include: [a], action: move}]",
            "key_template: unknown field, did you mean keyTemplate?",
        ),
        // missing and mistyped fields
        (
            "lake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]",
            "name: required field is missing",
        ),
        (
            "name: p\nrules: [{name: r, include: [a], action: move}]",
            "lake: required field is missing",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}",
            "rules: required field is missing",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: []",
            "rules: a policy needs at least one rule",
        ),
        (
            &with_rule("    include: a\n    action: move"),
            "rules[0].include: expected a list of strings, got \"a\"",
        ),
        (
            &with_rule("    include: [a]"),
            "rules[0].action: required field is missing",
        ),
        (
            &with_rule("    include: [a]\n    action: delete"),
            "rules[0].action: expected move or copy, got \"delete\"",
        ),
        (
            "name: Cold_Images\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]",
            "name: expected a name of lowercase letters",
        ),
        (
            "name: p\nlake: s3://lake\nrules: [{name: r, include: [a], action: move}]",
            "lake: expected a mapping, got \"s3://lake\"",
        ),
        ("- just\n- a list", "expected a mapping, got a list"),
        ("name: p\n  bad: indentation\n: x", "not a YAML document"),
        // quantities
        (
            &with_rule("    accessedBefore: 30\n    action: move"),
            "rules[0].accessedBefore: expected a duration like 7d, got \"30\"",
        ),
        (
            &with_rule("    minSize: 10 megabytes\n    action: move"),
            "rules[0].minSize: expected a size like 10MiB",
        ),
        (
            &with_rule("    minSize: 2MiB\n    maxSize: 1MiB\n    action: move"),
            "rules[0].minSize: 2097152 bytes is larger than maxSize (1048576 bytes)",
        ),
        (
            &with_rule("    action: move"),
            "rules[0]: a rule needs at least one of include",
        ),
        (
            &with_rule("    include: [\"**/[.jpg\"]\n    action: move"),
            "rules[0].include[0]: invalid glob",
        ),
        (
            &with_rule("    include: [a, /abs/**]\n    action: move"),
            "rules[0].include[1]: \"/abs/**\" starts with /",
        ),
        // whole policy sections
        (
            "name: p\nschedule: every hour\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]",
            "schedule: expected a cron expression like \"0 * * * *\", got \"every hour\"",
        ),
        (
            "name: p\nlake: {url: \"lake\"}\nrules: [{name: r, include: [a], action: move}]",
            "lake.url: not a URL",
        ),
        (
            "name: p\nlake: {url: \"file:///l\", credentials: secrets.txt}\nrules: [{name: r, include: [a], action: move}]",
            "lake.credentials: expected env or the absolute path",
        ),
        (
            "name: p\nkeyTemplate: \"{site}/{pod}/{path}\"\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]",
            "keyTemplate: unknown placeholder {pod}",
        ),
        (
            "name: p\nkeyTemplate: \"{site}/{pvc}\"\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]",
            "keyTemplate: must contain {path}",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\nwatermarks: {high: 80%, low: 80%}",
            "watermarks.low: must be below high (80%), got 80%",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\nwatermarks: {high: 180%, low: 80%}",
            "watermarks.high: expected a percentage between 0% and 100%",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\nwatermarks: {high: 80%}",
            "watermarks.low: required field is missing",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\nbandwidth: {limit: fast}",
            "bandwidth.limit: expected a rate like 50MiB/s",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\nbandwidth: {timetable: [{days: [weekend], limit: 1MiB/s}]}",
            "bandwidth.timetable[0].days[0]: expected a day like mon",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\nbandwidth: {timetable: [{hours: \"9-9\", limit: 1MiB/s}]}",
            "bandwidth.timetable[0].hours: the window \"9-9\" is empty",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\nselector: {labels: {tier: 1}}",
            "selector.labels.tier: expected a string, got the number 1 (quote it)",
        ),
        (
            "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [a], action: move}]\nselector: {volumes: [\"line-[3\"]}",
            "selector.volumes[0]: invalid glob",
        ),
    ];
    for (yaml, want) in cases {
        let errs = errors(yaml);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(want) || (!want.contains(':') && e.contains(want))),
            "want {want:?}, got {errs:#?}\nfor:\n{yaml}"
        );
    }
}

#[test]
fn policy_duplicate_rule_names() {
    let yaml = "name: p\nlake: {url: \"file:///l\"}\nrules:\n  - {name: r, include: [a], action: move}\n  - {name: r, include: [b], action: copy}";
    assert_eq!(errors(yaml), ["rules[1].name: duplicate rule name \"r\""]);
    // Reported alongside the other rules' own errors.
    let yaml = "name: p\nlake: {url: \"file:///l\"}\nrules:\n  - {name: r, include: [a], action: mve}\n  - {name: r, include: [b], action: copy}";
    let errs = parse_policy(yaml).unwrap_err();
    assert_eq!(errs.paths(), ["rules[0].action", "rules[1].name"], "{errs}");
}

#[test]
fn policy_defaults() {
    let p = policy(
        "name: p\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [\"**\"], action: copy}]",
    );
    assert!(p.schedule().is_none());
    assert_eq!(p.lake().credentials(), &Credentials::Env);
    assert!(p.selects_volume("any", &Default::default(), None));
    assert!(!p.should_start(100.0));
    assert!(p.should_stop(100.0));
    assert_eq!(p.bandwidth_at(Weekday::Mon, 12), None);
    let key = p.key_template().render(&KeyVars {
        site: "s",
        volume: "v",
        path: "a/b",
        ..Default::default()
    });
    assert_eq!(key, "s/v/a/b");
    // A null is the same as an absent field (`schedule:` left empty).
    let p = policy(
        "name: p\nschedule:\nlake: {url: \"file:///l\"}\nrules: [{name: r, include: [\"**\"], action: copy}]",
    );
    assert!(p.schedule().is_none());
}

#[test]
fn policy_watermark_helpers() {
    let p = policy(EXAMPLE);
    for (used, start, stop) in [
        (60.0, false, true),
        (70.0, false, true),
        (80.0, false, false),
        (85.0, true, false),
        (95.0, true, false),
    ] {
        assert_eq!(p.should_start(used), start, "start at {used}%");
        assert_eq!(p.should_stop(used), stop, "stop at {used}%");
    }
}

#[test]
fn policy_selects_volumes() {
    let p = policy(EXAMPLE);
    let labels = |pairs: &[(&str, &str)]| -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let cases = [
        ("line-3/cam-1", labels(&[("app", "inspection")]), true),
        (
            "line-3/cam-1",
            labels(&[("app", "inspection"), ("extra", "x")]),
            true,
        ),
        ("line-3/cam-1", labels(&[("app", "billing")]), false),
        ("line-3/cam-1", labels(&[]), false),
        ("line-4/cam-1", labels(&[("app", "inspection")]), false),
        ("line-3/a/b", labels(&[("app", "inspection")]), false),
        // A CSI volume is registered under its PV name; its PVC labels make
        // it `<namespace>/<pvc>` for the globs.
        (
            "pvc-0b4c9a2e",
            labels(&[
                ("app", "inspection"),
                ("strata.io/pvc-namespace", "line-3"),
                ("strata.io/pvc", "cam-1"),
            ]),
            true,
        ),
        (
            "pvc-0b4c9a2e",
            labels(&[
                ("app", "inspection"),
                ("strata.io/pvc-namespace", "line-4"),
                ("strata.io/pvc", "cam-1"),
            ]),
            false,
        ),
        (
            "pvc-0b4c9a2e",
            labels(&[("app", "inspection"), ("strata.io/pvc", "cam-1")]),
            false,
        ),
    ];
    for (id, labels, want) in cases {
        assert_eq!(p.selects_volume(id, &labels, None), want, "{id} {labels:?}");
    }
}

#[test]
fn policy_evaluate_example() {
    let p = policy(EXAMPLE);
    let now = SystemTime::UNIX_EPOCH + DAY * 20_000;
    let cases = [
        ("a/b/c.jpg", 8, Some(Action::Move)),
        ("c.jpg", 8, Some(Action::Move)),
        ("c.png", 7, Some(Action::Move)),
        ("c.jpg", 6, None),
        ("c.gif", 30, None),
        ("tmp/c.jpg", 30, None),
        ("tmp/a/b/c.jpg", 30, None),
        ("x/tmp/c.jpg", 30, Some(Action::Move)),
    ];
    for (path, age_days, want) in cases {
        let f = file(path, 1, DAY * age_days, Duration::ZERO, now);
        assert_eq!(
            p.evaluate(&f, now).map(|d| d.action),
            want,
            "{path} {age_days}d"
        );
    }
}

#[test]
fn policy_evaluate_conditions() {
    let now = SystemTime::UNIX_EPOCH + DAY * 20_000;
    let p = policy(&with_rule(
        "    include: [\"**/*.bin\"]\n    accessedBefore: 30d\n    minSize: 1MiB\n    maxSize: 2MiB\n    action: copy",
    ));
    let cases = [
        // (size, idle days, matches)
        (MIB, 30, true),
        (2 * MIB, 31, true),
        (MIB - 1, 31, false),
        (2 * MIB + 1, 31, false),
        (MIB, 29, false),
    ];
    for (size, idle, want) in cases {
        let f = file("d/x.bin", size, Duration::ZERO, DAY * idle, now);
        let d = p.evaluate(&f, now);
        assert_eq!(d.is_some(), want, "size {size}, idle {idle}d");
        if let Some(d) = d {
            assert_eq!((d.rule_index, d.rule, d.action), (0, "r", Action::Copy));
        }
    }
    // A file from the future (clock skew) is never old.
    let future = FileFacts {
        path: Path::new("x.bin"),
        size: MIB,
        modified: now + DAY,
        accessed: now + DAY,
    };
    assert!(p.evaluate(&future, now).is_none());
}

#[test]
fn policy_first_rule_wins_and_exclude_beats_include() {
    let yaml = r#"
name: p
lake: {url: "file:///lake"}
rules:
  - name: keep-raw
    include: ["raw/**"]
    exclude: ["raw/**"]
    action: move
  - name: old-logs
    include: ["**/*.log"]
    modifiedBefore: 12h
    action: move
  - name: any-old
    modifiedBefore: 15m
    action: copy
"#;
    let p = policy(yaml);
    let now = SystemTime::UNIX_EPOCH + DAY * 20_000;
    let hour = Duration::from_secs(3600);
    let cases = [
        ("raw/a.log", hour * 13, Some("old-logs")),
        ("raw/a.dat", hour * 13, Some("any-old")),
        ("a.log", hour * 13, Some("old-logs")),
        ("a.log", hour, Some("any-old")),
        ("a.log", Duration::from_secs(60), None),
    ];
    for (path, age, want) in cases {
        let f = file(path, 1, age, Duration::ZERO, now);
        assert_eq!(p.evaluate(&f, now).map(|d| d.rule), want, "{path} {age:?}");
    }
}

fn claim(ns: &str, labels: &[(&str, &str)], class: Option<&str>, named: Option<&str>) -> Claim {
    Claim {
        pv: "pvc-1".into(),
        namespace: ns.into(),
        name: "cam".into(),
        labels: labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        storage_class: class.map(Into::into),
        class_policy: named.map(Into::into),
    }
}

const LAKE_AND_RULE: &str =
    "lake: {url: \"file:///l\"}\nrules: [{name: r, include: [\"**\"], action: copy}]\n";

/// Selection by what Kubernetes says of a claim: a TieringPolicy's policy
/// stays in its namespace whatever its criteria; a StorageClass naming it
/// selects; without criteria nothing else does.
#[test]
fn policy_selects_by_claim() {
    let k8s = |selector: &str| {
        policy(&format!(
            "name: line-3.images\nkubernetes: {{namespace: line-3, name: images, generation: 4}}\n{selector}{LAKE_AND_RULE}"
        ))
    };
    let by_labels = k8s(
        "selector: {claimLabels: {matchLabels: {app: vision}, matchExpressions: [{key: tier, operator: NotIn, values: [hot]}]}}\n",
    );
    let by_class = k8s("selector: {storageClasses: [fast, thin]}\n");
    let any_claim = k8s("selector: {claimLabels: {}}\n");
    let class_only = k8s("");
    let cli = policy(&format!(
        "name: images\nselector: {{claimLabels: {{matchExpressions: [{{key: app, operator: Exists}}]}}}}\n{LAKE_AND_RULE}"
    ));
    let none = BTreeMap::new();
    let cases: Vec<(&str, &Policy, Option<Claim>, bool)> = vec![
        (
            "labels match",
            &by_labels,
            Some(claim("line-3", &[("app", "vision")], None, None)),
            true,
        ),
        (
            "NotIn excludes",
            &by_labels,
            Some(claim(
                "line-3",
                &[("app", "vision"), ("tier", "hot")],
                None,
                None,
            )),
            false,
        ),
        (
            "NotIn passes other",
            &by_labels,
            Some(claim(
                "line-3",
                &[("app", "vision"), ("tier", "cold")],
                None,
                None,
            )),
            true,
        ),
        (
            "other namespace",
            &by_labels,
            Some(claim("line-4", &[("app", "vision")], None, None)),
            false,
        ),
        (
            "other namespace named by class",
            &by_labels,
            Some(claim("line-4", &[], None, Some("images"))),
            false,
        ),
        ("no claim", &by_labels, None, false),
        (
            "label missing",
            &by_labels,
            Some(claim("line-3", &[("app", "other")], None, None)),
            false,
        ),
        (
            "class listed",
            &by_class,
            Some(claim("line-3", &[], Some("thin"), None)),
            true,
        ),
        (
            "class not listed",
            &by_class,
            Some(claim("line-3", &[], Some("slow"), None)),
            false,
        ),
        (
            "no class",
            &by_class,
            Some(claim("line-3", &[], None, None)),
            false,
        ),
        (
            "empty selector",
            &any_claim,
            Some(claim("line-3", &[], None, None)),
            true,
        ),
        (
            "empty selector, other ns",
            &any_claim,
            Some(claim("kube-system", &[], None, None)),
            false,
        ),
        (
            "no criteria",
            &class_only,
            Some(claim("line-3", &[("app", "vision")], Some("fast"), None)),
            false,
        ),
        (
            "named by class",
            &class_only,
            Some(claim("line-3", &[], Some("fast"), Some("images"))),
            true,
        ),
        (
            "another policy named",
            &class_only,
            Some(claim("line-3", &[], Some("fast"), Some("videos"))),
            false,
        ),
        (
            "cli: expression",
            &cli,
            Some(claim("any", &[("app", "x")], None, None)),
            true,
        ),
        (
            "cli: expression fails",
            &cli,
            Some(claim("any", &[], None, None)),
            false,
        ),
        (
            "cli: named by class",
            &cli,
            Some(claim("any", &[], None, Some("images"))),
            true,
        ),
        ("cli: no claim", &cli, None, false),
    ];
    for (what, p, c, want) in cases {
        assert_eq!(p.selects_volume("pvc-1", &none, c.as_ref()), want, "{what}");
    }
    // A policy with no claim criteria and no origin selects every volume, claim or not.
    let plain = policy(&format!("name: p\n{LAKE_AND_RULE}"));
    assert!(plain.selects_volume("v", &none, None));
    assert!(plain.selects_volume("v", &none, Some(&claim("a", &[], None, None))));
    assert_eq!(by_labels.kubernetes().map(|o| o.generation), Some(4));
}

#[test]
fn policy_claim_selector_errors() {
    let errs = errors(&format!(
        "name: p\nselector:\n  claimLabels:\n    matchLabels: {{\"bad key!\": x, ok: \"-no\"}}\n    matchExpressions:\n      - {{key: a, operator: In}}\n      - {{key: b, operator: Exists, values: [x]}}\n      - {{key: c, operator: Near, values: [x]}}\n  storageClasses: fast\nkubernetes: {{namespace: Line_3, name: x}}\n{LAKE_AND_RULE}"
    ));
    let want = [
        "selector.claimLabels.matchLabels.bad key!",
        "selector.claimLabels.matchLabels.ok",
        "selector.claimLabels.matchExpressions[0].values",
        "selector.claimLabels.matchExpressions[1].values",
        "selector.claimLabels.matchExpressions[2].operator",
        "selector.storageClasses",
        "kubernetes.namespace",
    ];
    for w in want {
        assert!(
            errs.iter().any(|e| e.starts_with(&format!("{w}:"))),
            "{w} not in {errs:#?}"
        );
    }
}
