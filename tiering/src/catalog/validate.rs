//! Checks on the fields of commands: names, paths, sizes.

use super::outcome::Rejected;
use super::types::{Claim, Volume};

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

/// A lake as a record names it: the URL of an `s3://` or `file://` lake
/// with nothing that could be a secret in it (no user, password, query or
/// fragment), so no credential is ever replicated, logged or shown.
pub(super) fn check_lake(field: &str, s: &str) -> Result<(), Rejected> {
    if s.len() > MAX_PATH_LEN {
        return Err(invalid(field, "longer than 4096 bytes"));
    }
    // The text is never echoed: it may carry a secret.
    let url = url::Url::parse(s).map_err(|_| invalid(field, "not a URL"))?;
    if !matches!(url.scheme(), "s3" | "file") {
        return Err(invalid(field, "not an s3:// or file:// lake"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(field, "carries credentials"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(field, "carries a query or fragment"));
    }
    Ok(())
}

/// A volume as a command or snapshot may carry it: a name for an id, an
/// absolute normalised path (no `.`, `..` or empty component: what the
/// agent opens is exactly what was registered), named labels.
pub(super) fn check_volume(v: &Volume) -> Result<(), Rejected> {
    check_name("id", &v.id)?;
    let Some(rest) = v.path.strip_prefix('/') else {
        return Err(invalid("path", "must be absolute"));
    };
    if v.path.len() > MAX_PATH_LEN {
        return Err(invalid("path", "longer than 4096 bytes"));
    }
    if v.path.contains('\0') {
        return Err(invalid("path", "contains a NUL byte"));
    }
    if rest.is_empty()
        || rest
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err(invalid(
            "path",
            "must be a normalised path below / (no empty, `.` or `..` component)",
        ));
    }
    for (k, val) in &v.labels {
        check_name("labels", k)?;
        if val.len() > MAX_NAME_LEN {
            return Err(invalid(&format!("labels.{k}"), "longer than 253 bytes"));
        }
    }
    Ok(())
}

/// A policy as a command or snapshot may carry it: a name, and a document
/// that parses as a policy of that name. The policy module's checks run
/// here, as the entry is applied, so that a client that skipped them
/// (anything but `strata ctl`) stores nothing the agents would refuse.
/// Those checks may grow stricter only in ways that older entries pass.
pub(super) fn check_policy(name: &str, spec: &str) -> Result<(), Rejected> {
    check_name("name", name)?;
    if spec.trim().is_empty() {
        return Err(invalid("spec", "empty policy document"));
    }
    if spec.len() > MAX_SPEC_LEN {
        return Err(invalid("spec", "larger than 1 MiB"));
    }
    let policy = crate::policy::parse_policy(spec)
        .map_err(|e| invalid("spec", &e.to_string().replace('\n', "; ")))?;
    if policy.name() != name {
        return Err(invalid(
            "name",
            &format!("the document is policy {:?}", policy.name()),
        ));
    }
    Ok(())
}

/// Most labels a claim may carry into the catalog.
pub(super) const MAX_CLAIM_LABELS: usize = 64;

/// A claim as Kubernetes allows it: names of the API's lengths, labels with
/// Kubernetes' syntax (so selectors mean the same here as there).
pub(super) fn check_claim(c: &Claim) -> Result<(), Rejected> {
    check_name("pv", &c.pv)?;
    check_dns_label("namespace", &c.namespace)?;
    check_name("name", &c.name)?;
    if let Some(sc) = &c.storage_class {
        check_name("storage_class", sc)?;
    }
    if let Some(p) = &c.class_policy {
        check_name("class_policy", p)?;
    }
    if c.labels.len() > MAX_CLAIM_LABELS {
        return Err(invalid("labels", "more than 64 labels"));
    }
    for (k, v) in &c.labels {
        check_label_key(k).map_err(|reason| invalid(&format!("labels.{k}"), reason))?;
        check_label_value(v).map_err(|reason| invalid(&format!("labels.{k}"), reason))?;
    }
    Ok(())
}

fn check_dns_label(field: &str, s: &str) -> Result<(), Rejected> {
    if !is_dns_label(s) {
        return Err(invalid(
            field,
            "not a DNS label (1-63 of a-z, 0-9 and `-`, starting and ending alphanumeric)",
        ));
    }
    Ok(())
}

/// 1-63 of `a-z0-9-`, starting and ending alphanumeric (a namespace name).
pub(crate) fn is_dns_label(s: &str) -> bool {
    (1..=63).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// `[prefix/]name`: a DNS subdomain prefix, a name of up to 63 characters.
pub(crate) fn check_label_key(k: &str) -> Result<(), &'static str> {
    let name = match k.split_once('/') {
        Some((prefix, name)) => {
            if prefix.len() > 253 || !prefix.split('.').all(is_dns_label) {
                return Err("the key's prefix is not a DNS subdomain");
            }
            name
        }
        None => k,
    };
    if name.is_empty() {
        return Err("the key's name is empty");
    }
    check_label_value(name).map_err(|_| {
        "the key's name is not 1-63 of A-Z, a-z, 0-9, `-`, `_`, `.`, starting and ending alphanumeric"
    })
}

/// Up to 63 of `A-Za-z0-9-_.`, starting and ending alphanumeric; may be empty.
pub(crate) fn check_label_value(v: &str) -> Result<(), &'static str> {
    let ok = v.len() <= 63
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && v.bytes().next().is_none_or(|b| b.is_ascii_alphanumeric())
        && v.bytes().last().is_none_or(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(())
    } else {
        Err(
            "not a label value (up to 63 of A-Z, a-z, 0-9, `-`, `_`, `.`, starting and ending alphanumeric)",
        )
    }
}

pub(super) fn truncate(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}
