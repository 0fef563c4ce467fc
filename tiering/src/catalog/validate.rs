//! Checks on the fields of commands: names, paths, sizes.

use super::outcome::Rejected;

/// Longest error message kept in a record; longer ones are cut (at a char boundary).
pub(super) const MAX_ERROR_LEN: usize = 1024;
/// Longest name (volume id, policy, rule, run id).
pub(super) const MAX_NAME_LEN: usize = 253;
/// Longest path or lake key.
pub(super) const MAX_PATH_LEN: usize = 4096;
/// Largest policy document.
pub(super) const MAX_SPEC_LEN: usize = 1 << 20;

pub(super) fn invalid(field: &str, reason: &str) -> Rejected {
    Rejected::Invalid {
        field: field.to_owned(),
        reason: reason.to_owned(),
    }
}

pub(super) fn check_name(field: &str, s: &str) -> Result<(), Rejected> {
    if s.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(invalid(field, "longer than 253 bytes"));
    }
    if s.chars().any(char::is_control) {
        return Err(invalid(field, "contains a control character"));
    }
    Ok(())
}

/// A relative, normalised, `/`-separated path.
pub(super) fn check_path(field: &str, s: &str) -> Result<(), Rejected> {
    if s.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if s.len() > MAX_PATH_LEN {
        return Err(invalid(field, "longer than 4096 bytes"));
    }
    if s.starts_with('/') {
        return Err(invalid(field, "must be relative to the volume root"));
    }
    if s.contains('\0') {
        return Err(invalid(field, "contains a NUL byte"));
    }
    if s.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        return Err(invalid(field, "has an empty, `.` or `..` component"));
    }
    Ok(())
}

pub(super) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
