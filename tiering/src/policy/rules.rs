//! Rules: which files are cold, and whether to move or copy them.

use std::path::Path;
use std::time::{Duration, SystemTime};

use globset::{Glob, GlobBuilder, GlobSet, GlobSetBuilder};

/// What to do with a matching file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// Upload, verify, then free the local space.
    Move,
    /// Upload and verify; keep the local file.
    Copy,
}

impl Action {
    /// Parses `move` or `copy`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text {
            "move" => Ok(Self::Move),
            "copy" => Ok(Self::Copy),
            _ => Err(format!("expected move or copy, got {text:?}")),
        }
    }

    /// `move` or `copy`, as written in a policy.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Move => "move",
            Self::Copy => "copy",
        }
    }
}

/// What the scanner knows about a file.
#[derive(Debug, Clone, Copy)]
pub struct FileFacts<'a> {
    /// Path relative to the volume root, `/`-separated, no leading `/`.
    pub path: &'a Path,
    /// Size in bytes.
    pub size: u64,
    /// Last modification time.
    pub modified: SystemTime,
    /// Last access time (coarse on `relatime` mounts: at most a day stale).
    pub accessed: SystemTime,
}

/// The verdict on a file: which rule matched, and what to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decision<'p> {
    /// The matching rule's position in the policy.
    pub rule_index: usize,
    /// The matching rule's name.
    pub rule: &'p str,
    /// What to do with the file.
    pub action: Action,
}

/// A validated rule.
#[derive(Debug, Clone)]
pub struct Rule {
    pub(crate) name: String,
    pub(crate) include: GlobSet,
    pub(crate) exclude: GlobSet,
    pub(crate) modified_before: Option<Duration>,
    pub(crate) accessed_before: Option<Duration>,
    pub(crate) min_size: Option<u64>,
    pub(crate) max_size: Option<u64>,
    pub(crate) action: Action,
}

impl Rule {
    /// The rule's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What the rule does with matching files.
    pub fn action(&self) -> Action {
        self.action
    }

    /// Whether `file` matches at `now`: included (or no include given), not
    /// excluded, old enough, and within the size bounds (both inclusive).
    /// A timestamp in the future (clock skew) never counts as old.
    pub fn matches(&self, file: &FileFacts<'_>, now: SystemTime) -> bool {
        (self.include.is_empty() || self.include.is_match(file.path))
            && !self.exclude.is_match(file.path)
            && older_than(file.modified, self.modified_before, now)
            && older_than(file.accessed, self.accessed_before, now)
            && self.min_size.is_none_or(|min| file.size >= min)
            && self.max_size.is_none_or(|max| file.size <= max)
    }
}

fn older_than(t: SystemTime, limit: Option<Duration>, now: SystemTime) -> bool {
    match limit {
        None => true,
        Some(limit) => now.duration_since(t).is_ok_and(|age| age >= limit),
    }
}

/// Compiles one glob with strata's semantics: `*` and `?` stay within one
/// path segment, `**` crosses segments (`**/*.jpg` matches `c.jpg` and
/// `a/b/c.jpg`).
pub(crate) fn glob(pattern: &str) -> Result<Glob, String> {
    if pattern.starts_with('/') {
        return Err(format!(
            "{pattern:?} starts with /, but paths are relative to the volume root"
        ));
    }
    GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map_err(|e| format!("invalid glob {pattern:?}: {}", e.kind()))
}

/// A set of already-checked globs.
pub(crate) fn glob_set(globs: Vec<Glob>) -> GlobSet {
    let mut builder = GlobSetBuilder::new();
    for g in globs {
        builder.add(g);
    }
    // Every glob compiled on its own already; a set of them cannot fail.
    builder.build().unwrap_or_else(|_| GlobSet::empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(patterns: &[&str]) -> GlobSet {
        glob_set(patterns.iter().map(|p| glob(p).unwrap()).collect())
    }

    #[test]
    fn policy_globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("**/*.jpg", "a/b/c.jpg", true),
            ("**/*.jpg", "c.jpg", true),
            ("**/*.jpg", "c.jpeg", false),
            ("*.jpg", "c.jpg", true),
            ("*.jpg", "a/c.jpg", false),
            ("tmp/**", "tmp/a", true),
            ("tmp/**", "tmp/a/b.jpg", true),
            ("tmp/**", "a/tmp/b.jpg", false),
            ("**/tmp/**", "a/tmp/b.jpg", true),
            ("cam-?/*.png", "cam-1/x.png", true),
            ("cam-?/*.png", "cam-10/x.png", false),
            ("{logs,traces}/**", "traces/x", true),
            ("[ab]/*", "c/x", false),
            ("**", "anything/at/all", true),
        ];
        for (pattern, path, want) in cases {
            assert_eq!(set(&[pattern]).is_match(path), *want, "{pattern} vs {path}");
        }
    }

    #[test]
    fn policy_bad_globs() {
        for (pattern, reason) in [
            ("**/[.jpg", "invalid glob"),
            ("{a,b", "invalid glob"),
            ("/tmp/**", "relative to the volume root"),
        ] {
            let err = glob(pattern).unwrap_err();
            assert!(err.contains(reason), "{pattern}: {err}");
        }
    }

    #[test]
    fn policy_actions() {
        assert_eq!(Action::parse("move"), Ok(Action::Move));
        assert_eq!(Action::parse("copy"), Ok(Action::Copy));
        assert!(
            Action::parse("Move")
                .unwrap_err()
                .contains("expected move or copy")
        );
        assert_eq!(Action::Copy.as_str(), "copy");
    }
}
