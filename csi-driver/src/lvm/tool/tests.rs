use std::collections::VecDeque;
use std::sync::Mutex;

use super::*;

/// Records every command line and answers from a script.
#[derive(Debug, Default)]
struct Script {
    calls: Mutex<Vec<Vec<String>>>,
    answers: Mutex<VecDeque<RunOutput>>,
}

impl Runner for Script {
    fn name(&self) -> &'static str {
        "script"
    }
    fn run(&self, args: &[String]) -> Result<RunOutput, LvmError> {
        self.calls.lock().unwrap().push(args.to_vec());
        Ok(self
            .answers
            .lock()
            .unwrap()
            .pop_front()
            .expect("an answer for every command"))
    }
}

fn tool(extra_config: Option<&str>, answers: Vec<RunOutput>) -> LvmTool<Script> {
    let script = Script {
        answers: Mutex::new(answers.into()),
        ..Script::default()
    };
    LvmTool::new(
        script,
        LvmOptions {
            extra_config: extra_config.map(str::to_owned),
            ..LvmOptions::default()
        },
    )
}

fn calls(t: &LvmTool<Script>) -> Vec<String> {
    t.runner()
        .calls
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.join(" "))
        .collect()
}

fn ok(stdout: &str) -> RunOutput {
    RunOutput {
        code: 0,
        stdout: stdout.to_owned(),
        stderr: String::new(),
    }
}

fn failed(code: i32, stdout: &str, stderr: &str) -> RunOutput {
    RunOutput {
        code,
        stdout: stdout.to_owned(),
        stderr: stderr.to_owned(),
    }
}

const VGS_WITH_MISSING: &str = include_str!("../testdata/vgs_with_missing.json");
const LVS_WITH_MISSING: &str = include_str!("../testdata/lvs_with_missing.json");
const LVS_MISSING_LV: &str = include_str!("../testdata/lvs_missing_lv.json");

/// `lvs capvg/<name>` as LVM would print it, from the captured report.
fn lvs_one(name: &str) -> String {
    let report = report::parse_lvs(LVS_WITH_MISSING).unwrap();
    let row = report.rows.iter().find(|r| r.name == name).unwrap();
    format!(
        "  {{\n      \"report\": [\n          {{\n              \"lv\": [\n                  {{\"vg_name\":\"capvg\", \"lv_name\":\"{}\", \"lv_size\":\"{}\", \"lv_tags\":\"{}\", \"lv_attr\":\"{}\", \"pool_lv\":\"{}\", \"lv_path\":\"{}\", \"data_percent\":\"\", \"metadata_percent\":\"\"}}\n              ]\n          }}\n      ]\n  }}\n",
        row.name,
        row.size_bytes,
        row.tags.join(","),
        row.attr,
        row.pool.clone().unwrap_or_default(),
        row.path
    )
}

#[test]
fn reports_carry_the_command_log_and_extra_config() {
    let t = tool(
        Some("global{activation=0}"),
        vec![failed(5, VGS_WITH_MISSING, "")],
    );
    let vgs = t.vgs(&["capvg".into(), "missingvg".into()]).unwrap();
    assert_eq!(vgs.len(), 1);
    assert_eq!(
        calls(&t),
        [
            "vgs --config global{activation=0}log{report_command_log=1}report{time_format=\"%s\"} --reportformat json --units b --nosuffix \
          -o vg_name,vg_size,vg_free,vg_extent_size capvg missingvg"
        ]
    );
    let t = tool(None, vec![ok(LVS_WITH_MISSING)]);
    t.lvs(&["capvg".into()]).unwrap();
    assert!(
        calls(&t)[0].starts_with(
            "lvs --config log{report_command_log=1}report{time_format=\"%s\"} --reportformat json"
        ),
        "{:?}",
        calls(&t)
    );
}

#[test]
fn no_names_asks_nothing() {
    let t = tool(None, vec![]);
    assert!(t.vgs(&[]).unwrap().is_empty());
    assert!(t.lvs(&[]).unwrap().is_empty());
    assert!(calls(&t).is_empty());
}

