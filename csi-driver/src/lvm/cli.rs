//! [`CliRunner`]: runs each command as the `lvm` program, the portable backend.

use std::ffi::OsString;
use std::process::{Command, Stdio};

use super::{LvmError, LvmOptions, RunOutput, Runner};

/// Spawns `[command_prefix…] lvm args…` for every command.
#[derive(Debug, Clone)]
pub struct CliRunner {
    program: OsString,
    leading: Vec<OsString>,
}

impl CliRunner {
    /// A runner for `options.lvm_path` (or `lvm` from `PATH`) behind
    /// `options.command_prefix` (e.g. `nsenter --target 1 --mount --`).
    pub fn new(options: &LvmOptions) -> Self {
        let lvm: OsString = options
            .lvm_path
            .clone()
            .map_or_else(|| "lvm".into(), Into::into);
        match options.command_prefix.split_first() {
            Some((program, rest)) => CliRunner {
                program: program.into(),
                leading: rest
                    .iter()
                    .map(OsString::from)
                    .chain(std::iter::once(lvm))
                    .collect(),
            },
            None => CliRunner {
                program: lvm,
                leading: Vec::new(),
            },
        }
    }
}

impl Runner for CliRunner {
    fn name(&self) -> &'static str {
        "cli"
    }

    fn run(&self, args: &[String]) -> Result<RunOutput, LvmError> {
        let out = Command::new(&self.program)
            .args(&self.leading)
            .args(args)
            .stdin(Stdio::null())
            // lvm complains on stderr about every inherited descriptor otherwise.
            .env("LVM_SUPPRESS_FD_WARNINGS", "1")
            .env("LC_ALL", "C")
            .output()
            .map_err(|source| LvmError::Spawn {
                backend: "cli",
                source,
            })?;
        Ok(RunOutput {
            // Killed by a signal: no code; -1 is never an lvm exit code.
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_comes_before_lvm() {
        let options = LvmOptions {
            command_prefix: vec![
                "nsenter".into(),
                "--target".into(),
                "1".into(),
                "--mount".into(),
                "--".into(),
            ],
            lvm_path: Some("/sbin/lvm".into()),
            ..LvmOptions::default()
        };
        let r = CliRunner::new(&options);
        assert_eq!(r.program, "nsenter");
        assert_eq!(
            r.leading,
            ["--target", "1", "--mount", "--", "/sbin/lvm"].map(OsString::from)
        );
        let r = CliRunner::new(&LvmOptions::default());
        assert_eq!(
            (r.program.as_os_str(), r.leading.len()),
            ("lvm".as_ref(), 0)
        );
    }

    #[test]
    fn collects_code_and_output() {
        // Any program stands in for lvm: the runner does not care.
        let options = LvmOptions {
            lvm_path: Some("sh".into()),
            ..LvmOptions::default()
        };
        let out = CliRunner::new(&options)
            .run(&[
                "-c".into(),
                "echo out; echo err >&2; echo $LVM_SUPPRESS_FD_WARNINGS; exit 5".into(),
            ])
            .unwrap();
        assert_eq!(
            (out.code, out.stdout.as_str(), out.stderr.as_str()),
            (5, "out\n1\n", "err\n")
        );
        let options = LvmOptions {
            lvm_path: Some("/nonexistent/lvm".into()),
            ..LvmOptions::default()
        };
        let e = CliRunner::new(&options).run(&[]).unwrap_err();
        assert!(matches!(e, LvmError::Spawn { backend: "cli", .. }), "{e:?}");
    }
}
