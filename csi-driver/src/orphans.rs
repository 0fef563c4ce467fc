//! Orphans: what strata left on a node that nothing accounts for any more,
//! found by looking (never guessed), reported, and removed only when told.
//!
//! Four kinds, each with one rule ([`judge`], a pure function over
//! [`Facts`]):
//! - **volume**: an LV with the `strata.io` marker tag (snapshots excepted:
//!   they belong to VolumeSnapshotContents, see [`crate::inventory::is_snapshot`])
//!   whose name no PersistentVolume of driver `strata.io` has as its volume
//!   handle. Judged only when the PersistentVolumes are known
//!   ([`crate::owners::VolumeOwners`]): with the API unreachable no LV is an
//!   orphan.
//! - **mount**: a mount of a device-mapper device of a configured VG whose LV
//!   no longer exists (the LV is gone, the mount is left).
//! - **staging_dir** / **publish_dir**: a volume directory the kubelet made
//!   for driver `strata.io` (its `vol_data.json` says so:
//!   `<kubelet>/plugins/kubernetes.io/csi/{strata.io/<hash>,pv/<pv>}/` with
//!   `globalmount`, `<kubelet>/pods/<uid>/volumes/kubernetes.io~csi/<pv>/` with
//!   `mount`) whose volume handle is no LV on this node, whose mount
//!   directory is absent or empty, and which nothing is mounted on.
//!
//! Mounts and directories are judged from this node alone (they do not need
//! the API). A finding counts only when two looks [`Scanner::settle`] apart
//! both make it: an LV whose PersistentVolume the provisioner is about to
//! create, or one whose DeleteVolume is finishing, is never reported.
//!
//! A volume LV that a CreateVolume marks as its own while it works (a
//! restore or clone tagged `strata.io/filling`, or the `<clone>.src`
//! temporary snapshot tagged `strata.io/temporary`; one whose clone is gone
//! is an orphan too) is removable only once no request can be working on it
//! ([`in_flight`]: closed, unheld, made more than `--filling-grace` ago);
//! until then it is reported and kept, saying why.
//!
//! [`remove`] undoes one orphan, re-checking first with the same rules on a
//! fresh report: an LV that is open, mounted or possibly still a request's
//! is kept, a directory that is not empty is kept. So what a dry run lists
//! as kept, `--apply` keeps. Only `strata node gc --apply` calls it; the
//! node's periodic scan ([`watch`]) only reports.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::{info, warn};

use crate::driver::Driver;
use crate::error::CsiError;
use crate::identity::DRIVER_NAME;
use crate::inventory::is_snapshot;
use crate::lvm::LvInfo;
use crate::mount::{self, MountEntry};
use crate::names::{TAG_FILLING, VolumeIdentity};
use crate::owners::VolumeOwners;

/// What kind of thing is left over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OrphanKind {
    /// A strata LV without a PersistentVolume.
    Volume,
    /// A mount of an LV that no longer exists.
    Mount,
    /// A kubelet staging directory of a volume that is not here.
    StagingDir,
    /// A kubelet publish directory of a volume that is not here.
    PublishDir,
}

impl OrphanKind {
    /// The `kind` label and the word `strata node gc` prints.
    pub fn as_str(self) -> &'static str {
        match self {
            OrphanKind::Volume => "volume",
            OrphanKind::Mount => "mount",
            OrphanKind::StagingDir => "staging_dir",
            OrphanKind::PublishDir => "publish_dir",
        }
    }
}

/// One orphan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Orphan {
    /// Its kind.
    pub kind: OrphanKind,
    /// The LV name (volume, mount) or the volume handle (directories).
    pub volume: String,
    /// The VG of the LV (volume, mount).
    pub vg: Option<String>,
    /// The mount point (mount), the volume directory (directories), or where
    /// an orphan LV is still mounted.
    pub path: Option<PathBuf>,
    /// Why nothing accounts for it.
    pub reason: String,
    /// Why `gc --apply` would leave it alone (an LV that is open or mounted).
    pub in_use: Option<String>,
}

type Key = (OrphanKind, Option<String>, String, Option<PathBuf>);

impl Orphan {
    fn key(&self) -> Key {
        let path = match self.kind {
            OrphanKind::Volume => None,
            _ => self.path.clone(),
        };
        (self.kind, self.vg.clone(), self.volume.clone(), path)
    }

    /// `vg/lv` for LVs, the volume handle otherwise.
    pub fn name(&self) -> String {
        match &self.vg {
            Some(vg) => format!("{vg}/{}", self.volume),
            None => self.volume.clone(),
        }
    }
}

