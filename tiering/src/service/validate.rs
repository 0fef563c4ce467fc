//! Checks on request fields, before anything reaches the catalog or the
//! engine. Each failure names the field.

use std::collections::BTreeMap;
use std::path::{Component, Path};

use tonic::Status;

use super::error::invalid;
use crate::catalog::FileKey;

/// Longest id, name or label (a DNS subdomain's limit, like the catalog's).
const MAX_NAME_LEN: usize = 253;
/// Files per page when the request does not say.
pub(super) const DEFAULT_PAGE: usize = 100;
/// Most files per page.
pub(super) const MAX_PAGE: usize = 1000;

/// A volume id: letters, digits, `.`, `_`, `-` and `/`, starting and ending
/// with a letter or digit (ids like `line-3/cam-1` match selector globs).
pub(super) fn volume_id(field: &str, id: &str) -> Result<(), Status> {
    if id.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    if id.len() > MAX_NAME_LEN {
        return Err(invalid(field, "longer than 253 bytes"));
    }
    if let Some(c) = id
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
    {
        return Err(invalid(
            field,
            format!("{c:?} is not allowed (letters, digits, '.', '_', '-', '/')"),
        ));
    }
    let edge = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric());
    if !edge(id.chars().next()) || !edge(id.chars().last()) {
        return Err(invalid(field, "must start and end with a letter or digit"));
    }
    if id.contains("//") {
        return Err(invalid(field, "must not contain \"//\""));
    }
    Ok(())
}

/// A name that must be given (policy name in a delete).
pub(super) fn required(field: &str, value: &str) -> Result<(), Status> {
    if value.is_empty() {
        return Err(invalid(field, "must not be empty"));
    }
    Ok(())
}

/// An absolute, normalised path: the directory itself is checked by the caller.
pub(super) fn volume_path(path: &str) -> Result<(), Status> {
    if path.is_empty() {
        return Err(invalid("path", "must not be empty"));
    }
    if !path.starts_with('/') {
        return Err(invalid("path", format!("{path:?} must be absolute")));
    }
    if path.contains('\0') {
        return Err(invalid("path", "contains a NUL byte"));
    }
    if Path::new(path)
        .components()
        .any(|c| matches!(c, Component::CurDir | Component::ParentDir))
    {
        return Err(invalid(
            "path",
            format!("{path:?} must not contain \".\" or \"..\""),
        ));
    }
    Ok(())
}

/// Label keys like Kubernetes' (`app`, `strata.io/pvc`); values without control characters.
pub(super) fn labels(labels: &BTreeMap<String, String>) -> Result<(), Status> {
    for (k, v) in labels {
        if k.is_empty() {
            return Err(invalid("labels", "a key must not be empty"));
        }
        if k.len() > MAX_NAME_LEN {
            return Err(invalid(&format!("labels.{k}"), "key longer than 253 bytes"));
        }
        if let Some(c) = k
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
        {
            return Err(invalid(
                &format!("labels.{}", k.escape_debug()),
                format!("{c:?} is not allowed in a key (letters, digits, '.', '_', '-', '/')"),
            ));
        }
        if v.len() > MAX_NAME_LEN {
            return Err(invalid(
                &format!("labels.{k}"),
                "value longer than 253 bytes",
            ));
        }
        if v.chars().any(char::is_control) {
            return Err(invalid(
                &format!("labels.{k}"),
                "value contains a control character",
            ));
        }
    }
    Ok(())
}

/// A recall glob, compiled with the same rules as a policy's globs.
pub(super) fn glob(pattern: &str) -> Result<(), Status> {
    if pattern.is_empty() {
        return Err(invalid("glob", "must not be empty"));
    }
    if pattern.starts_with('/') {
        return Err(invalid(
            "glob",
            format!("{pattern:?} starts with /, but paths are relative to the volume root"),
        ));
    }
    globset::GlobBuilder::new(pattern)
        .literal_separator(true)
        .backslash_escape(true)
        .build()
        .map(drop)
        .map_err(|e| invalid("glob", format!("invalid glob {pattern:?}: {}", e.kind())))
}

/// The page size a request asks for: 0 is the default, more than the maximum is the maximum.
pub(super) fn page_size(limit: u32) -> usize {
    match limit as usize {
        0 => DEFAULT_PAGE,
        n => n.min(MAX_PAGE),
    }
}

/// The page token of the page after `key`: opaque to clients (hex of the
/// key, a NUL between volume and path, neither of which may hold one).
pub(super) fn page_token(key: &FileKey) -> String {
    let mut token = String::with_capacity(2 * (key.volume.len() + key.path.len() + 1));
    for b in key
        .volume
        .bytes()
        .chain(std::iter::once(0))
        .chain(key.path.bytes())
    {
        token.push_str(&format!("{b:02x}"));
    }
    token
}

/// The key a page token continues after; `None` for an empty token.
pub(super) fn parse_page_token(token: &str) -> Result<Option<FileKey>, Status> {
    if token.is_empty() {
        return Ok(None);
    }
    let malformed = || invalid("page_token", "malformed (pass next_page_token as it came)");
    if !token.len().is_multiple_of(2) {
        return Err(malformed());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| {
            token
                .get(i..i + 2)
                .and_then(|pair| u8::from_str_radix(pair, 16).ok())
        })
        .collect::<Option<Vec<u8>>>()
        .ok_or_else(malformed)?;
    let text = String::from_utf8(bytes).map_err(|_| malformed())?;
    let (volume, path) = text.split_once('\0').ok_or_else(malformed)?;
    Ok(Some(FileKey::new(volume, path)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn volume_ids() {
        for ok in ["a", "line-3", "line-3/cam_1.x", "pvc-0b1c"] {
            assert!(volume_id("id", ok).is_ok(), "{ok}");
        }
        for (bad, msg) in [
            ("", "id: must not be empty"),
            (
                "a b",
                "id: ' ' is not allowed (letters, digits, '.', '_', '-', '/')",
            ),
            ("-a", "id: must start and end with a letter or digit"),
            ("a/", "id: must start and end with a letter or digit"),
            ("a//b", "id: must not contain \"//\""),
        ] {
            assert_eq!(volume_id("id", bad).unwrap_err().message(), msg, "{bad:?}");
        }
    }

    #[test]
    fn paths() {
        assert!(volume_path("/srv/line-3").is_ok());
        assert_eq!(
            volume_path("srv").unwrap_err().message(),
            "path: \"srv\" must be absolute"
        );
        assert!(volume_path("/srv/../etc").is_err());
    }

    #[test]
    fn globs() {
        assert!(glob("**/*.jpg").is_ok());
        assert!(
            glob("a/[")
                .unwrap_err()
                .message()
                .starts_with("glob: invalid glob")
        );
        assert!(glob("/abs").is_err());
    }

    #[test]
    fn page_tokens_round_trip() {
        let key = FileKey::new("line-3", "a/b ü.jpg");
        assert_eq!(parse_page_token(&page_token(&key)).unwrap(), Some(key));
        assert_eq!(parse_page_token("").unwrap(), None);
        for bad in ["0", "zz", "6162", "ff00"] {
            assert!(parse_page_token(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn page_sizes() {
        assert_eq!(page_size(0), DEFAULT_PAGE);
        assert_eq!(page_size(7), 7);
        assert_eq!(page_size(1_000_000), MAX_PAGE);
    }
}
