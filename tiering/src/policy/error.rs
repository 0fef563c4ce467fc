//! Policy errors: each one names the field by its path and says why.

use std::fmt;

/// One thing wrong with a policy: where (`rules[0].modifiedBefore`) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyError {
    path: String,
    reason: String,
}

impl PolicyError {
    /// An error at `path` (empty for the document itself).
    pub fn new(path: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            reason: reason.into(),
        }
    }

    /// The field's path, like `rules[0].modifiedBefore`; empty for the whole document.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Why the field is wrong.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for PolicyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.reason)
        } else {
            write!(f, "{}: {}", self.path, self.reason)
        }
    }
}

/// Every error found in a policy. Never empty. Ordered section by section as
/// the schema lists fields; within a mapping, unknown fields come first.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct PolicyErrors(Vec<PolicyError>);

impl PolicyErrors {
    /// Wraps a non-empty list of errors.
    pub(crate) fn new(errors: Vec<PolicyError>) -> Self {
        debug_assert!(
            !errors.is_empty(),
            "PolicyErrors must hold at least one error"
        );
        Self(errors)
    }

    /// The errors.
    pub fn errors(&self) -> &[PolicyError] {
        &self.0
    }

    /// The paths of the errors (handy in tests and UIs).
    pub fn paths(&self) -> Vec<&str> {
        self.0.iter().map(PolicyError::path).collect()
    }
}

/// One error a line, so a CLI can print it as is.
impl fmt::Display for PolicyErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

/// Collects errors while a policy is checked, so that one pass reports them all.
#[derive(Debug, Default)]
pub(crate) struct Sink(Vec<PolicyError>);

impl Sink {
    pub(crate) fn push(&mut self, path: &str, reason: impl Into<String>) {
        self.0.push(PolicyError::new(path, reason));
    }

    pub(crate) fn len(&self) -> usize {
        self.0.len()
    }

    pub(crate) fn into_result<T>(self, value: Option<T>) -> Result<T, PolicyErrors> {
        match value {
            Some(v) if self.0.is_empty() => Ok(v),
            _ if self.0.is_empty() => Err(PolicyErrors::new(vec![PolicyError::new(
                "",
                "invalid policy",
            )])),
            _ => Err(PolicyErrors::new(self.0)),
        }
    }
}

/// `parent.key`, or `key` at the top.
pub(crate) fn field(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
pub(crate) fn index(parent: &str, i: usize) -> String {
    format!("{parent}[{i}]")
}
