use super::*;

const VGS_ONE: &str = include_str!("../testdata/vgs_one.json");
const VGS_WITH_MISSING: &str = include_str!("../testdata/vgs_with_missing.json");
const LVS_WITH_MISSING: &str = include_str!("../testdata/lvs_with_missing.json");
const LVS_MISSING_LV: &str = include_str!("../testdata/lvs_missing_lv.json");
const LVCREATE_LOG: &str = include_str!("../testdata/lvcreate_log.json");
const LIB_VGS_WITH_MISSING: &str = include_str!("../testdata/lib_vgs_with_missing.stdout");

fn capvg(free: u64) -> VgInfo {
    VgInfo {
        name: "capvg".into(),
        size_bytes: 205_520_896,
        free_bytes: free,
        extent_bytes: 4_194_304,
    }
}

#[test]
fn vgs_values_are_strings_in_bytes() {
    let r = parse_vgs(VGS_ONE).unwrap();
    assert_eq!(r.rows, vec![capvg(142_606_336)]);
    assert!(r.log.is_empty());
}

#[test]
fn vgs_with_a_missing_vg_keeps_the_existing_one_and_logs_the_other() {
    let r = parse_vgs(VGS_WITH_MISSING).unwrap();
    assert_eq!(r.rows, vec![capvg(142_606_336)]);
    let errors: Vec<_> = r.log.iter().filter(|e| e.is_error()).collect();
    assert_eq!(errors.len(), 2);
    assert_eq!(errors[0].object_type, "vg");
    assert_eq!(errors[0].object_name, "missingvg");
    assert_eq!(errors[0].message, "Volume group \"missingvg\" not found");
    assert_eq!(errors[1].message, "Cannot process volume group missingvg");
    assert_eq!(r.log.last().unwrap().kind, "status");
}

#[test]
fn lvs_thick_thin_and_pool() {
    let r = parse_lvs(LVS_WITH_MISSING).unwrap();
    let names: Vec<&str> = r.rows.iter().map(|lv| lv.name.as_str()).collect();
    assert_eq!(names, ["pool", "thick1", "thick2", "thin1"]);

    let pool = &r.rows[0];
    assert!(pool.is_thin_pool() && !pool.is_active());
    assert_eq!(pool.size_bytes, 40 << 20);
    assert_eq!(
        pool.path, "/dev/capvg/pool",
        "LVM reports no path for a pool: it is made up"
    );
    assert_eq!((pool.data_percent, pool.metadata_percent), (None, None));

    let thick1 = &r.rows[1];
    assert_eq!(
        *thick1,
        LvInfo {
            vg: "capvg".into(),
            name: "thick1".into(),
            // 5 MiB asked: LVM rounded up to two 4 MiB extents.
            size_bytes: 8 << 20,
            // Sorted by LVM, not in --addtag order.
            tags: vec!["ns=default".into(), "pv=pvc-1234".into(), "strata".into()],
            attr: "-wi-XX----".into(),
            pool: None,
            path: "/dev/capvg/thick1".into(),
            data_percent: None,
            metadata_percent: None,
            created: None,
        }
    );
    assert!(r.rows[2].tags.is_empty());

    let thin1 = &r.rows[3];
    assert_eq!(thin1.pool.as_deref(), Some("pool"));
    assert_eq!(thin1.size_bytes, 100 << 20);
    assert!(thin1.attr.starts_with('V') && !thin1.is_thin_pool());
    assert_eq!(r.log.iter().filter(|e| e.is_error()).count(), 2);
}

#[test]
fn lvs_for_a_missing_lv_has_no_rows_and_names_it_in_the_log() {
    let r = parse_lvs(LVS_MISSING_LV).unwrap();
    assert!(r.rows.is_empty());
    let e = r.log.iter().find(|e| e.is_error()).unwrap();
    assert_eq!(
        (
            e.object_type.as_str(),
            e.object_name.as_str(),
            e.object_group.as_str()
        ),
        ("lv", "nolv", "capvg")
    );
    assert_eq!(e.message, "Failed to find logical volume \"capvg/nolv\"");
}

#[test]
fn trailing_comma_in_the_log_is_tolerated() {
    assert!(
        serde_json::from_str::<serde_json::Value>(LVCREATE_LOG.trim()).is_err(),
        "LVM's text is not JSON"
    );
    let log = parse_log(LVCREATE_LOG).unwrap();
    assert_eq!(log.len(), 5);
    assert_eq!(log[4].message, "Logical volume \"thick3\" created.");
    assert!(log.iter().all(|e| !e.is_error()));
}

#[test]
fn text_before_and_after_the_report_is_skipped() {
    let text = format!(
        "  WARNING: Activation disabled. No device-mapper interaction will be attempted.\n{VGS_ONE}trailing noise\n"
    );
    assert_eq!(parse_vgs(&text).unwrap().rows, vec![capvg(142_606_336)]);
}

