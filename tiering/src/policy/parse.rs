//! From a YAML document to a validated [`Policy`], collecting every error.

use std::collections::{BTreeMap, HashSet};

use serde_yaml_ng::Value;

use super::bandwidth::{Bandwidth, Window, parse_days, parse_hours};
use super::decode::{self, Obj};
use super::error::{Sink, field, index};
use super::key_template::{DEFAULT_KEY_TEMPLATE, KeyTemplate};
use super::lake::{Credentials, Lake, parse_credentials, parse_url};
use super::rules::{Action, Rule, glob, glob_set};
use super::schedule::Schedule;
use super::selector::{LabelSelector, Operator, Requirement, VolumeSelector};
use super::spec::PolicySpec;
use super::units::{parse_duration, parse_percent, parse_rate, parse_size};
use super::watermarks::Watermarks;
use super::{Policy, PolicyErrors};
use crate::catalog::{check_label_key, check_label_value, is_dns_label};

const POLICY_FIELDS: &[&str] = &[
    "name",
    "selector",
    "schedule",
    "lake",
    "keyTemplate",
    "rules",
    "watermarks",
    "bandwidth",
    "kubernetes",
];
const SELECTOR_FIELDS: &[&str] = &["volumes", "labels", "claimLabels", "storageClasses"];
const LABEL_SELECTOR_FIELDS: &[&str] = &["matchLabels", "matchExpressions"];
const REQUIREMENT_FIELDS: &[&str] = &["key", "operator", "values"];
const ORIGIN_FIELDS: &[&str] = &["namespace", "name", "generation"];
const LAKE_FIELDS: &[&str] = &["url", "credentials"];
const RULE_FIELDS: &[&str] = &[
    "name",
    "include",
    "exclude",
    "modifiedBefore",
    "accessedBefore",
    "minSize",
    "maxSize",
    "action",
];
const WATERMARK_FIELDS: &[&str] = &["high", "low"];
const BANDWIDTH_FIELDS: &[&str] = &["limit", "timetable"];
const WINDOW_FIELDS: &[&str] = &["days", "hours", "limit"];

/// Parses and validates a YAML policy document.
pub(crate) fn parse_yaml(yaml: &str) -> Result<Policy, PolicyErrors> {
    let mut sink = Sink::default();
    match serde_yaml_ng::from_str::<Value>(yaml) {
        Ok(doc) => {
            let policy = policy(&mut sink, &doc);
            sink.into_result(policy)
        }
        Err(e) => {
            sink.push("", format!("not a YAML document: {e}"));
            sink.into_result(None)
        }
    }
}

/// Validates a policy already in its serde form (a CRD's spec).
pub(crate) fn from_spec(spec: &PolicySpec) -> Result<Policy, PolicyErrors> {
    let mut sink = Sink::default();
    match serde_yaml_ng::to_value(spec) {
        Ok(doc) => {
            let policy = policy(&mut sink, &doc);
            sink.into_result(policy)
        }
        Err(e) => {
            sink.push("", format!("cannot read the policy: {e}"));
            sink.into_result(None)
        }
    }
}

