//! What went wrong, from LVM's own words: its error lines mapped to the typed
//! [`LvmError`] variants. Pure functions, tested with messages LVM 2.03.16
//! printed on a loop device.

use super::LvmError;

/// The object a failed command was about, for errors whose message does not
/// name it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Subject<'a> {
    /// `lvcreate`, `lvs`, …
    pub(crate) command: &'a str,
    /// `vg` or `vg/lv`, as shown in [`LvmError::Failed`].
    pub(crate) object: &'a str,
    /// The VG the command worked on.
    pub(crate) vg: &'a str,
}

/// Map a failed command's error lines (stderr, or the JSON log's error
/// entries) to an error.
pub(crate) fn classify(subject: Subject<'_>, code: i32, lines: &[&str]) -> LvmError {
    let lines = error_lines(lines);
    for line in &lines {
        if let Some(vg) = vg_not_found(line) {
            return LvmError::VgNotFound(vg.to_owned());
        }
        if let Some((vg, name)) = lv_not_found(line, subject.vg) {
            return LvmError::LvNotFound {
                vg: vg.to_owned(),
                name: name.to_owned(),
            };
        }
        if is_out_of_space(line) {
            return LvmError::InsufficientSpace {
                vg: subject.vg.to_owned(),
                message: (*line).to_owned(),
            };
        }
    }
    let message = if lines.is_empty() {
        "lvm printed no error message".to_owned()
    } else {
        lines.join("; ")
    };
    LvmError::Failed {
        command: format!("{} {}", subject.command, subject.object),
        code,
        message,
    }
}

/// The lines worth showing: trimmed, non-empty, without the advice to run
/// `--help`; warnings only when nothing else was said.
fn error_lines<'a>(lines: &[&'a str]) -> Vec<&'a str> {
    let lines: Vec<&str> = lines
        .iter()
        .map(|l| l.trim())
        .filter(|l| !l.is_empty() && !is_help_advice(l))
        .collect();
    let errors: Vec<&str> = lines
        .iter()
        .copied()
        .filter(|l| !l.starts_with("WARNING:"))
        .collect();
    if errors.is_empty() { lines } else { errors }
}

/// "Run `lvcreate --help' for more information."
fn is_help_advice(line: &str) -> bool {
    line.starts_with("Run `") && line.ends_with("--help' for more information.")
}

/// `Volume group "vg" not found` (also with a trailing `.` or
/// `, is inconsistent or has PVs missing.`).
pub(crate) fn vg_not_found(line: &str) -> Option<&str> {
    let rest = line.trim().strip_prefix("Volume group \"")?;
    let (vg, tail) = rest.split_once('"')?;
    tail.trim_start().starts_with("not found").then_some(vg)
}

/// The ways LVM says an LV (or the thin pool a command needs) is missing:
/// - `Failed to find logical volume "vg/lv"` (lvremove, lvchange, lvs vg/lv)
/// - `Logical volume lv not found in volume group vg.` (lvextend)
/// - `Pool pool not found in Volume group vg.` (lvcreate --thin)
/// - `Thin pool pool not found.`
/// - `Snapshot origin LV lv not found in Volume group vg.` (lvcreate -s)
fn lv_not_found<'a>(line: &'a str, vg: &'a str) -> Option<(&'a str, &'a str)> {
    let line = line.trim().trim_end_matches('.');
    if let Some(rest) = line.strip_prefix("Failed to find logical volume \"") {
        let full = rest.strip_suffix('"')?;
        return Some(full.split_once('/').unwrap_or((vg, full)));
    }
    for prefix in [
        "Logical volume ",
        "Pool ",
        "Thin pool ",
        "Snapshot origin LV ",
    ] {
        let Some(rest) = line.strip_prefix(prefix) else {
            continue;
        };
        let Some((name, tail)) = rest.split_once(' ') else {
            continue;
        };
        let name = name.trim_matches('"');
        let (vg, name) = name.split_once('/').unwrap_or((vg, name));
        if tail == "not found" {
            return Some((vg, name));
        }
        if let Some(in_vg) = tail
            .strip_prefix("not found in ")
            .and_then(|t| t.split_once(' '))
            .map(|(_, v)| v)
        {
            // "volume group vg" / "Volume group vg"
            let in_vg = in_vg.trim_start_matches("group ").trim_matches('"');
            return Some((in_vg, name));
        }
    }
    None
}

