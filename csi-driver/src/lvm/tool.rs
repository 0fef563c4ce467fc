//! [`LvmTool`]: the [`Lvm`] operations as `lvm` command lines, run by any
//! [`Runner`], with JSON reports for everything that reads.

use std::path::PathBuf;

use tracing::{debug, warn};

use super::diagnose::{self, Subject};
use super::report::{self, LogEntry, Report};
use super::{
    LvInfo, LvKind, Lvm, LvmError, LvmOptions, NewLv, NewSnapshot, RunOutput, Runner, VgInfo,
};

/// Implements [`Lvm`] by building `lvm` argument lists and parsing what
/// comes back; the [`Runner`] decides how a command line is executed.
#[derive(Debug)]
pub struct LvmTool<R: Runner> {
    runner: R,
    options: LvmOptions,
    activation: bool,
}

impl<R: Runner> LvmTool<R> {
    /// Wrap `runner`; `options.extra_config` is added as `--config` to every command.
    pub fn new(runner: R, options: LvmOptions) -> Self {
        let activation = !activation_disabled(options.extra_config.as_deref());
        LvmTool {
            runner,
            options,
            activation,
        }
    }

    /// The runner commands go through.
    pub fn runner(&self) -> &R {
        &self.runner
    }

    /// False when `extra_config` turns activation off (`global{activation=0}`):
    /// LVs are then created without zeroing or wiping, which needs a device.
    pub fn activation(&self) -> bool {
        self.activation
    }

    /// One LV, or [`LvmError::LvNotFound`] / [`LvmError::VgNotFound`].
    pub fn lv(&self, vg: &str, name: &str) -> Result<LvInfo, LvmError> {
        let object = format!("{vg}/{name}");
        let subject = Subject {
            command: "lvs",
            object: &object,
            vg,
        };
        let (report, out) = self.report(
            "lvs",
            report::LV_FIELDS,
            std::slice::from_ref(&object),
            report::parse_lvs,
        )?;
        if let Some(lv) = report
            .rows
            .into_iter()
            .find(|lv| lv.vg == vg && lv.name == name)
        {
            return Ok(lv);
        }
        let errors: Vec<&str> = report
            .log
            .iter()
            .filter(|e| e.is_error())
            .map(|e| e.message.as_str())
            .collect();
        match diagnose::classify(subject, out.code, &errors) {
            // Exit 0 with no row, or an error that says nothing specific: the LV is not there.
            LvmError::Failed { .. } if errors.is_empty() => Err(LvmError::LvNotFound {
                vg: vg.to_owned(),
                name: name.to_owned(),
            }),
            e => Err(e),
        }
    }

    /// `--config` text for a command: `extra_config`, plus for reports the
    /// command log inside the JSON and times as seconds since the epoch
    /// (sections concatenate without a separator:
    /// `global{activation=0}log{report_command_log=1}report{time_format="%s"}`;
    /// the quotes reach LVM as they are, with either backend).
    fn config(&self, report: bool) -> Option<String> {
        let extra = self
            .options
            .extra_config
            .as_deref()
            .filter(|c| !c.is_empty());
        match (extra, report) {
            (None, false) => None,
            (Some(extra), false) => Some(extra.to_owned()),
            (extra, true) => Some(format!(
                "{}log{{report_command_log=1}}report{{time_format=\"%s\"}}",
                extra.unwrap_or("")
            )),
        }
    }

    /// `sub` followed by `--config …` when there is any.
    fn command(&self, sub: &str, report: bool) -> Vec<String> {
        let mut args = vec![sub.to_owned()];
        if let Some(config) = self.config(report) {
            args.push("--config".to_owned());
            args.push(config);
        }
        args
    }

    /// Check the arguments and run them.
    fn exec(&self, args: &[String]) -> Result<RunOutput, LvmError> {
        if let Some(bad) = args
            .iter()
            .find(|a| a.is_empty() || a.chars().any(char::is_whitespace))
        {
            let reason = if bad.is_empty() {
                "empty"
            } else {
                "contains whitespace"
            };
            return Err(LvmError::InvalidArgument {
                argument: bad.clone(),
                reason,
            });
        }
        debug!(backend = self.runner.name(), args = ?args, "lvm");
        // Every command of both backends passes here: time it once.
        let start = std::time::Instant::now();
        let out = self.runner.run(args);
        let operation = args.first().map_or("", String::as_str);
        crate::metrics::observe_lvm_command(self.runner.name(), operation, start.elapsed());
        out
    }