#[test]
fn commas_inside_strings_are_kept() {
    let text = "{\"log\": [{\"log_type\":\"error\", \"log_message\":\"a, ]b,}\"},]}";
    assert_eq!(parse_log(text).unwrap()[0].message, "a, ]b,}");
    assert_eq!(
        strip_trailing_commas(r#"{"a":"x\",]",}"#),
        r#"{"a":"x\",]"}"#
    );
}

#[test]
fn numbers_as_json_numbers_are_accepted() {
    let text = "{\"report\":[{\"vg\":[{\"vg_name\":\"v\",\"vg_size\":8,\"vg_free\":4,\"vg_extent_size\":4}]}]}";
    assert_eq!(parse_vgs(text).unwrap().rows[0].size_bytes, 8);
}

#[test]
fn creation_times_as_seconds_or_in_lvm_default_format() {
    let at = |secs: u64| Some(UNIX_EPOCH + Duration::from_secs(secs));
    assert_eq!(parse_time("1796686915"), at(1_796_686_915));
    // The same instant in LVM's default format, in two time zones.
    assert_eq!(parse_time("2026-12-07 23:41:55 +0000"), at(1_796_686_915));
    assert_eq!(parse_time("2026-12-08 05:11:55 +0530"), at(1_796_686_915));
    assert_eq!(parse_time("2026-12-07 18:41:55 -0500"), at(1_796_686_915));
    assert_eq!(parse_time("2024-02-29 00:00:00 +0000"), at(1_709_164_800));
    for bad in [
        "",
        "yesterday",
        "2026-13-01 00:00:00 +0000",
        "2026-12-07 23:41:55",
        "-5",
    ] {
        assert_eq!(parse_time(bad), None, "{bad:?}");
    }
    let text = LVS_WITH_MISSING.replace(
        "\"lv_name\":\"thick1\",",
        "\"lv_name\":\"thick1\", \"lv_time\":\"1796686915\",",
    );
    let r = parse_lvs(&text).unwrap();
    assert_eq!(r.rows[1].name, "thick1");
    assert_eq!(r.rows[1].created, at(1_796_686_915));
    assert_eq!(r.rows[2].created, None, "no lv_time in the report");
}

#[test]
fn percentages() {
    let text = LVS_WITH_MISSING.replace(
        r#""pool_lv":"", "lv_path":"", "data_percent":"", "metadata_percent":"""#,
        r#""pool_lv":"", "lv_path":"", "data_percent":"12.50", "metadata_percent":"0.00""#,
    );
    let pool = parse_lvs(&text).unwrap().rows.remove(0);
    assert_eq!(
        (pool.data_percent, pool.metadata_percent),
        (Some(12.5), Some(0.0))
    );
}

#[test]
fn bad_reports_say_what_is_wrong() {
    let e = parse_vgs("no json here").unwrap_err();
    assert!(e.contains("no JSON"), "{e}");
    let e = parse_vgs(&VGS_ONE.replace("\"205520896\"", "\"196.00m\"")).unwrap_err();
    assert!(e.contains("vg_size") && e.contains("--units b"), "{e}");
    let e = parse_vgs(&VGS_ONE.replace("\"vg_name\":\"capvg\", ", "")).unwrap_err();
    assert!(e.contains("vg_name"), "{e}");
    let e = parse_lvs(
        &LVS_WITH_MISSING
            .replace("\"12582912\"", "x")
            .replace("\"data_percent\":\"\"", "\"data_percent\":\"n/a\""),
    )
    .unwrap_err();
    assert!(e.contains("data_percent"), "{e}");
}

#[test]
fn the_library_backend_prints_the_same_report() {
    let r = parse_vgs(LIB_VGS_WITH_MISSING).unwrap();
    assert_eq!(r.rows.len(), 1);
    assert_eq!(
        (r.rows[0].size_bytes, r.rows[0].extent_bytes),
        (264_241_152, 4_194_304)
    );
    let missing: Vec<&str> = r
        .log
        .iter()
        .filter(|e| e.is_error())
        .map(|e| e.object_name.as_str())
        .collect();
    assert_eq!(missing, ["missingvg", "missingvg"]);
}

#[test]
fn hidden_lvs_are_left_out() {
    // As liblvm2cmd reported a pool after an `lvchange -an` in the same handle (real-kernel guest).
    let hidden = r#"{"vg_name":"capvg", "lv_name":"[pool_tdata]", "lv_size":"67108864", "lv_tags":"", "lv_attr":"Twi-ao----", "pool_lv":"", "lv_path":"", "data_percent":"", "metadata_percent":""},
                  {"vg_name":"capvg", "lv_name":"[pool_tmeta]", "lv_size":"4194304", "lv_tags":"", "lv_attr":"ewi-ao----", "pool_lv":"", "lv_path":"", "data_percent":"", "metadata_percent":""},
                  {"vg_name":"capvg", "lv_name":"thick1""#;
    let text = LVS_WITH_MISSING.replacen(r#"{"vg_name":"capvg", "lv_name":"thick1""#, hidden, 1);
    assert_ne!(text, LVS_WITH_MISSING);
    let names: Vec<String> = parse_lvs(&text)
        .unwrap()
        .rows
        .into_iter()
        .map(|lv| lv.name)
        .collect();
    assert_eq!(names, ["pool", "thick1", "thick2", "thin1"]);
}