/// The VG or a thin pool has too little room for the request.
pub(crate) fn is_out_of_space(line: &str) -> bool {
    let l = line.to_ascii_lowercase();
    [
        // "Insufficient free space: 999 extents needed, but only 34 available",
        // "Volume group "vg" has insufficient free space (48 extents): 1000 required."
        "insufficient free space",
        "insufficient free extents",
        "insufficient suitable", // "Insufficient suitable allocatable extents for logical volume …"
        "reached threshold", // "Cannot create new thin volume, free space in thin pool … reached threshold."
        "is above threshold", // "Free space in pool … is above threshold, new volumes are not allowed."
        "out of data space",
        "out of metadata space",
    ]
    .iter()
    .any(|needle| l.contains(needle))
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Subject<'static> = Subject {
        command: "lvcreate",
        object: "vg1/lv1",
        vg: "vg1",
    };

    #[test]
    fn vg_not_found_names_the_vg() {
        let e = classify(
            S,
            5,
            &[
                "  WARNING: Activation disabled.",
                "  Volume group \"novg\" not found",
                "  Cannot process volume group novg",
            ],
        );
        assert!(
            matches!(e, LvmError::VgNotFound(ref vg) if vg == "novg"),
            "{e:?}"
        );
        assert_eq!(
            vg_not_found("Volume group \"a\" not found, is inconsistent or has PVs missing."),
            Some("a")
        );
        assert_eq!(
            vg_not_found("Volume group \"a\" has insufficient free space (1 extents): 2 required."),
            None
        );
    }

    #[test]
    fn lv_not_found_in_each_spelling() {
        for (line, vg, name) in [
            (
                "Failed to find logical volume \"expvg/nolv\"",
                "expvg",
                "nolv",
            ),
            (
                "Logical volume nolv not found in volume group expvg.",
                "expvg",
                "nolv",
            ),
            (
                "Pool nopool not found in Volume group expvg.",
                "expvg",
                "nopool",
            ),
            ("Thin pool tp not found.", "vg1", "tp"),
            (
                "Snapshot origin LV ghost not found in Volume group expvg.",
                "expvg",
                "ghost",
            ),
        ] {
            match classify(S, 5, &[line]) {
                LvmError::LvNotFound { vg: v, name: n } => {
                    assert_eq!((v.as_str(), n.as_str()), (vg, name), "{line}")
                }
                other => panic!("{line}: {other:?}"),
            }
        }
    }

    #[test]
    fn out_of_space_in_each_spelling() {
        for line in [
            "Volume group \"expvg\" has insufficient free space (48 extents): 1000 required.",
            "Insufficient free space: 999 extents needed, but only 34 available",
            "Insufficient suitable allocatable extents for logical volume lv1: 10 more required",
            "Cannot create new thin volume, free space in thin pool vg1/pool reached threshold.",
            "Free space in pool vg1/pool is above threshold, new volumes are not allowed.",
        ] {
            match classify(S, 5, &["  WARNING: Activation disabled.", line]) {
                LvmError::InsufficientSpace { vg, message } => {
                    assert_eq!(vg, "vg1");
                    assert_eq!(message, line);
                }
                other => panic!("{line}: {other:?}"),
            }
        }
        assert!(!is_out_of_space(
            "Insufficient memory to stack mknod operation"
        ));
    }

    #[test]
    fn anything_else_is_failed_with_the_error_lines() {
        let e = classify(
            S,
            5,
            &[
                "  WARNING: Activation disabled. No device-mapper interaction will be attempted.",
                "  Logical Volume \"lv1\" already exists in volume group \"vg1\"",
                "  Run `lvcreate --help' for more information.",
            ],
        );
        let text = e.to_string();
        assert!(matches!(e, LvmError::Failed { code: 5, .. }), "{e:?}");
        assert_eq!(
            text,
            "lvm lvcreate vg1/lv1 failed (exit 5): Logical Volume \"lv1\" already exists in volume group \"vg1\""
        );
    }

    #[test]
    fn warnings_are_kept_when_nothing_else_was_said() {
        let e = classify(S, 5, &["  WARNING: something odd", ""]);
        assert!(e.to_string().ends_with("WARNING: something odd"), "{e}");
        let e = classify(S, 2, &[]);
        assert!(
            e.to_string().ends_with("lvm printed no error message"),
            "{e}"
        );
    }
}
