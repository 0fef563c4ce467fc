//! The progress of a recall on stderr: a bar on a terminal, plain lines
//! (at most one a second, and the last) when stderr is a file or a pipe.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};
use strata_proto::strata::v1 as pb;

use super::format::bytes;

pub(super) enum Progress {
    Bar(ProgressBar),
    Lines {
        last: Option<Instant>,
        pending: Option<String>,
    },
}

impl Progress {
    pub(super) fn new() -> Self {
        if !std::io::stderr().is_terminal() {
            return Self::Lines {
                last: None,
                pending: None,
            };
        }
        let bar = ProgressBar::new(0);
        let style = ProgressStyle::with_template(
            "recall [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
        )
        .map(|s| s.progress_chars("=> "))
        .unwrap_or_else(|_| ProgressStyle::default_bar());
        bar.set_style(style);
        bar.enable_steady_tick(Duration::from_millis(200));
        Self::Bar(bar)
    }

    pub(super) fn update(&mut self, p: &pb::RecallProgress) {
        match self {
            Self::Bar(bar) => {
                bar.set_length(p.bytes_total);
                bar.set_position(p.bytes_done);
                bar.set_message(format!(
                    "{}/{} files {}",
                    p.files_done, p.files_total, p.current
                ));
            }
            Self::Lines { last, pending } => {
                let line = line(p);
                if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(1)) {
                    eprintln!("{line}");
                    *last = Some(Instant::now());
                    *pending = None;
                } else {
                    *pending = Some(line);
                }
            }
        }
    }

    /// Clears the bar, or prints the last line held back.
    pub(super) fn finish(self) {
        match self {
            Self::Bar(bar) => bar.finish_and_clear(),
            Self::Lines { pending, .. } => {
                if let Some(line) = pending {
                    eprintln!("{line}");
                }
                let _ = std::io::stderr().flush();
            }
        }
    }
}

/// One plain progress line.
pub(super) fn line(p: &pb::RecallProgress) -> String {
    let mut s = format!(
        "recall: {}/{} files, {}/{}",
        p.files_done,
        p.files_total,
        bytes(p.bytes_done),
        bytes(p.bytes_total)
    );
    if !p.current.is_empty() {
        s.push_str(", now ");
        s.push_str(&p.current);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_lines() {
        let p = pb::RecallProgress {
            files_done: 3,
            files_total: 10,
            bytes_done: 1 << 20,
            bytes_total: 4 << 20,
            current: "img/a.jpg".into(),
        };
        assert_eq!(
            line(&p),
            "recall: 3/10 files, 1.0 MiB/4.0 MiB, now img/a.jpg"
        );
        let done = pb::RecallProgress {
            current: String::new(),
            files_done: 10,
            bytes_done: 4 << 20,
            ..p
        };
        assert_eq!(line(&done), "recall: 10/10 files, 4.0 MiB/4.0 MiB");
    }
}