/// A device-mapper device as sysfs shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DmDevice {
    /// Kernel name (`dm-3`).
    pub kernel: String,
    /// Device number.
    pub dev: (u32, u32),
    /// dm name (`vg-lv`, dashes in names doubled).
    pub name: String,
}

/// The state of a kubelet mount directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirState {
    /// It does not exist.
    Absent,
    /// It exists and holds nothing.
    Empty,
    /// It holds something (or cannot be read).
    NotEmpty,
}

/// A volume directory the kubelet made for driver `strata.io`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeletDir {
    /// [`OrphanKind::StagingDir`] or [`OrphanKind::PublishDir`].
    pub kind: OrphanKind,
    /// The directory holding `vol_data.json`.
    pub volume_dir: PathBuf,
    /// Its `globalmount` (staging) or `mount` (publish) directory.
    pub mount_dir: PathBuf,
    /// `volumeHandle` from `vol_data.json`.
    pub volume_handle: String,
    /// The mount directory's state.
    pub state: DirState,
    /// Something is mounted on the mount directory.
    pub mounted: bool,
}

/// What one look at the node found: the input of [`judge`].
#[derive(Debug, Clone)]
pub struct Facts {
    /// The configured VGs.
    pub vgs: Vec<String>,
    /// Every LV of those VGs.
    pub lvs: Vec<LvInfo>,
    /// The mount table.
    pub mounts: Vec<MountEntry>,
    /// device-mapper devices.
    pub dm: Vec<DmDevice>,
    /// kubelet volume directories of driver `strata.io`.
    pub kubelet_dirs: Vec<KubeletDir>,
    /// When the look was taken (the age of an LV is reckoned from it).
    pub now: SystemTime,
    /// The volumes a request of this process holds or waits for the lock of
    /// (empty in a process that serves no requests, `strata node gc`).
    pub held: HashSet<String>,
}

impl Default for Facts {
    /// Nothing found, at the epoch: no LV is old enough to be abandoned.
    fn default() -> Self {
        Facts {
            vgs: Vec::new(),
            lvs: Vec::new(),
            mounts: Vec::new(),
            dm: Vec::new(),
            kubelet_dirs: Vec::new(),
            now: UNIX_EPOCH,
            held: HashSet::new(),
        }
    }
}

/// Split a dm name into VG and LV (`strata--fast-pvc--1` → `strata-fast`,
/// `pvc-1`); a layer suffix (`-tpool`, `-real`, `-cow`) is dropped.
pub fn split_dm_name(name: &str) -> Option<(String, String)> {
    let mut parts = vec![String::new()];
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '-' {
            if chars.peek() == Some(&'-') {
                chars.next();
                parts.last_mut()?.push('-');
            } else {
                parts.push(String::new());
            }
        } else {
            parts.last_mut()?.push(c);
        }
    }
    match parts.as_slice() {
        [vg, lv, ..] if !vg.is_empty() && !lv.is_empty() => Some((vg.clone(), lv.clone())),
        _ => None,
    }
}

impl Facts {
    /// The VG and LV a mount uses, when it is a device of a configured VG:
    /// by device number (a filesystem), by the device node it binds (a raw
    /// block publish), or by its source path.
    fn mounted_lv(&self, m: &MountEntry) -> Option<(String, String)> {
        let by_dm = |d: Option<&DmDevice>| d.and_then(|d| split_dm_name(&d.name));
        let found = by_dm(self.dm.iter().find(|d| d.dev == m.dev))
            .or_else(|| {
                (m.fs_type == "devtmpfs" && m.root != "/")
                    .then(|| m.root.trim_start_matches('/'))
                    .and_then(|node| {
                        by_dm(self.dm.iter().find(|d| d.kernel == node))
                            .or_else(|| node.strip_prefix("mapper/").and_then(split_dm_name))
                    })
            })
            .or_else(|| {
                let src = m.source.strip_prefix("/dev/")?;
                match src.strip_prefix("mapper/") {
                    Some(dm) => split_dm_name(dm),
                    None => src
                        .split_once('/')
                        .map(|(vg, lv)| (vg.to_owned(), lv.to_owned())),
                }
            })?;
        self.vgs.contains(&found.0).then_some(found)
    }

    fn lv(&self, vg: &str, name: &str) -> Option<&LvInfo> {
        self.lvs.iter().find(|l| l.vg == vg && l.name == name)
    }
}