    /// Run a command that changes something; typed error on failure.
    fn change(&self, subject: Subject<'_>, args: &[String]) -> Result<RunOutput, LvmError> {
        let out = self.exec(args)?;
        if out.code == 0 {
            return Ok(out);
        }
        let lines: Vec<&str> = out.stderr.lines().collect();
        Err(diagnose::classify(subject, out.code, &lines))
    }

    /// Run a JSON report (`vgs`/`lvs`) over `names` and parse it. The exit
    /// code is left to the caller, which knows which errors it expects.
    fn report<T>(
        &self,
        sub: &str,
        fields: &str,
        names: &[String],
        parse: fn(&str) -> Result<Report<T>, String>,
    ) -> Result<(Report<T>, RunOutput), LvmError> {
        let mut args = self.command(sub, true);
        args.extend(
            [
                "--reportformat",
                "json",
                "--units",
                "b",
                "--nosuffix",
                "-o",
                fields,
            ]
            .map(str::to_owned),
        );
        args.extend(names.iter().cloned());
        let out = self.exec(&args)?;
        match parse(&out.stdout) {
            Ok(report) => Ok((report, out)),
            Err(reason) if out.code == 0 => Err(LvmError::Report {
                command: sub.to_owned(),
                reason,
            }),
            // It failed before printing a report (bad option, bad config): say why.
            Err(_) => {
                let object = names.join(",");
                let subject = Subject {
                    command: sub,
                    object: &object,
                    vg: names.first().map_or("", String::as_str),
                };
                Err(diagnose::classify(
                    subject,
                    out.code,
                    &out.stderr.lines().collect::<Vec<_>>(),
                ))
            }
        }
    }

    /// Run a report over whole VGs: missing VGs are skipped, any other error fails.
    fn report_vgs<T>(
        &self,
        sub: &str,
        fields: &str,
        vgs: &[String],
        parse: fn(&str) -> Result<Report<T>, String>,
    ) -> Result<Vec<T>, LvmError> {
        // No names would mean "all VGs" to LVM; the contract is "the named ones".
        if vgs.is_empty() {
            return Ok(Vec::new());
        }
        let (report, out) = self.report(sub, fields, vgs, parse)?;
        // LVM reports the VGs it found, then exits 5 with "Volume group "x" not
        // found" and "Cannot process volume group x" for each missing one.
        let missing: Vec<&str> = report
            .log
            .iter()
            .filter(|e| e.is_error())
            .filter_map(|e| diagnose::vg_not_found(&e.message))
            .filter(|vg| vgs.iter().any(|n| n == vg))
            .collect();
        let unexplained: Vec<&LogEntry> = report
            .log
            .iter()
            .filter(|e| {
                e.is_error()
                    && !(e.object_type == "vg" && missing.contains(&e.object_name.as_str()))
            })
            .collect();
        if out.code == 0 || (unexplained.is_empty() && !missing.is_empty()) {
            for e in unexplained {
                warn!(command = sub, message = %e.message, "lvm reported an error but succeeded");
            }
            return Ok(report.rows);
        }
        let object = vgs.join(",");
        let subject = Subject {
            command: sub,
            object: &object,
            vg: &vgs[0],
        };
        let lines: Vec<&str> = if unexplained.is_empty() {
            out.stderr.lines().collect()
        } else {
            unexplained.iter().map(|e| e.message.as_str()).collect()
        };
        Err(diagnose::classify(subject, out.code, &lines))
    }

    /// `-Wy -Zy --yes` wipes signatures and zeroes the start, so an old
    /// filesystem on recycled extents is never mistaken for the new volume's.
    /// Both need the LV's device: with activation disabled LVM only warns
    /// ("Skipping zeroing and wipping"), so say `-Wn -Zn` explicitly then.
    fn wipe_args(&self, zero: bool) -> Vec<String> {
        let (w, z) = if self.activation {
            ("-Wy", "-Zy")
        } else {
            ("-Wn", "-Zn")
        };
        let mut args = vec![w.to_owned()];
        if zero {
            args.push(z.to_owned());
        }
        args
    }
}

