//! Running the system tools the node needs (mkfs, blkid, mount, resize2fs, …).

use std::process::{Command, Stdio};

/// A tool that could not be started or that failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExecError {
    /// The program could not be started.
    #[error("could not run {program}: {source}")]
    Spawn {
        /// Program name.
        program: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// The program ran and exited non-zero.
    #[error("{command} failed (exit {code}): {stderr}")]
    Failed {
        /// Program and arguments.
        command: String,
        /// Exit code (-1 when killed by a signal).
        code: i32,
        /// What it printed on stderr (last lines).
        stderr: String,
    },
}

impl ExecError {
    /// The exit code, when the program ran.
    pub fn exit_code(&self) -> Option<i32> {
        match self {
            ExecError::Failed { code, .. } => Some(*code),
            ExecError::Spawn { .. } => None,
        }
    }
}

/// Run `program args…` with stdin closed; stdout on success, a typed error otherwise.
pub fn run(program: &str, args: &[&str]) -> Result<String, ExecError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .env("LC_ALL", "C")
        .output()
        .map_err(|source| ExecError::Spawn {
            program: program.to_owned(),
            source,
        })?;
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let text = if stderr.trim().is_empty() {
        stdout
    } else {
        stderr
    };
    let tail: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = tail[tail.len().saturating_sub(5)..].join("; ");
    Err(ExecError::Failed {
        command: std::iter::once(program)
            .chain(args.iter().copied())
            .collect::<Vec<_>>()
            .join(" "),
        code: out.status.code().unwrap_or(-1),
        stderr: tail,
    })
}