/// True when LVM reports the LV's device open (`lv_attr` character 6 is `o`).
fn is_open(lv: &LvInfo) -> bool {
    lv.attr.chars().nth(5) == Some('o')
}

/// The orphans in `facts`. `owners`: the volume handles of every
/// PersistentVolume of driver `strata.io`, or `None` when unknown (then no
/// LV is judged). `grace`: how old an LV a request made for its own length
/// must be before it counts as abandoned ([`in_flight`]).
pub fn judge(facts: &Facts, owners: Option<&HashSet<String>>, grace: Duration) -> Vec<Orphan> {
    let mut out = Vec::new();
    // Where each existing LV is mounted, and the mounts of gone LVs.
    let mut mounted: HashMap<(String, String), Vec<&Path>> = HashMap::new();
    for m in &facts.mounts {
        let Some((vg, lv)) = facts.mounted_lv(m) else {
            continue;
        };
        if facts.lv(&vg, &lv).is_some() {
            mounted.entry((vg, lv)).or_default().push(&m.mount_point);
        } else {
            out.push(Orphan {
                kind: OrphanKind::Mount,
                reason: format!(
                    "{vg}/{lv} is mounted here but the logical volume no longer exists"
                ),
                volume: lv,
                vg: Some(vg),
                path: Some(m.mount_point.clone()),
                in_use: None,
            });
        }
    }
    if let Some(owners) = owners {
        for lv in &facts.lvs {
            if VolumeIdentity::from_tags(&lv.tags).is_none()
                || is_snapshot(lv)
                || owners.contains(&lv.name)
            {
                continue;
            }
            let at = mounted.get(&(lv.vg.clone(), lv.name.clone()));
            let mut reason = format!(
                "no PersistentVolume of driver {DRIVER_NAME} has volume handle {:?}",
                lv.name
            );
            if lv.tags.iter().any(|t| t == TAG_FILLING) {
                reason.push_str(
                    ", and its restore or clone never finished (tagged strata.io/filling)",
                );
            }
            out.push(Orphan {
                kind: OrphanKind::Volume,
                volume: lv.name.clone(),
                vg: Some(lv.vg.clone()),
                path: at.and_then(|a| a.first()).map(|p| p.to_path_buf()),
                reason,
                in_use: in_use(facts, lv, at.and_then(|a| a.first()).copied(), grace),
            });
        }
        for lv in facts.stray_temporaries() {
            let clone = crate::names::clone_of_source(&lv.name).unwrap_or_default();
            out.push(Orphan {
                kind: OrphanKind::Volume,
                volume: lv.name.clone(),
                vg: Some(lv.vg.clone()),
                path: None,
                reason: format!(
                    "the temporary snapshot a clone {clone:?} copied from, and that clone is gone"
                ),
                in_use: in_use(facts, lv, None, grace),
            });
        }
    }
    for d in &facts.kubelet_dirs {
        if d.mounted
            || d.state == DirState::NotEmpty
            || facts.lvs.iter().any(|l| l.name == d.volume_handle)
        {
            continue;
        }
        out.push(Orphan {
            kind: d.kind,
            volume: d.volume_handle.clone(),
            vg: None,
            path: Some(d.volume_dir.clone()),
            reason: format!(
                "kubelet directory of volume {:?}, which is not on this node; nothing is mounted or kept in it",
                d.volume_handle
            ),
            in_use: None,
        });
    }
    out.sort_by_key(Orphan::key);
    out
}

/// Why `gc --apply` would leave the LV alone: mounted (at `mount_point`),
/// open, or possibly still a request's ([`in_flight`]).
fn in_use(
    facts: &Facts,
    lv: &LvInfo,
    mount_point: Option<&Path>,
    grace: Duration,
) -> Option<String> {
    match (mount_point, is_open(lv)) {
        (Some(p), _) => Some(format!("mounted at {}", p.display())),
        (None, true) => Some("its device is open".to_owned()),
        (None, false) => in_flight::still_working(lv, facts.now, grace, &facts.held),
    }
}

/// The device-mapper devices sysfs lists.
fn dm_devices() -> Vec<DmDevice> {
    let Ok(dir) = std::fs::read_dir("/sys/block") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| {
            let kernel = e.file_name().to_str()?.to_owned();
            if !kernel.starts_with("dm-") {
                return None;
            }
            let name = std::fs::read_to_string(e.path().join("dm/name")).ok()?;
            let dev = std::fs::read_to_string(e.path().join("dev")).ok()?;
            let (ma, mi) = dev.trim().split_once(':')?;
            Some(DmDevice {
                kernel,
                dev: (ma.parse().ok()?, mi.parse().ok()?),
                name: name.trim().to_owned(),
            })
        })
        .collect()
}