impl<R: Runner> Lvm for LvmTool<R> {
    fn backend(&self) -> &'static str {
        self.runner.name()
    }

    fn vgs(&self, names: &[String]) -> Result<Vec<VgInfo>, LvmError> {
        self.report_vgs("vgs", report::VG_FIELDS, names, report::parse_vgs)
    }

    fn lvs(&self, vgs: &[String]) -> Result<Vec<LvInfo>, LvmError> {
        self.report_vgs("lvs", report::LV_FIELDS, vgs, report::parse_lvs)
    }

    fn inventory(&self, vgs: &[String]) -> Result<(Vec<VgInfo>, Vec<LvInfo>), LvmError> {
        let rows = self.report_vgs(
            "lvs",
            report::INVENTORY_FIELDS,
            vgs,
            report::parse_inventory,
        )?;
        let mut found: Vec<VgInfo> = Vec::new();
        let mut lvs = Vec::with_capacity(rows.len());
        for (vg, lv) in rows {
            if !found.iter().any(|v| v.name == vg.name) {
                found.push(vg);
            }
            lvs.push(lv);
        }
        // A VG without LVs has no row in an lvs report: ask vgs for those only.
        let rest: Vec<String> = vgs
            .iter()
            .filter(|n| !found.iter().any(|v| &v.name == *n))
            .cloned()
            .collect();
        found.extend(self.vgs(&rest)?);
        Ok((found, lvs))
    }

    fn create_vg(&self, vg: &str, devices: &[PathBuf]) -> Result<(), LvmError> {
        let devices = devices
            .iter()
            .map(|d| {
                d.to_str()
                    .map(str::to_owned)
                    .ok_or_else(|| LvmError::InvalidArgument {
                        argument: d.display().to_string(),
                        reason: "device path is not UTF-8",
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let subject = Subject {
            command: "pvcreate",
            object: vg,
            vg,
        };
        let mut args = self.command("pvcreate", false);
        args.push("-y".to_owned());
        args.extend(devices.iter().cloned());
        self.change(subject, &args)?;
        let mut args = self.command("vgcreate", false);
        args.push(vg.to_owned());
        args.extend(devices);
        self.change(
            Subject {
                command: "vgcreate",
                ..subject
            },
            &args,
        )?;
        Ok(())
    }

    fn create_lv(&self, new: &NewLv) -> Result<LvInfo, LvmError> {
        let object = format!("{}/{}", new.vg, new.name);
        let mut args = self.command("lvcreate", false);
        args.extend(["--yes", "-n", &new.name].map(str::to_owned));
        match &new.kind {
            LvKind::Thick => {
                args.extend(["-L".to_owned(), size_arg(new.size_bytes)]);
                args.extend(self.wipe_args(true));
            }
            LvKind::Thin { .. } => {
                args.extend([
                    "-V".to_owned(),
                    size_arg(new.size_bytes),
                    "--thin".to_owned(),
                ]);
                // Zeroing is the pool's (create_thin_pool turns it on).
                args.extend(self.wipe_args(false));
            }
        }
        for tag in &new.tags {
            args.extend(["--addtag".to_owned(), tag.clone()]);
        }
        args.push(match &new.kind {
            LvKind::Thick => new.vg.clone(),
            LvKind::Thin { pool } => format!("{}/{pool}", new.vg),
        });
        self.change(
            Subject {
                command: "lvcreate",
                object: &object,
                vg: &new.vg,
            },
            &args,
        )?;
        self.lv(&new.vg, &new.name)
    }

    fn create_thin_pool(&self, vg: &str, name: &str, size_bytes: u64) -> Result<LvInfo, LvmError> {
        let object = format!("{vg}/{name}");
        let mut args = self.command("lvcreate", false);
        args.extend(["--yes", "--type", "thin-pool", "-n", name, "-L"].map(str::to_owned));
        args.push(size_arg(size_bytes));
        // Here -Z is a property of the pool (zero newly provisioned blocks), not
        // an action, so it holds with activation disabled too; -W is refused
        // ("Option --wipesignatures is unsupported with thin pools").
        args.push("-Zy".to_owned());
        args.push(vg.to_owned());
        self.change(
            Subject {
                command: "lvcreate",
                object: &object,
                vg,
            },
            &args,
        )?;
        self.lv(vg, name)
    }

    fn extend_lv(&self, vg: &str, name: &str, size_bytes: u64) -> Result<LvInfo, LvmError> {
        let object = format!("{vg}/{name}");
        let mut args = self.command("lvextend", false);
        args.extend(["-L".to_owned(), size_arg(size_bytes), object.clone()]);
        match self.change(
            Subject {
                command: "lvextend",
                object: &object,
                vg,
            },
            &args,
        ) {
            Ok(_) => {}
            // "New size (2 extents) matches existing size (2 extents)." or
            // "New size given (1 extents) not larger than existing size (2 extents)"
            Err(LvmError::Failed { message, .. })
                if message.contains("matches existing size")
                    || message.contains("not larger than existing size") => {}
            Err(e) => return Err(e),
        }
        self.lv(vg, name)
    }

    fn remove_lv(&self, vg: &str, name: &str) -> Result<(), LvmError> {
        let object = format!("{vg}/{name}");
        let mut args = self.command("lvremove", false);
        args.extend(["-y".to_owned(), object.clone()]);
        self.change(
            Subject {
                command: "lvremove",
                object: &object,
                vg,
            },
            &args,
        )?;
        Ok(())
    }

    fn set_active(&self, vg: &str, name: &str, active: bool) -> Result<(), LvmError> {
        let object = format!("{vg}/{name}");
        let mut args = self.command("lvchange", false);
        // -K: thin snapshots carry the activation-skip flag.
        args.extend(
            if active {
                vec!["-ay", "-K"]
            } else {
                vec!["-an"]
            }
            .into_iter()
            .map(str::to_owned),
        );
        args.push(object.clone());
        self.change(
            Subject {
                command: "lvchange",
                object: &object,
                vg,
            },
            &args,
        )?;
        Ok(())
    }

    fn create_snapshot(&self, new: &NewSnapshot) -> Result<LvInfo, LvmError> {
        let object = format!("{}/{}", new.vg, new.name);
        let mut args = self.command("lvcreate", false);
        args.extend(["--yes", "-s", "-n", &new.name].map(str::to_owned));
        if let Some(cow) = new.cow_bytes {
            args.extend(["-L".to_owned(), size_arg(cow)]);
        } else {
            // Thin snapshots carry LVM's activation-skip flag by default: keep
            // it on read-only snapshots (never activated at boot or by
            // `vgchange -ay`), drop it on clones, which are volumes.
            args.push(if new.writable { "-kn" } else { "-ky" }.to_owned());
        }
        args.extend([
            "-p".to_owned(),
            if new.writable { "rw" } else { "r" }.to_owned(),
        ]);
        for tag in &new.tags {
            args.extend(["--addtag".to_owned(), tag.clone()]);
        }
        args.push(format!("{}/{}", new.vg, new.origin));
        self.change(
            Subject {
                command: "lvcreate",
                object: &object,
                vg: &new.vg,
            },
            &args,
        )?;
        self.lv(&new.vg, &new.name)
    }

    fn change_tags(
        &self,
        vg: &str,
        name: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<LvInfo, LvmError> {
        let object = format!("{vg}/{name}");
        if !add.is_empty() || !remove.is_empty() {
            let mut args = self.command("lvchange", false);
            for tag in add {
                args.extend(["--addtag".to_owned(), tag.clone()]);
            }
            for tag in remove {
                args.extend(["--deltag".to_owned(), tag.clone()]);
            }
            args.push(object.clone());
            self.change(
                Subject {
                    command: "lvchange",
                    object: &object,
                    vg,
                },
                &args,
            )?;
        }
        self.lv(vg, name)
    }
}

/// `-L`/`-V` value in bytes. LVM wants a multiple of 512 ("Size is not a
/// multiple of 512") and rounds up to whole extents itself.
fn size_arg(bytes: u64) -> String {
    format!(
        "{}b",
        bytes
            .checked_next_multiple_of(512)
            .unwrap_or(u64::MAX / 512 * 512)
    )
}

/// True when the config text sets `activation=0` (as `global{activation=0}`
/// or `global/activation=0`).
fn activation_disabled(config: Option<&str>) -> bool {
    let Some(config) = config else { return false };
    config.match_indices("activation=0").any(|(at, m)| {
        let before = config[..at].chars().next_back();
        let after = config[at + m.len()..].chars().next();
        matches!(before, None | Some('{' | '/' | ',' | ';'))
            && !matches!(after, Some(c) if c.is_ascii_digit())
    })
}

#[cfg(test)]
mod tests;