#[test]
fn missing_vgs_are_skipped_other_errors_fail() {
    let t = tool(None, vec![failed(5, LVS_WITH_MISSING, "")]);
    assert_eq!(
        t.lvs(&["capvg".into(), "missingvg".into()]).unwrap().len(),
        4
    );

    // The same log, but missingvg was not asked for: that is not a skippable miss.
    let t = tool(None, vec![failed(5, LVS_WITH_MISSING, "")]);
    let e = t.lvs(&["capvg".into()]).unwrap_err();
    assert!(
        matches!(e, LvmError::VgNotFound(ref vg) if vg == "missingvg"),
        "{e:?}"
    );

    // Failed before any report: stderr says why.
    let t = tool(
        None,
        vec![failed(
            3,
            "",
            "  Parse error at byte 20 (line 1): unexpected token\n",
        )],
    );
    let e = t.vgs(&["capvg".into()]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "lvm vgs capvg failed (exit 3): Parse error at byte 20 (line 1): unexpected token"
    );

    // Exit 0 and garbage: a report error.
    let t = tool(None, vec![ok("what?")]);
    assert!(matches!(
        t.vgs(&["capvg".into()]).unwrap_err(),
        LvmError::Report { .. }
    ));
}

#[test]
fn thick_lv_with_activation_wipes_and_zeroes() {
    let t = tool(None, vec![ok(""), ok(&lvs_one("thick1"))]);
    let lv = t
        .create_lv(&NewLv {
            vg: "capvg".into(),
            name: "thick1".into(),
            size_bytes: 5 << 20,
            kind: LvKind::Thick,
            tags: vec!["strata".into(), "pv=pvc-1234".into()],
        })
        .unwrap();
    assert_eq!(lv.size_bytes, 8 << 20);
    assert_eq!(
        calls(&t),
        [
            "lvcreate --yes -n thick1 -L 5242880b -Wy -Zy --addtag strata --addtag pv=pvc-1234 capvg",
            "lvs --config log{report_command_log=1}report{time_format=\"%s\"} --reportformat json --units b --nosuffix \
             -o vg_name,lv_name,lv_size,lv_tags,lv_attr,pool_lv,lv_path,data_percent,metadata_percent,lv_time capvg/thick1",
        ]
    );
}

#[test]
fn without_activation_nothing_is_wiped() {
    for config in [
        "global{activation=0}",
        "global/activation=0",
        "devices{scan_lvs=0}global{activation=0}",
    ] {
        let t = tool(Some(config), vec![ok(""), ok(&lvs_one("thin1"))]);
        assert!(!t.activation(), "{config}");
        t.create_lv(&NewLv {
            vg: "capvg".into(),
            name: "thin1".into(),
            size_bytes: 1000,
            kind: LvKind::Thin {
                pool: "pool".into(),
            },
            tags: vec![],
        })
        .unwrap();
        assert_eq!(
            calls(&t)[0],
            format!("lvcreate --config {config} --yes -n thin1 -V 1024b --thin -Wn capvg/pool")
        );
    }
    for config in [
        "global{activation=1}",
        "global{event_activation=0}",
        "global{activation=01}",
    ] {
        assert!(tool(Some(config), vec![]).activation(), "{config}");
    }
}

#[test]
fn thin_pool_is_zeroed() {
    let t = tool(None, vec![ok(""), ok(&lvs_one("pool"))]);
    let pool = t.create_thin_pool("capvg", "pool", 40 << 20).unwrap();
    assert!(pool.is_thin_pool());
    assert_eq!(
        calls(&t)[0],
        "lvcreate --yes --type thin-pool -n pool -L 41943040b -Zy capvg"
    );
}

#[test]
fn whitespace_never_reaches_lvm() {
    let t = tool(Some("global { activation = 0 }"), vec![]);
    let e = t.remove_lv("capvg", "thick1").unwrap_err();
    assert!(
        matches!(
            e,
            LvmError::InvalidArgument {
                reason: "contains whitespace",
                ..
            }
        ),
        "{e:?}"
    );
    let t = tool(None, vec![]);
    let e = t
        .create_lv(&NewLv {
            vg: "capvg".into(),
            name: "a b".into(),
            size_bytes: 1,
            kind: LvKind::Thick,
            tags: vec![],
        })
        .unwrap_err();
    assert!(e.to_string().contains("\"a b\""), "{e}");
    assert!(calls(&t).is_empty());
}

#[test]
fn change_commands() {
    let t = tool(None, vec![ok(""), ok(""), ok(""), ok(""), ok("")]);
    t.create_vg("vg1", &["/dev/loop3".into(), "/dev/loop4".into()])
        .unwrap();
    t.set_active("vg1", "lv1", true).unwrap();
    t.set_active("vg1", "lv1", false).unwrap();
    t.remove_lv("vg1", "lv1").unwrap();
    assert_eq!(
        calls(&t),
        [
            "pvcreate -y /dev/loop3 /dev/loop4",
            "vgcreate vg1 /dev/loop3 /dev/loop4",
            "lvchange -ay -K vg1/lv1",
            "lvchange -an vg1/lv1",
            "lvremove -y vg1/lv1",
        ]
    );
}