/// `vol_data.json`'s volume handle when its driver is `strata.io`.
fn strata_volume_handle(volume_dir: &Path) -> Option<String> {
    let text = std::fs::read_to_string(volume_dir.join("vol_data.json")).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    (v.get("driverName")?.as_str()? == DRIVER_NAME)
        .then(|| v.get("volumeHandle")?.as_str().map(str::to_owned))
        .flatten()
}

fn dir_state(dir: &Path) -> DirState {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_none() {
                DirState::Empty
            } else {
                DirState::NotEmpty
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => DirState::Absent,
        Err(_) => DirState::NotEmpty,
    }
}

fn subdirs(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default()
}

/// The kubelet volume directories of driver `strata.io` under `kubelet_dir`.
pub fn kubelet_dirs(kubelet_dir: &Path, table: &[MountEntry]) -> Vec<KubeletDir> {
    let csi = kubelet_dir.join("plugins/kubernetes.io/csi");
    let staging = subdirs(&csi.join(DRIVER_NAME))
        .into_iter()
        .chain(subdirs(&csi.join("pv")))
        .map(|d| (OrphanKind::StagingDir, d.join("globalmount"), d));
    let publish = subdirs(&kubelet_dir.join("pods"))
        .into_iter()
        .flat_map(|pod| subdirs(&pod.join("volumes/kubernetes.io~csi")))
        .map(|d| (OrphanKind::PublishDir, d.join("mount"), d));
    let mut out: Vec<KubeletDir> = staging
        .chain(publish)
        .filter_map(|(kind, mount_dir, volume_dir)| {
            let volume_handle = strata_volume_handle(&volume_dir)?;
            Some(KubeletDir {
                kind,
                state: dir_state(&mount_dir),
                mounted: mount::mount_at(table, &mount_dir).is_some(),
                mount_dir,
                volume_dir,
                volume_handle,
            })
        })
        .collect();
    out.sort_by(|a, b| a.volume_dir.cmp(&b.volume_dir));
    out
}

impl Driver {
    /// One look at this node: its LVs, mounts, dm devices and kubelet
    /// directories. Blocking: one LVM report.
    pub fn orphan_facts(&self, kubelet_dir: &Path) -> Result<Facts, CsiError> {
        let vgs = self.config.volume_groups();
        let lvs = self.all_lvs()?;
        let mounts = mount::mounts()
            .map_err(|e| CsiError::Internal(format!("cannot read the mount table: {e}")))?;
        Ok(Facts {
            kubelet_dirs: kubelet_dirs(kubelet_dir, &mounts),
            dm: dm_devices(),
            vgs,
            lvs,
            mounts,
            now: SystemTime::now(),
            held: self.volume_locks.keys(),
        })
    }
}

/// What a survey found.
#[derive(Debug, Clone, Default)]
pub struct Survey {
    /// The orphans both looks found, sorted.
    pub orphans: Vec<Orphan>,
    /// False when the PersistentVolumes were unknown (no LV was judged).
    pub owners_known: bool,
    /// Why they were unknown.
    pub owners_problem: Option<String>,
}

impl Survey {
    /// Orphan counts by kind label.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for o in &self.orphans {
            match counts.iter_mut().find(|(k, _)| *k == o.kind.as_str()) {
                Some((_, n)) => *n += 1,
                None => counts.push((o.kind.as_str(), 1)),
            }
        }
        counts
    }
}

/// Looks for orphans on one node.
#[derive(Clone)]
pub struct Scanner {
    /// The node's driver (config, LVM).
    pub driver: Arc<Driver>,
    /// Who owns volumes.
    pub owners: Arc<dyn VolumeOwners>,
    /// The kubelet's root directory (`/var/lib/kubelet`).
    pub kubelet_dir: PathBuf,
    /// Time between the two looks of a survey.
    pub settle: Duration,
    /// How old an LV a request made for its own length must be before it
    /// counts as abandoned ([`in_flight`]).
    pub filling_grace: Duration,
}

impl std::fmt::Debug for Scanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scanner")
            .field("owners", &self.owners.describe())
            .field("kubelet_dir", &self.kubelet_dir)
            .field("settle", &self.settle)
            .field("filling_grace", &self.filling_grace)
            .finish_non_exhaustive()
    }
}

