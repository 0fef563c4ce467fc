//! Leaving nothing behind: a CreateVolume from a snapshot or a volume that
//! fails removes what it made.
//!
//! Why: the external-provisioner takes most answers (`INTERNAL`,
//! `INVALID_ARGUMENT`, `NOT_FOUND`, …) as final. It forgets the request and
//! never calls DeleteVolume for it, so a half-made volume would stay for
//! ever: a thick clone's LV tagged `strata.io/filling`, and its `<name>.src`
//! temporary snapshot of the source, which holds a source-sized
//! copy-on-write area and keeps the source from being deleted.
//!
//! The rule, for every step of a restore or clone, thick and thin: once the
//! new volume's LV exists (made by this attempt, or left unfinished by an
//! earlier one), a failure removes the `<name>.src` temporary snapshot and
//! then the LV, and answers the failure. Only the request's own LVs are
//! removed: the volume named after the request, carrying strata's identity
//! and the request's content source, and temporaries tagged
//! `strata.io/temporary` under the `.src` name; one that is open (something
//! holds its device) is left. A thin pool grown for the request stays grown
//! (its room is the pool's, not the volume's). When something cannot be
//! removed the answer is `UNAVAILABLE` naming both failures: the provisioner
//! retries that (a retry resumes a thick copy, or removes the volume when
//! the claim is gone), and what is left keeps its tags for the retry and for
//! `strata node gc` ([`crate::orphans`]). A crash is not a failure: what it
//! leaves is for the retry, which copies from the same point in time.

use tracing::info;

use super::is_open;
use crate::driver::Driver;
use crate::error::CsiError;
use crate::lvm::LvInfo;
use crate::names::{self, ContentSource, TAG_TEMPORARY, VolumeIdentity};

/// The temporary snapshots made for the thick clone `name` (in any VG).
pub(crate) fn temporaries_of<'a>(lvs: &'a [LvInfo], name: &str) -> Vec<&'a LvInfo> {
    let temp = names::clone_source_name(name);
    lvs.iter()
        .filter(|l| l.name == temp && l.tags.iter().any(|t| t == TAG_TEMPORARY))
        .collect()
}

/// What a failed CreateVolume of `name` (in `vg`, from `source`) leaves, in
/// the order to remove it: its temporary snapshots, then its volume (only
/// when it is the request's: strata's identity and the same content source).
pub(crate) fn leftovers<'a>(
    lvs: &'a [LvInfo],
    vg: &str,
    name: &str,
    source: &ContentSource,
) -> Vec<&'a LvInfo> {
    let mut out = temporaries_of(lvs, name);
    out.extend(lvs.iter().find(|l| {
        l.vg == vg
            && l.name == name
            && VolumeIdentity::from_tags(&l.tags).is_some()
            // Contains, not "is": a thin snapshot carries its origin's
            // tags (its own source among them) until they are dropped.
            && l.tags.contains(&source.to_tag())
    }));
    out
}

impl Driver {
    /// Remove what the failed CreateVolume of `name` left (see the module)
    /// and turn `failure` into the answer: `failure` itself when nothing is
    /// left, else `UNAVAILABLE` naming what is.
    pub(crate) fn roll_back(
        &self,
        vg: &str,
        name: &str,
        source: &ContentSource,
        failure: CsiError,
    ) -> CsiError {
        let lvs = match self.all_lvs() {
            Ok(lvs) => lvs,
            Err(e) => return left_behind(failure, &[format!("cannot list the LVs: {e}")]),
        };
        let mut kept = Vec::new();
        for lv in leftovers(&lvs, vg, name, source) {
            // A volume whose temporary snapshot stays stays with it, so the
            // two are found (and resumed or removed) together.
            if !kept.is_empty() {
                kept.push(format!("{}/{} kept with it", lv.vg, lv.name));
                continue;
            }
            if is_open(lv) {
                kept.push(format!("{}/{} is open", lv.vg, lv.name));
                continue;
            }
            match self.lvm.remove_lv(&lv.vg, &lv.name) {
                Ok(()) => info!(lv = %lv.name, vg = %lv.vg, "removed what the failed create made"),
                Err(e) => kept.push(format!("removing {}/{}: {e}", lv.vg, lv.name)),
            }
        }
        if kept.is_empty() {
            failure
        } else {
            left_behind(failure, &kept)
        }
    }
}

fn left_behind(failure: CsiError, kept: &[String]) -> CsiError {
    CsiError::Unavailable(format!(
        "{failure}; what the request made is left ({}): retry",
        kept.join("; ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::names::TAG_FILLING;

    fn lv(vg: &str, name: &str, tags: &[&str]) -> LvInfo {
        LvInfo {
            vg: vg.into(),
            name: name.into(),
            size_bytes: 8 << 20,
            tags: tags.iter().map(|t| (*t).to_owned()).collect(),
            attr: "-wi-a-----".into(),
            pool: None,
            path: format!("/dev/{vg}/{name}"),
            data_percent: None,
            metadata_percent: None,
            created: None,
        }
    }

    #[test]
    fn only_the_requests_own_lvs_are_left_over() {
        let from = ContentSource::Volume("pvc-src".into());
        let clone_tags = [
            "strata.io",
            "strata.io/class=fast",
            "strata.io/from-volume=pvc-src",
            TAG_FILLING,
        ];
        let lvs = vec![
            lv("vg", "pvc-src", &["strata.io", "strata.io/class=fast"]),
            lv(
                "vg",
                "pvc-c.src",
                &[TAG_TEMPORARY, "strata.io/source=pvc-src"],
            ),
            lv("vg", "pvc-c", &clone_tags),
            // Not ours: a `.src` LV strata did not tag, and another clone.
            lv("vg", "pvc-d.src", &[]),
            lv("vg", "pvc-d", &clone_tags),
        ];
        let names = |v: Vec<&LvInfo>| v.into_iter().map(|l| l.name.clone()).collect::<Vec<_>>();
        assert_eq!(
            names(leftovers(&lvs, "vg", "pvc-c", &from)),
            ["pvc-c.src", "pvc-c"],
            "temporary first"
        );
        assert_eq!(names(leftovers(&lvs, "vg", "pvc-d", &from)), ["pvc-d"]);
        // Another source, another VG, or no identity: not the request's.
        let other = ContentSource::Snapshot("snap-1".into());
        assert_eq!(names(leftovers(&lvs, "vg", "pvc-c", &other)), ["pvc-c.src"]);
        assert_eq!(names(leftovers(&lvs, "vg2", "pvc-c", &from)), ["pvc-c.src"]);
        let foreign = vec![lv("vg", "pvc-e", &["strata.io/from-volume=pvc-src"])];
        assert!(leftovers(&foreign, "vg", "pvc-e", &from).is_empty());
        assert!(leftovers(&lvs, "vg", "pvc-src", &from).is_empty());
    }
}