#[test]
fn errors_are_typed() {
    let warn = "  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n";
    let t = tool(
        None,
        vec![failed(
            5,
            "",
            &format!("{warn}  Failed to find logical volume \"capvg/nolv\"\n"),
        )],
    );
    let e = t.remove_lv("capvg", "nolv").unwrap_err();
    assert!(
        matches!(e, LvmError::LvNotFound { ref vg, ref name } if vg == "capvg" && name == "nolv"),
        "{e:?}"
    );

    let t = tool(
        None,
        vec![failed(
            5,
            "",
            &format!(
                "{warn}  Insufficient free space: 999 extents needed, but only 34 available\n"
            ),
        )],
    );
    let e = t.extend_lv("capvg", "thick1", 4000 << 20).unwrap_err();
    assert_eq!(
        e.to_string(),
        "not enough free space in capvg: Insufficient free space: 999 extents needed, but only 34 available"
    );

    let t = tool(None, vec![ok(LVS_MISSING_LV)]);
    let e = t.lv("capvg", "nolv").unwrap_err();
    assert!(matches!(e, LvmError::LvNotFound { .. }), "{e:?}");
}

#[test]
fn extending_to_the_current_size_is_not_an_error() {
    for msg in [
        "New size (2 extents) matches existing size (2 extents).",
        "New size given (1 extents) not larger than existing size (2 extents)",
    ] {
        let t = tool(None, vec![failed(5, "", msg), ok(&lvs_one("thick1"))]);
        assert_eq!(
            t.extend_lv("capvg", "thick1", 1).unwrap().size_bytes,
            8 << 20
        );
        assert_eq!(calls(&t)[0], "lvextend -L 512b capvg/thick1");
    }
}

#[test]
fn sizes_are_whole_sectors() {
    assert_eq!(size_arg(0), "0b");
    assert_eq!(size_arg(1), "512b");
    assert_eq!(size_arg(4 << 20), "4194304b");
    assert_eq!(size_arg(u64::MAX), format!("{}b", u64::MAX - 511));
}

#[test]
fn snapshot_command_lines() {
    let renamed = |from: &str, to: &str| {
        lvs_one(from).replace(
            &format!("\"lv_name\":\"{from}\""),
            &format!("\"lv_name\":\"{to}\""),
        )
    };
    let answers = vec![
        ok(""),
        ok(&renamed("thin1", "snap-1")),
        ok(""),
        ok(&renamed("thin1", "pvc-2")),
        ok(""),
        ok(&renamed("thick1", "snap-2")),
        ok(""),
        ok(&lvs_one("thick1")),
        ok(&lvs_one("thick1")),
    ];
    let t = tool(None, answers);
    let snap = |origin: &str, name: &str, cow: Option<u64>, writable: bool| NewSnapshot {
        vg: "capvg".into(),
        origin: origin.into(),
        name: name.into(),
        cow_bytes: cow,
        writable,
        tags: vec!["strata.io/snapshot".into()],
    };
    t.create_snapshot(&snap("thin1", "snap-1", None, false))
        .unwrap();
    t.create_snapshot(&snap("snap-1", "pvc-2", None, true))
        .unwrap();
    t.create_snapshot(&snap("thick1", "snap-2", Some(3 << 20), false))
        .unwrap();
    t.change_tags(
        "capvg",
        "thick1",
        &["strata.io".into()],
        &["strata.io/filling".into()],
    )
    .unwrap();
    // Nothing to change: only the report.
    t.change_tags("capvg", "thick1", &[], &[]).unwrap();
    let changes: Vec<String> = calls(&t)
        .into_iter()
        .filter(|c| !c.starts_with("lvs "))
        .collect();
    assert_eq!(
        changes,
        [
            "lvcreate --yes -s -n snap-1 -ky -p r --addtag strata.io/snapshot capvg/thin1",
            "lvcreate --yes -s -n pvc-2 -kn -p rw --addtag strata.io/snapshot capvg/snap-1",
            "lvcreate --yes -s -n snap-2 -L 3145728b -p r --addtag strata.io/snapshot capvg/thick1",
            "lvchange --addtag strata.io --deltag strata.io/filling capvg/thick1",
        ]
    );
}