impl Scanner {
    /// One look: the LVs first, then the PersistentVolumes, so an LV seen
    /// has had its chance to get its PersistentVolume by the time they are
    /// listed.
    pub async fn look(&self) -> Result<Survey, CsiError> {
        let dir = self.kubelet_dir.clone();
        let facts = self.driver.blocking(move |d| d.orphan_facts(&dir)).await?;
        let (owners, problem) = match self.owners.persistent_volumes().await {
            Ok(Some(o)) => (Some(o), None),
            Ok(None) => (None, Some(self.owners.describe())),
            Err(e) => (None, Some(e.to_string())),
        };
        Ok(Survey {
            orphans: judge(&facts, owners.as_ref(), self.filling_grace),
            owners_known: owners.is_some(),
            owners_problem: problem,
        })
    }

    /// Two looks [`Scanner::settle`] apart; an orphan counts when both find it.
    pub async fn survey(&self) -> Result<Survey, CsiError> {
        let first = self.look().await?;
        if first.orphans.is_empty() {
            return Ok(first);
        }
        tokio::time::sleep(self.settle).await;
        let mut second = self.look().await?;
        let before: HashSet<Key> = first.orphans.iter().map(Orphan::key).collect();
        second.orphans.retain(|o| before.contains(&o.key()));
        if !first.owners_known {
            second.owners_known = false;
            second.owners_problem = second.owners_problem.or(first.owners_problem);
            second.orphans.retain(|o| o.kind != OrphanKind::Volume);
        }
        Ok(second)
    }
}

/// The node's memory of what it has reported: each orphan is logged once
/// when it appears and once when it goes.
#[derive(Debug, Default)]
pub struct OrphanLog {
    known: HashMap<Key, Orphan>,
}

impl OrphanLog {
    /// Take a survey in; log what is new and what is gone; return the
    /// current counts by kind. While the PersistentVolumes are unknown the
    /// volume orphans reported before are kept as they were.
    pub fn update(&mut self, survey: &Survey) -> Vec<(&'static str, usize)> {
        let mut now: HashMap<Key, Orphan> = survey
            .orphans
            .iter()
            .map(|o| (o.key(), o.clone()))
            .collect();
        if !survey.owners_known {
            for (k, o) in &self.known {
                if o.kind == OrphanKind::Volume {
                    now.insert(k.clone(), o.clone());
                }
            }
        }
        for (k, o) in &now {
            if !self.known.contains_key(k) {
                let gc = match &o.in_use {
                    Some(why) => format!("`strata node gc --apply` keeps it while {why}"),
                    None => "`strata node gc --apply` removes it".to_owned(),
                };
                warn!(
                    kind = o.kind.as_str(),
                    volume = %o.name(),
                    path = %o.path.as_deref().map(|p| p.display().to_string()).unwrap_or_default(),
                    in_use = o.in_use.as_deref().unwrap_or(""),
                    "orphan: {}; {gc}",
                    o.reason
                );
            }
        }
        for (k, o) in &self.known {
            if !now.contains_key(k) {
                info!(kind = o.kind.as_str(), volume = %o.name(), "no longer an orphan");
            }
        }
        self.known = now;
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for o in self.known.values() {
            match counts.iter_mut().find(|(k, _)| *k == o.kind.as_str()) {
                Some((_, n)) => *n += 1,
                None => counts.push((o.kind.as_str(), 1)),
            }
        }
        counts
    }
}

/// The node's periodic scan: a survey at start and then every `interval`,
/// reported in the log and the metrics, until `stop` turns true. Removes
/// nothing.
pub async fn watch(
    scanner: Scanner,
    interval: Duration,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut log = OrphanLog::default();
    let mut owners_warned = false;
    info!(
        every = ?interval,
        owners = %scanner.owners.describe(),
        kubelet_dir = %scanner.kubelet_dir.display(),
        "orphan scan on"
    );
    loop {
        let survey = tokio::select! {
            s = scanner.survey() => s,
            _ = stop.wait_for(|s| *s) => return,
        };
        match survey {
            Ok(survey) => {
                match (&survey.owners_problem, owners_warned) {
                    (Some(p), false) => {
                        warn!(
                            "orphan scan: PersistentVolumes unknown ({p}); no volume is judged an orphan"
                        );
                        owners_warned = true;
                    }
                    (None, true) => owners_warned = false,
                    _ => {}
                }
                let counts = log.update(&survey);
                scanner
                    .driver
                    .metrics
                    .set_orphans(&counts, survey.owners_known);
            }
            Err(e) => warn!("orphan scan: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

pub mod in_flight;
mod remove;
pub use remove::{Outcome, removal_order, remove};

#[cfg(test)]
mod tests;
