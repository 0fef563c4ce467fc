//! When an LV a request made for its own length is no request's any more.
//!
//! CreateVolume tags a thick restore or clone `strata.io/filling` until its
//! copy is complete, and the temporary snapshot a thick clone copies from
//! (`<clone>.src`) `strata.io/temporary` until it is dropped. A failed
//! request removes both ([`crate::snapshots`], rollback), a crashed one
//! leaves them for its retry; a request given up for good (its claim
//! deleted) leaves them to `strata node gc`. Such an LV without a
//! PersistentVolume is judged abandoned when nothing can still be working
//! on it:
//! - its device is not open and not mounted (checked before this rule): a
//!   copy holds the target open for writing and its source open for reading
//!   from start to end, and a filesystem holds a mounted device;
//! - no request of this process holds or waits for the volume's lock
//!   ([`Facts::held`]; only the node's own scan sees them, and `strata
//!   node gc` runs as a process of its own, where the next rule covers it);
//! - LVM made it at least `grace` ago (`lv_time`, [`crate::lvm::LvInfo::created`]):
//!   the only stretch of a request in which neither LV is open is the
//!   handful of LVM calls between creating the LV and opening it for the
//!   copy (and between closing it and dropping the tag), seconds long,
//!   where `grace` (`--filling-grace`, 15 minutes) is far longer. An LV
//!   whose creation time LVM does not give is never judged abandoned.
//!
//! The node's periodic scan and `strata node gc` judge with this one rule,
//! and `gc --apply` checks it again on a fresh report before removing, so
//! what the dry run lists as removable is what `--apply` removes. A request
//! that resumes such an LV in the moment gc removes it fails and is rolled
//! back; its retry starts afresh. Nothing it made was ever handed out.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use super::Facts;
use crate::lvm::LvInfo;
use crate::names::{self, TAG_FILLING, TAG_TEMPORARY};

/// The default `--filling-grace`.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(15 * 60);

/// The volume whose request made `lv`: itself, or for a temporary
/// snapshot the clone it was made for.
pub(crate) fn owner(lv: &LvInfo) -> &str {
    let temporary = lv.tags.iter().any(|t| t == TAG_TEMPORARY);
    names::clone_of_source(&lv.name)
        .filter(|_| temporary)
        .unwrap_or(&lv.name)
}

/// Why a request may still be working on `lv`, an LV tagged filling or
/// temporary that is neither open nor mounted; `None` for any other LV, and
/// when no request can be (the module's rule).
pub(crate) fn still_working(
    lv: &LvInfo,
    now: SystemTime,
    grace: Duration,
    held: &HashSet<String>,
) -> Option<String> {
    let tag = lv
        .tags
        .iter()
        .find(|t| *t == TAG_FILLING || *t == TAG_TEMPORARY)?;
    let owner = owner(lv);
    if held.contains(owner) {
        return Some(format!(
            "tagged {tag}: a request of this node is working on {owner}"
        ));
    }
    let Some(created) = lv.created else {
        return Some(format!(
            "tagged {tag}, and LVM gives no creation time: left to the request's retry"
        ));
    };
    let age = now.duration_since(created).unwrap_or_default();
    if age < grace {
        return Some(format!(
            "tagged {tag}, made {}s ago (less than --filling-grace {}s): a request may still be working on it",
            age.as_secs(),
            grace.as_secs()
        ));
    }
    None
}

impl Facts {
    /// The temporary snapshots whose clone is not among the LVs at all
    /// (removed by hand, or by an earlier gc whose removal of the
    /// temporary failed).
    pub(crate) fn stray_temporaries(&self) -> impl Iterator<Item = &LvInfo> {
        self.lvs.iter().filter(|l| {
            l.tags.iter().any(|t| t == TAG_TEMPORARY)
                && names::clone_of_source(&l.name)
                    .is_some_and(|clone| !self.lvs.iter().any(|o| o.name == clone))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::UNIX_EPOCH;

    fn lv(name: &str, tags: &[&str], created: Option<u64>) -> LvInfo {
        LvInfo {
            vg: "vg".into(),
            name: name.into(),
            size_bytes: 8 << 20,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            attr: "-wi-------".into(),
            pool: None,
            path: format!("/dev/vg/{name}"),
            data_percent: None,
            metadata_percent: None,
            created: created.map(|s| UNIX_EPOCH + Duration::from_secs(s)),
        }
    }

    #[test]
    fn an_lv_a_request_made_is_abandoned_only_when_old_and_unheld() {
        let now = UNIX_EPOCH + Duration::from_secs(10_000);
        let grace = Duration::from_secs(900);
        let none = HashSet::new();
        let filling = ["strata.io", TAG_FILLING];
        let temporary = [TAG_TEMPORARY, "strata.io/source=pvc-src"];
        // Old enough and unheld: abandoned.
        assert_eq!(
            still_working(&lv("pvc-c", &filling, Some(9_000)), now, grace, &none),
            None
        );
        assert_eq!(
            still_working(&lv("pvc-c.src", &temporary, Some(100)), now, grace, &none),
            None
        );
        // Younger than the grace.
        assert_eq!(
            still_working(&lv("pvc-c", &filling, Some(9_500)), now, grace, &none).as_deref(),
            Some(
                "tagged strata.io/filling, made 500s ago (less than --filling-grace 900s): a request may still be working on it"
            )
        );
        // Held by a request of this process: the clone's lock covers its temporary.
        let held = HashSet::from(["pvc-c".to_owned()]);
        assert_eq!(
            still_working(&lv("pvc-c", &filling, Some(100)), now, grace, &held).as_deref(),
            Some("tagged strata.io/filling: a request of this node is working on pvc-c")
        );
        assert_eq!(
            still_working(&lv("pvc-c.src", &temporary, Some(100)), now, grace, &held).as_deref(),
            Some("tagged strata.io/temporary: a request of this node is working on pvc-c")
        );
        // No creation time: never judged abandoned.
        assert!(
            still_working(&lv("pvc-c", &filling, None), now, grace, &none)
                .is_some_and(|w| w.contains("no creation time"))
        );
        // A clock that went back reads as age 0.
        assert!(still_working(&lv("pvc-c", &filling, Some(20_000)), now, grace, &none).is_some());
        // Neither filling nor temporary: not this rule's business.
        assert_eq!(
            still_working(&lv("pvc-v", &["strata.io"], Some(1)), now, grace, &held),
            None
        );
        assert_eq!(owner(&lv("pvc-x.src", &["strata.io"], None)), "pvc-x.src");
    }

    #[test]
    fn a_temporary_without_its_clone_is_stray() {
        let facts = Facts {
            lvs: vec![
                lv("pvc-a", &["strata.io", TAG_FILLING], None),
                lv("pvc-a.src", &[TAG_TEMPORARY], None),
                lv("pvc-b.src", &[TAG_TEMPORARY], None),
                lv("pvc-c.src", &[], None),
            ],
            ..Facts::default()
        };
        let stray: Vec<&str> = facts.stray_temporaries().map(|l| l.name.as_str()).collect();
        assert_eq!(stray, ["pvc-b.src"]);
    }
}
