//! LVM's JSON reports (`--reportformat json --units b --nosuffix` with
//! `log/report_command_log=1`), parsed into [`VgInfo`] and [`LvInfo`].
//!
//! What LVM 2.03.16 actually prints, and what this parser therefore accepts:
//! - every value is a JSON string, numbers included (`"vg_size":"205520896"`);
//!   newer LVMs with `json_std` print numbers, which are accepted too;
//! - the command log (`"log": [...]`) sometimes ends with a trailing comma
//!   before `]` (seen after a successful `lvcreate`), which is not JSON;
//! - text before the report (the library backend delivers warnings such as
//!   `WARNING: Activation disabled…` on the same channel as the report);
//! - absent values are empty strings (`"data_percent":""`, `"pool_lv":""`);
//! - hidden LVs in brackets (`[pool_tdata]`) now and then (see [`parse_lvs`]).
//!
//! Pure functions over text: no LVM is run here.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::{LvInfo, VgInfo};

/// Fields asked for by `vgs -o`.
pub const VG_FIELDS: &str = "vg_name,vg_size,vg_free,vg_extent_size";
/// Fields asked for by `lvs -o`.
pub const LV_FIELDS: &str =
    "vg_name,lv_name,lv_size,lv_tags,lv_attr,pool_lv,lv_path,data_percent,metadata_percent,lv_time";

/// One entry of the report's command log.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogEntry {
    /// `log_type`: `error`, `warn`, `print` or `status`.
    pub kind: String,
    /// `log_object_type`, e.g. `vg` or `lv`.
    pub object_type: String,
    /// `log_object_name`, e.g. the VG name that was not found.
    pub object_name: String,
    /// `log_object_group`: the VG of an LV object.
    pub object_group: String,
    /// `log_message`: LVM's own words.
    pub message: String,
}

impl LogEntry {
    /// True for entries that report a failure (`error` or `fatal`).
    pub fn is_error(&self) -> bool {
        self.kind == "error" || self.kind == "fatal"
    }
}

/// The rows and the command log of one report.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Report<T> {
    /// Parsed rows, in LVM's order.
    pub rows: Vec<T>,
    /// The command log (empty unless `log/report_command_log=1`).
    pub log: Vec<LogEntry>,
}

/// Fields asked for by `lvs -o` for an inventory: every LV field and, on each
/// row, its VG's size, free space and extent size.
pub const INVENTORY_FIELDS: &str = "vg_name,lv_name,lv_size,lv_tags,lv_attr,pool_lv,lv_path,data_percent,metadata_percent,lv_time,vg_size,vg_free,vg_extent_size";

fn vg_row(row: &Map<String, Value>) -> Result<VgInfo, String> {
    Ok(VgInfo {
        name: text_field(row, "vg_name")?,
        size_bytes: u64_field(row, "vg_size")?,
        free_bytes: u64_field(row, "vg_free")?,
        extent_bytes: u64_field(row, "vg_extent_size")?,
    })
}

/// Parse a `vgs` report asked for with [`VG_FIELDS`].
pub fn parse_vgs(text: &str) -> Result<Report<VgInfo>, String> {
    let doc = parse_document(text)?;
    let rows = section_rows(&doc, "vg")?
        .into_iter()
        .map(vg_row)
        .collect::<Result<_, String>>()?;
    Ok(Report {
        rows,
        log: log_entries(&doc)?,
    })
}

/// Parse an `lvs` report asked for with [`LV_FIELDS`].
pub fn parse_lvs(text: &str) -> Result<Report<LvInfo>, String> {
    let doc = parse_document(text)?;
    let rows = lv_rows(&doc)?;
    Ok(Report {
        rows,
        log: log_entries(&doc)?,
    })
}