/// Runs `parse` on a text field's value, reporting its error at `path`.
fn text<T>(
    sink: &mut Sink,
    path: &str,
    v: &Value,
    read: fn(&mut Sink, &str, &Value) -> Option<String>,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> Option<T> {
    let s = read(sink, path, v)?;
    parse(&s).map_err(|reason| sink.push(path, reason)).ok()
}

fn policy(sink: &mut Sink, doc: &Value) -> Option<Policy> {
    let obj = Obj::new(sink, "", doc, POLICY_FIELDS)?;
    let name = obj
        .required(sink, "name")
        .and_then(|v| text(sink, "name", v, decode::string, check_name));
    let selector = match obj.get("selector") {
        Some(v) => selector(sink, "selector", v),
        None => Some(VolumeSelector::default()),
    };
    let schedule = optional(obj.get("schedule"), |v| {
        text(sink, "schedule", v, decode::string, Schedule::parse)
    });
    let lake = obj
        .required(sink, "lake")
        .and_then(|v| lake(sink, "lake", v));
    let key_template = match obj.get("keyTemplate") {
        Some(v) => text(sink, "keyTemplate", v, decode::string, |s| {
            KeyTemplate::parse(s).map_err(|reasons| reasons.join("; "))
        }),
        None => KeyTemplate::parse(DEFAULT_KEY_TEMPLATE).ok(),
    };
    let rules = obj
        .required(sink, "rules")
        .and_then(|v| rules(sink, "rules", v));
    let watermarks = optional(obj.get("watermarks"), |v| watermarks(sink, "watermarks", v));
    let bandwidth = match obj.get("bandwidth") {
        Some(v) => bandwidth(sink, "bandwidth", v),
        None => Some(Bandwidth::default()),
    };
    let origin = optional(obj.get("kubernetes"), |v| origin(sink, "kubernetes", v));
    if sink.len() > 0 {
        return None;
    }
    let (name, mut selector, origin) = (name?, selector?, origin?);
    selector.namespace = origin.as_ref().map(|o| o.0.clone());
    selector.class_policy = Some(origin.map_or_else(|| name.clone(), |o| o.1));
    // The serde form is what gets stored; reading it back here keeps the
    // serde types and this decoder from drifting apart unnoticed.
    let spec = serde_yaml_ng::from_value::<PolicySpec>(doc.clone())
        .map_err(|e| sink.push("", format!("cannot read the policy: {e}")))
        .ok()?;
    Some(Policy {
        spec,
        name,
        selector,
        schedule: schedule?,
        lake: lake?,
        key_template: key_template?,
        rules: rules?,
        watermarks: watermarks?,
        bandwidth: bandwidth?,
    })
}

/// `Some(None)` when absent, `Some(Some(t))` when valid, `None` when invalid.
fn optional<'v, T>(
    v: Option<&'v Value>,
    read: impl FnOnce(&'v Value) -> Option<T>,
) -> Option<Option<T>> {
    match v {
        None => Some(None),
        Some(v) => read(v).map(Some),
    }
}

/// A DNS subdomain, like every Kubernetes object name.
fn check_name(name: &str) -> Result<String, String> {
    let ok = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
        && name.starts_with(|c: char| c.is_ascii_alphanumeric())
        && name.ends_with(|c: char| c.is_ascii_alphanumeric());
    if ok {
        Ok(name.to_owned())
    } else {
        Err(format!(
            "expected a name of lowercase letters, digits, - and . (like cold-images), got {name:?}"
        ))
    }
}

fn selector(sink: &mut Sink, path: &str, v: &Value) -> Option<VolumeSelector> {
    let obj = Obj::new(sink, path, v, SELECTOR_FIELDS)?;
    let volumes = match obj.get("volumes") {
        Some(v) => globs(sink, &obj.path("volumes"), v),
        None => Some(Default::default()),
    };
    let labels = match obj.get("labels") {
        Some(v) => decode::string_map(sink, &obj.path("labels"), v),
        None => Some(BTreeMap::new()),
    };
    let claim_labels = optional(obj.get("claimLabels"), |v| {
        label_selector(sink, &obj.path("claimLabels"), v)
    });
    let storage_classes = match obj.get("storageClasses") {
        Some(v) => decode::string_list(sink, &obj.path("storageClasses"), v),
        None => Some(Vec::new()),
    };
    Some(VolumeSelector {
        volumes: volumes?,
        labels: labels?,
        claim_labels: claim_labels?,
        storage_classes: storage_classes?,
        ..VolumeSelector::default()
    })
}

/// A Kubernetes label selector, checked as the API server checks one.
fn label_selector(sink: &mut Sink, path: &str, v: &Value) -> Option<LabelSelector> {
    let obj = Obj::new(sink, path, v, LABEL_SELECTOR_FIELDS)?;
    let match_labels = match obj.get("matchLabels") {
        Some(v) => {
            let p = obj.path("matchLabels");
            decode::string_map(sink, &p, v).filter(|m| {
                let before = sink.len();
                for (k, val) in m {
                    if let Err(reason) = check_label_key(k).and_then(|()| check_label_value(val)) {
                        sink.push(&field(&p, k), reason);
                    }
                }
                sink.len() == before
            })
        }
        None => Some(BTreeMap::new()),
    };
    let expressions = match obj.get("matchExpressions") {
        Some(v) => decode::list(sink, &obj.path("matchExpressions"), v, requirement),
        None => Some(Vec::new()),
    };
    Some(LabelSelector {
        match_labels: match_labels?,
        expressions: expressions?,
    })
}

fn requirement(sink: &mut Sink, path: &str, v: &Value) -> Option<Requirement> {
    let obj = Obj::new(sink, path, v, REQUIREMENT_FIELDS)?;
    let key = obj.required(sink, "key").and_then(|v| {
        text(sink, &obj.path("key"), v, decode::string, |k| {
            check_label_key(k)
                .map(|()| k.to_owned())
                .map_err(str::to_owned)
        })
    });
    let values = match obj.get("values") {
        Some(v) => decode::string_list(sink, &obj.path("values"), v),
        None => Some(Vec::new()),
    };
    let operator = obj
        .required(sink, "operator")
        .and_then(|v| decode::string(sink, &obj.path("operator"), v));
    let (values, operator) = (values?, operator?);
    let op = match operator.as_str() {
        "In" | "NotIn" if values.is_empty() => {
            sink.push(
                &obj.path("values"),
                format!("{operator} needs at least one value"),
            );
            return None;
        }
        "Exists" | "DoesNotExist" if !values.is_empty() => {
            sink.push(&obj.path("values"), format!("{operator} takes no values"));
            return None;
        }
        "In" => Operator::In(values),
        "NotIn" => Operator::NotIn(values),
        "Exists" => Operator::Exists,
        "DoesNotExist" => Operator::DoesNotExist,
        other => {
            sink.push(
                &obj.path("operator"),
                format!("expected In, NotIn, Exists or DoesNotExist, got {other:?}"),
            );
            return None;
        }
    };
    Some(Requirement { key: key?, op })
}

/// The TieringPolicy a policy came from: its namespace and name.
fn origin(sink: &mut Sink, path: &str, v: &Value) -> Option<(String, String)> {
    let obj = Obj::new(sink, path, v, ORIGIN_FIELDS)?;
    let namespace = obj.required(sink, "namespace").and_then(|v| {
        text(sink, &obj.path("namespace"), v, decode::string, |s| {
            if is_dns_label(s) {
                Ok(s.to_owned())
            } else {
                Err(format!(
                    "expected a namespace name (a DNS label), got {s:?}"
                ))
            }
        })
    });
    let name = obj
        .required(sink, "name")
        .and_then(|v| text(sink, &obj.path("name"), v, decode::string, check_name));
    if let Some(v) = obj.get("generation")
        && v.as_i64().is_none()
    {
        sink.push(&obj.path("generation"), "expected an integer");
    }
    Some((namespace?, name?))
}

fn globs(sink: &mut Sink, path: &str, v: &Value) -> Option<globset::GlobSet> {
    let patterns = decode::string_list(sink, path, v)?;
    let mut ok = true;
    let mut compiled = Vec::with_capacity(patterns.len());
    for (i, p) in patterns.iter().enumerate() {
        match glob(p) {
            Ok(g) => compiled.push(g),
            Err(reason) => {
                sink.push(&index(path, i), reason);
                ok = false;
            }
        }
    }
    ok.then(|| glob_set(compiled))
}

fn lake(sink: &mut Sink, path: &str, v: &Value) -> Option<Lake> {
    let obj = Obj::new(sink, path, v, LAKE_FIELDS)?;
    let url_path = obj.path("url");
    let url = obj
        .required(sink, "url")
        .and_then(|v| text(sink, &url_path, v, decode::string, parse_url));
    let credentials = match obj.get("credentials") {
        Some(v) => text(
            sink,
            &obj.path("credentials"),
            v,
            decode::string,
            parse_credentials,
        ),
        None => Some(Credentials::Env),
    };
    Some(Lake {
        url: url?,
        credentials: credentials?,
    })
}

fn rules(sink: &mut Sink, path: &str, v: &Value) -> Option<Vec<Rule>> {
    let rules = decode::list(sink, path, v, rule);
    let unique = unique_rule_names(sink, path, v);
    let rules = rules?;
    if rules.is_empty() {
        sink.push(path, "a policy needs at least one rule");
        return None;
    }
    unique.then_some(rules)
}

/// Read from the raw list, so a duplicate is reported even when another
/// field of the same rules is wrong.
fn unique_rule_names(sink: &mut Sink, path: &str, v: &Value) -> bool {
    let Value::Sequence(items) = v else {
        return true;
    };
    let mut seen = HashSet::new();
    let mut unique = true;
    for (i, item) in items.iter().enumerate() {
        if let Some(name) = item.get("name").and_then(Value::as_str)
            && !seen.insert(name)
        {
            sink.push(
                &field(&index(path, i), "name"),
                format!("duplicate rule name {name:?}"),
            );
            unique = false;
        }
    }
    unique
}

fn rule(sink: &mut Sink, path: &str, v: &Value) -> Option<Rule> {
    let obj = Obj::new(sink, path, v, RULE_FIELDS)?;
    let p = |key| obj.path(key);
    let name = obj.required(sink, "name").and_then(|v| {
        text(sink, &p("name"), v, decode::string, |s| {
            if s.trim().is_empty() {
                Err("must not be empty".to_owned())
            } else {
                Ok(s.to_owned())
            }
        })
    });
    let include = optional(obj.get("include"), |v| globs(sink, &p("include"), v));
    let exclude = optional(obj.get("exclude"), |v| globs(sink, &p("exclude"), v));
    let modified_before = optional(obj.get("modifiedBefore"), |v| {
        text(
            sink,
            &p("modifiedBefore"),
            v,
            decode::quantity,
            parse_duration,
        )
    });
    let accessed_before = optional(obj.get("accessedBefore"), |v| {
        text(
            sink,
            &p("accessedBefore"),
            v,
            decode::quantity,
            parse_duration,
        )
    });
    let min_size = optional(obj.get("minSize"), |v| {
        text(sink, &p("minSize"), v, decode::quantity, parse_size)
    });
    let max_size = optional(obj.get("maxSize"), |v| {
        text(sink, &p("maxSize"), v, decode::quantity, parse_size)
    });
    let action = obj
        .required(sink, "action")
        .and_then(|v| text(sink, &p("action"), v, decode::string, Action::parse));
    let rule = Rule {
        name: name?,
        include: include?.unwrap_or_else(globset::GlobSet::empty),
        exclude: exclude?.unwrap_or_else(globset::GlobSet::empty),
        modified_before: modified_before?,
        accessed_before: accessed_before?,
        min_size: min_size?,
        max_size: max_size?,
        action: action?,
    };
    check_rule(sink, path, &rule).then_some(rule)
}

/// Checks across a rule's fields, once each field is valid on its own.
fn check_rule(sink: &mut Sink, path: &str, rule: &Rule) -> bool {
    if let (Some(min), Some(max)) = (rule.min_size, rule.max_size)
        && min > max
    {
        sink.push(
            &field(path, "minSize"),
            format!("{min} bytes is larger than maxSize ({max} bytes)"),
        );
        return false;
    }
    // A rule without any condition would move every file of the volume:
    // almost surely a mistake, and an expensive one.
    let unconditional = rule.include.is_empty()
        && rule.modified_before.is_none()
        && rule.accessed_before.is_none()
        && rule.min_size.is_none()
        && rule.max_size.is_none();
    if unconditional {
        sink.push(
            path,
            "a rule needs at least one of include, modifiedBefore, accessedBefore, minSize, maxSize (use include: [\"**\"] to mean every file)",
        );
    }
    !unconditional
}

fn watermarks(sink: &mut Sink, path: &str, v: &Value) -> Option<Watermarks> {
    let obj = Obj::new(sink, path, v, WATERMARK_FIELDS)?;
    let mut pct = |key: &str| {
        let path = obj.path(key);
        obj.required(sink, key)
            .and_then(|v| text(sink, &path, v, decode::quantity, parse_percent))
    };
    let (high, low) = (pct("high"), pct("low"));
    let (high, low) = (high?, low?);
    if low >= high {
        sink.push(
            &obj.path("low"),
            format!("must be below high ({high}%), got {low}%"),
        );
        return None;
    }
    Some(Watermarks { high, low })
}

fn bandwidth(sink: &mut Sink, path: &str, v: &Value) -> Option<Bandwidth> {
    let obj = Obj::new(sink, path, v, BANDWIDTH_FIELDS)?;
    let limit = match obj.get("limit") {
        Some(v) => text(sink, &obj.path("limit"), v, decode::quantity, parse_rate),
        None => Some(None),
    };
    let timetable = match obj.get("timetable") {
        Some(v) => decode::list(sink, &obj.path("timetable"), v, window),
        None => Some(Vec::new()),
    };
    Some(Bandwidth {
        limit: limit?,
        timetable: timetable?,
    })
}

fn window(sink: &mut Sink, path: &str, v: &Value) -> Option<Window> {
    let obj = Obj::new(sink, path, v, WINDOW_FIELDS)?;
    let days = match obj.get("days") {
        Some(v) => days(sink, &obj.path("days"), v),
        None => Some(Vec::new()),
    };
    let hours = optional(obj.get("hours"), |v| {
        text(sink, &obj.path("hours"), v, decode::string, parse_hours)
    });
    let limit_path = obj.path("limit");
    let limit = obj
        .required(sink, "limit")
        .and_then(|v| text(sink, &limit_path, v, decode::quantity, parse_rate));
    Some(Window::new(&days?, hours?, limit?))
}

fn days(sink: &mut Sink, path: &str, v: &Value) -> Option<Vec<super::Weekday>> {
    let names = decode::string_list(sink, path, v)?;
    let mut out = Vec::new();
    let mut ok = true;
    for (i, name) in names.iter().enumerate() {
        match parse_days(name) {
            Ok(days) => out.extend(days),
            Err(reason) => {
                sink.push(&index(path, i), reason);
                ok = false;
            }
        }
    }
    ok.then_some(out)
}
