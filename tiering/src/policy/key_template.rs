//! The object key of a file in the lake, from a template like
//! `{site}/{namespace}/{pvc}/{path}`.

/// The default when a policy gives no `keyTemplate`: the volume id is always
/// known, even on sites without Kubernetes.
pub const DEFAULT_KEY_TEMPLATE: &str = "{site}/{volume}/{path}";

const PLACEHOLDERS: &str = "{site}, {namespace}, {pvc}, {volume}, {path}";

/// A value a key template can insert.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Var {
    Site,
    Namespace,
    Pvc,
    Volume,
    Path,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

/// A validated key template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    parts: Vec<Part>,
}

/// The values a key is made of, for one file.
#[derive(Debug, Clone, Copy, Default)]
pub struct KeyVars<'a> {
    /// The site's name.
    pub site: &'a str,
    /// The PVC's namespace (empty for a plain directory volume).
    pub namespace: &'a str,
    /// The PVC's name (empty for a plain directory volume).
    pub pvc: &'a str,
    /// The volume id.
    pub volume: &'a str,
    /// The file's path relative to the volume root, `/`-separated.
    pub path: &'a str,
}

impl KeyTemplate {
    /// Parses a template; every problem is one reason in the list.
    pub fn parse(text: &str) -> Result<Self, Vec<String>> {
        let mut parts = Vec::new();
        let mut reasons = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find(['{', '}']) {
            push_text(&mut parts, &rest[..open]);
            if rest[open..].starts_with('}') {
                reasons.push(format!("unmatched }} in {text:?}"));
                rest = &rest[open + 1..];
                continue;
            }
            let Some(close) = rest[open..].find('}') else {
                reasons.push(format!("unclosed {{ in {text:?}"));
                rest = "";
                break;
            };
            let name = &rest[open + 1..open + close];
            match var(name) {
                Some(v) => parts.push(Part::Var(v)),
                None => reasons.push(format!(
                    "unknown placeholder {{{name}}}; expected one of {PLACEHOLDERS}"
                )),
            }
            rest = &rest[open + close + 1..];
        }
        push_text(&mut parts, rest);
        if reasons.is_empty() && !parts.contains(&Part::Var(Var::Path)) {
            reasons.push("must contain {path}, or every file would get the same key".to_owned());
        }
        if text.starts_with('/') {
            reasons.push("must not start with /: object keys are relative".to_owned());
        }
        if reasons.is_empty() {
            Ok(Self { parts })
        } else {
            Err(reasons)
        }
    }

    /// The object key for one file. Empty values leave their segment empty;
    /// the lake layer decides how to store such keys.
    pub fn render(&self, vars: &KeyVars<'_>) -> String {
        let mut key = String::new();
        for part in &self.parts {
            key.push_str(match part {
                Part::Text(t) => t,
                Part::Var(Var::Site) => vars.site,
                Part::Var(Var::Namespace) => vars.namespace,
                Part::Var(Var::Pvc) => vars.pvc,
                Part::Var(Var::Volume) => vars.volume,
                Part::Var(Var::Path) => vars.path,
            });
        }
        key
    }
}

fn push_text(parts: &mut Vec<Part>, text: &str) {
    if !text.is_empty() {
        parts.push(Part::Text(text.to_owned()));
    }
}

fn var(name: &str) -> Option<Var> {
    Some(match name {
        "site" => Var::Site,
        "namespace" => Var::Namespace,
        "pvc" => Var::Pvc,
        "volume" => Var::Volume,
        "path" => Var::Path,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_key_templates_render() {
        let vars = KeyVars {
            site: "site-a",
            namespace: "factory",
            pvc: "cam-1",
            volume: "pv-123",
            path: "2026/11/a.jpg",
        };
        for (template, key) in [
            (
                "{site}/{namespace}/{pvc}/{path}",
                "site-a/factory/cam-1/2026/11/a.jpg",
            ),
            (DEFAULT_KEY_TEMPLATE, "site-a/pv-123/2026/11/a.jpg"),
            (
                "archive/{volume}-{pvc}/{path}",
                "archive/pv-123-cam-1/2026/11/a.jpg",
            ),
            ("{path}", "2026/11/a.jpg"),
        ] {
            assert_eq!(
                KeyTemplate::parse(template).unwrap().render(&vars),
                key,
                "{template}"
            );
        }
    }

    #[test]
    fn policy_key_templates_rejected() {
        for (template, reason) in [
            (
                "{site}/{pod}/{path}",
                "unknown placeholder {pod}; expected one of {site}",
            ),
            ("{site}/{Path}", "unknown placeholder {Path}"),
            ("{site}/{path", "unclosed {"),
            ("{site}}/{path}", "unmatched }"),
            ("{site}/{namespace}", "must contain {path}"),
            ("", "must contain {path}"),
            ("/{site}/{path}", "must not start with /"),
            ("{}/{path}", "unknown placeholder {}"),
        ] {
            let reasons = KeyTemplate::parse(template).unwrap_err();
            assert!(
                reasons.iter().any(|r| r.contains(reason)),
                "{template}: {reasons:?}"
            );
        }
        let two = KeyTemplate::parse("{a}/{b}/{path}").unwrap_err();
        assert_eq!(two.len(), 2, "{two:?}");
    }
}