/// Parse an `lvs` report asked for with [`INVENTORY_FIELDS`]: each LV with its VG.
pub fn parse_inventory(text: &str) -> Result<Report<(VgInfo, LvInfo)>, String> {
    let doc = parse_document(text)?;
    let vgs = section_rows(&doc, "lv")?
        .into_iter()
        .filter(|row| !is_hidden(row))
        .map(vg_row)
        .collect::<Result<Vec<_>, String>>()?;
    Ok(Report {
        rows: vgs.into_iter().zip(lv_rows(&doc)?).collect(),
        log: log_entries(&doc)?,
    })
}

fn is_hidden(row: &Map<String, Value>) -> bool {
    row.get("lv_name")
        .and_then(Value::as_str)
        .is_some_and(|n| n.starts_with('['))
}

fn lv_rows(doc: &Map<String, Value>) -> Result<Vec<LvInfo>, String> {
    section_rows(doc, "lv")?
        .into_iter()
        // Hidden and component LVs ("[pool_tdata]"): `lvs` without -a omits
        // them, except through liblvm2cmd after any `lvchange -a…` in the same
        // handle (LVM leaves its process_component_lvs flag set). Never ours.
        .filter(|row| !is_hidden(row))
        .map(|row| {
            let vg = text_field(row, "vg_name")?;
            let name = text_field(row, "lv_name")?;
            let path = match optional_text(row, "lv_path")? {
                Some(p) => p,
                // Thin pools and other LVs without a device node report "".
                None => format!("/dev/{vg}/{name}"),
            };
            Ok(LvInfo {
                size_bytes: u64_field(row, "lv_size")?,
                tags: optional_text(row, "lv_tags")?
                    .map(|t| t.split(',').map(str::to_owned).collect())
                    .unwrap_or_default(),
                attr: text_field(row, "lv_attr")?,
                pool: optional_text(row, "pool_lv")?,
                path,
                data_percent: percent_field(row, "data_percent")?,
                metadata_percent: percent_field(row, "metadata_percent")?,
                created: optional_text(row, "lv_time")?.and_then(|t| parse_time(&t)),
                vg,
                name,
            })
        })
        .collect()
}

/// The command log of any command run with `--reportformat json` and
/// `log/report_command_log=1`, when its output holds one.
pub fn parse_log(text: &str) -> Option<Vec<LogEntry>> {
    parse_document(text)
        .ok()
        .and_then(|doc| log_entries(&doc).ok())
}

/// Find the JSON object in `text` (skipping anything printed before it),
/// repair LVM's trailing commas and parse it.
fn parse_document(text: &str) -> Result<Map<String, Value>, String> {
    // The report starts on the first line that starts with "{" (LVM puts it
    // alone on a line, indented by two spaces); messages never do.
    let start = text
        .split_inclusive('\n')
        .scan(0usize, |offset, line| {
            let at = *offset;
            *offset += line.len();
            Some((at, line))
        })
        .find(|(_, line)| line.trim_start().starts_with('{'))
        .map(|(at, _)| at)
        .ok_or_else(|| "no JSON object in the output".to_owned())?;
    let repaired = strip_trailing_commas(&text[start..]);
    // Only the first value counts: the library backend may append more lines.
    let mut values = serde_json::Deserializer::from_str(&repaired).into_iter::<Value>();
    match values.next() {
        Some(Ok(Value::Object(map))) => Ok(map),
        Some(Ok(_)) => Err("the report is not a JSON object".to_owned()),
        Some(Err(e)) => Err(format!("invalid JSON: {e}")),
        None => Err("empty report".to_owned()),
    }
}

/// Drop every comma (outside strings) that is followed, after whitespace, by
/// `]` or `}`: LVM 2.03.16 writes one after the last log entry at times.
fn strip_trailing_commas(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let (mut in_string, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
        } else if c == '"' {
            in_string = true;
        } else if c == ',' {
            let rest = text[i + 1..].trim_start();
            if rest.starts_with(']') || rest.starts_with('}') {
                continue;
            }
        }
        out.push(c);
    }
    out
}

