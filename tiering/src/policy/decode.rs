//! Reading the policy document field by field, so that one bad field does not
//! hide the next: serde stops at the first error, an operator wants them all.

use std::collections::BTreeMap;

use serde_yaml_ng::{Mapping, Value};

use super::error::{Sink, field, index};

/// A mapping whose keys were checked against the fields it may have.
pub(crate) struct Obj<'v> {
    path: String,
    map: &'v Mapping,
}

impl<'v> Obj<'v> {
    /// Checks that `v` is a mapping with only `known` keys; reports every
    /// unknown key by its path.
    pub(crate) fn new(
        sink: &mut Sink,
        path: &str,
        v: &'v Value,
        known: &'static [&'static str],
    ) -> Option<Self> {
        let Value::Mapping(map) = v else {
            sink.push(path, format!("expected a mapping, got {}", describe(v)));
            return None;
        };
        for key in map.keys() {
            match key.as_str() {
                Some(k) if known.contains(&k) => {}
                Some(k) => sink.push(&field(path, k), unknown_field(k, known)),
                None => sink.push(path, format!("keys must be strings, got {}", describe(key))),
            }
        }
        Some(Self {
            path: path.to_owned(),
            map,
        })
    }

    /// The path of `key` inside this mapping.
    pub(crate) fn path(&self, key: &str) -> String {
        field(&self.path, key)
    }

    /// The value of an optional field; a null counts as absent.
    pub(crate) fn get(&self, key: &str) -> Option<&'v Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// The value of a required field, or an error naming it.
    pub(crate) fn required(&self, sink: &mut Sink, key: &str) -> Option<&'v Value> {
        let v = self.get(key);
        if v.is_none() {
            sink.push(&self.path(key), "required field is missing");
        }
        v
    }
}

fn unknown_field(key: &str, known: &[&str]) -> String {
    match known.iter().find(|k| looks_like(key, k)) {
        Some(k) => format!("unknown field, did you mean {k}?"),
        None => format!("unknown field; expected one of {}", known.join(", ")),
    }
}

/// Typos and the wrong case convention (`key_template`, `modifiedbefore`).
fn looks_like(typed: &str, known: &str) -> bool {
    let norm = |s: &str| -> String {
        s.chars()
            .filter(|c| *c != '_' && *c != '-')
            .flat_map(char::to_lowercase)
            .collect()
    };
    norm(typed) == norm(known) || edit_distance(typed, known) <= 2
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// How a value reads in an error message.
pub(crate) fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".to_owned(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => format!("{s:?}"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "a mapping".to_owned(),
        Value::Tagged(t) => format!("a value tagged {}", t.tag),
    }
}

/// A string field.
pub(crate) fn string(sink: &mut Sink, path: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(_) | Value::Bool(_) => {
            sink.push(
                path,
                format!("expected a string, got {} (quote it)", describe(v)),
            );
            None
        }
        _ => {
            sink.push(path, format!("expected a string, got {}", describe(v)));
            None
        }
    }
}

/// A quantity (size, percentage, rate, duration): a string, or a bare number
/// whose text the quantity's own parser then judges.
pub(crate) fn quantity(sink: &mut Sink, path: &str, v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => {
            sink.push(path, format!("expected a string, got {}", describe(v)));
            None
        }
    }
}

/// A list of strings; every bad item is reported.
pub(crate) fn string_list(sink: &mut Sink, path: &str, v: &Value) -> Option<Vec<String>> {
    let Value::Sequence(items) = v else {
        sink.push(
            path,
            format!("expected a list of strings, got {}", describe(v)),
        );
        return None;
    };
    let before = sink.len();
    let out: Vec<String> = items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| string(sink, &index(path, i), item))
        .collect();
    (sink.len() == before).then_some(out)
}

/// A list of mappings, each decoded by `item`.
pub(crate) fn list<T>(
    sink: &mut Sink,
    path: &str,
    v: &Value,
    mut item: impl FnMut(&mut Sink, &str, &Value) -> Option<T>,
) -> Option<Vec<T>> {
    let Value::Sequence(items) = v else {
        sink.push(path, format!("expected a list, got {}", describe(v)));
        return None;
    };
    let mut out = Vec::with_capacity(items.len());
    let mut ok = true;
    for (i, v) in items.iter().enumerate() {
        match item(sink, &index(path, i), v) {
            Some(t) => out.push(t),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

/// A mapping of strings to strings (labels).
pub(crate) fn string_map(
    sink: &mut Sink,
    path: &str,
    v: &Value,
) -> Option<BTreeMap<String, String>> {
    let Value::Mapping(map) = v else {
        sink.push(path, format!("expected a mapping, got {}", describe(v)));
        return None;
    };
    let before = sink.len();
    let mut out = BTreeMap::new();
    for (k, v) in map {
        let Some(k) = k.as_str() else {
            sink.push(path, format!("keys must be strings, got {}", describe(k)));
            continue;
        };
        if let Some(v) = string(sink, &field(path, k), v) {
            out.insert(k.to_owned(), v);
        }
    }
    (sink.len() == before).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_unknown_field_suggestions() {
        let known = &["keyTemplate", "modifiedBefore", "name"];
        for (typed, want) in [
            ("key_template", "did you mean keyTemplate?"),
            ("modifedBefore", "did you mean modifiedBefore?"),
            ("nmae", "did you mean name?"),
            (
                "colour",
                "expected one of keyTemplate, modifiedBefore, name",
            ),
        ] {
            let got = unknown_field(typed, known);
            assert!(got.contains(want), "{typed}: {got}");
        }
    }
}