/// All rows of sections named `key` (`vg`, `lv`) across the `report` array.
fn section_rows<'a>(
    doc: &'a Map<String, Value>,
    key: &str,
) -> Result<Vec<&'a Map<String, Value>>, String> {
    let reports = match doc.get("report") {
        Some(Value::Array(reports)) => reports,
        Some(_) => return Err("\"report\" is not an array".to_owned()),
        // A command that failed before reporting prints only the log.
        None => return Ok(Vec::new()),
    };
    let mut rows = Vec::new();
    for report in reports {
        match report.get(key) {
            Some(Value::Array(items)) => {
                for item in items {
                    rows.push(
                        item.as_object()
                            .ok_or_else(|| format!("a {key} row is not an object"))?,
                    );
                }
            }
            Some(_) => return Err(format!("\"{key}\" is not an array")),
            None => {}
        }
    }
    Ok(rows)
}

fn log_entries(doc: &Map<String, Value>) -> Result<Vec<LogEntry>, String> {
    let items = match doc.get("log") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err("\"log\" is not an array".to_owned()),
        None => return Ok(Vec::new()),
    };
    items
        .iter()
        .map(|item| {
            let row = item.as_object().ok_or("a log entry is not an object")?;
            let get = |name: &str| optional_text(row, name).map(Option::unwrap_or_default);
            Ok(LogEntry {
                kind: get("log_type")?,
                object_type: get("log_object_type")?,
                object_name: get("log_object_name")?,
                object_group: get("log_object_group")?,
                message: get("log_message")?,
            })
        })
        .collect()
}

/// A field as text; `None` when absent or empty.
fn optional_text(row: &Map<String, Value>, name: &str) -> Result<Option<String>, String> {
    match row.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(other) => Err(format!("field {name}: expected a string, got {other}")),
    }
}

fn text_field(row: &Map<String, Value>, name: &str) -> Result<String, String> {
    optional_text(row, name)?.ok_or_else(|| format!("field {name} is missing or empty"))
}

fn u64_field(row: &Map<String, Value>, name: &str) -> Result<u64, String> {
    let text = text_field(row, name)?;
    text.parse::<u64>().map_err(|_| {
        format!("field {name}: {text:?} is not a byte count (was --units b --nosuffix given?)")
    })
}

fn percent_field(row: &Map<String, Value>, name: &str) -> Result<Option<f64>, String> {
    optional_text(row, name)?
        .map(|text| {
            text.parse::<f64>()
                .ok()
                .filter(|p| p.is_finite())
                .ok_or_else(|| format!("field {name}: {text:?} is not a percentage"))
        })
        .transpose()
}

/// `lv_time` as strata asks for it (`report/time_format="%s"`: seconds
/// since the epoch), or in LVM's default format (`2026-12-07 23:41:55
/// +0000`), for a report whose `--config` did not reach LVM. Anything else
/// is no time at all.
pub fn parse_time(text: &str) -> Option<SystemTime> {
    let text = text.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(UNIX_EPOCH + Duration::from_secs(secs));
    }
    let (date, rest) = text.split_once(' ')?;
    let (clock, zone) = rest.split_once(' ')?;
    let mut ymd = date.splitn(3, '-').map(str::parse::<i64>);
    let (y, m, d) = (ymd.next()?.ok()?, ymd.next()?.ok()?, ymd.next()?.ok()?);
    let mut hms = clock.splitn(3, ':').map(str::parse::<i64>);
    let (h, min, s) = (hms.next()?.ok()?, hms.next()?.ok()?, hms.next()?.ok()?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || h > 23 || min > 59 || s > 60 {
        return None;
    }
    let sign = match zone.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let zone = zone.get(1..)?;
    if zone.len() != 4 {
        return None;
    }
    let offset =
        sign * (zone[..2].parse::<i64>().ok()? * 3600 + zone[2..].parse::<i64>().ok()? * 60);
    let secs = days_from_civil(y, m, d) * 86_400 + h * 3600 + min * 60 + s - offset;
    u64::try_from(secs)
        .ok()
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

/// Days from 1970-01-01 to the proleptic Gregorian date `y-m-d`.
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests;
