//! Randomized logs from a simulated agent (slow, crashing, retrying) and
//! from pure noise, checked against the invariant of a move, idempotency
//! and snapshots.

use std::collections::{BTreeMap, BTreeSet};

use super::super::*;
use super::{sha, t, volume};

/// SplitMix64: small, deterministic, good enough to pick commands.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
    fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }
}

const VOLUMES: [&str; 2] = ["v0", "v1"];
const PATHS: [&str; 3] = ["a.jpg", "dir/b.png", "dir/c.png"];
const LAKES: [&str; 2] = ["s3://lake-a/site", "file:///srv/lake-b"];

/// What is on disk at one path: content version and the mtime of its last write.
#[derive(Clone, Copy)]
struct Disk {
    content: u8,
    mtime_ns: i64,
}

fn sim_intent(k: &FileKey, d: Disk, move_id: u64) -> Intent {
    Intent {
        key: k.clone(),
        move_id,
        size: 10 * u64::from(d.content),
        mtime_ns: d.mtime_ns,
        ino: 5,
        dev: 3,
        ctime_ns: d.mtime_ns + 1,
        sha256: sha(d.content),
        owner: None,
        lake_key: format!("{}/{}/{}", k.volume, k.path, d.content),
        policy: "p".into(),
        rule: "r".into(),
    }
}

/// A command a real (if slow, crashing and retrying) agent could send now:
/// the next step of a file's move as the catalog and the disk stand, a
/// change to the disk, or a retry of something sent earlier.
fn agent_step(
    rng: &mut Rng,
    s: &State,
    disk: &mut BTreeMap<FileKey, Disk>,
    sent: &[Command],
    clock: i64,
) -> Option<Command> {
    if !sent.is_empty() && rng.chance(15) {
        return Some(rng.pick(sent).clone());
    }
    if rng.chance(8) {
        return Some(match rng.below(8) {
            0 => Command::PutPolicy {
                name: format!("p{}", rng.below(2)),
                spec: format!("rules: [{}]", rng.below(3)),
            },
            1 => Command::DeletePolicy {
                name: format!("p{}", rng.below(2)),
            },
            2 => Command::RemoveVolume {
                id: rng.pick(&VOLUMES).to_string(),
            },
            3 => Command::RegisterVolume(Volume {
                id: rng.pick(&VOLUMES).to_string(),
                path: "/mnt/x".into(),
                labels: BTreeMap::new(),
            }),
            4 => Command::RecordReplicaHeldLog { id: rng.below(4) },
            5 => Command::ForgetReplica { id: rng.below(4) },
            _ => {
                let start = rng.below(1_000);
                Command::RecordRun(RunSummary {
                    id: format!("run{}", rng.below(4)),
                    policy: "p".into(),
                    volume: "v0".into(),
                    started_at: t(start),
                    finished_at: t(start + rng.below(100)),
                    files: rng.below(10),
                    bytes: rng.below(1000),
                    errors: 0,
                    settling_files: 0,
                    settling_bytes: 0,
                    settle: None,
                    free_goal: None,
                })
            }
        });
    }
    let k = FileKey::new(*rng.pick(&VOLUMES), *rng.pick(&PATHS));
    let d = *disk.entry(k.clone()).or_insert(Disk {
        content: 1,
        mtime_ns: 0,
    });
    if rng.chance(10) {
        // Someone writes the file (unless its bytes were released: then a new file appears).
        disk.insert(
            k,
            Disk {
                content: 1 + rng.below(3) as u8,
                mtime_ns: clock,
            },
        );
        return None;
    }
    let Some(r) = s.file(&k) else {
        return Some(Command::RecordIntent(sim_intent(&k, d, rng.next())));
    };
    let (key, move_id, sha256) = (k.clone(), r.move_id, r.sha256);
    let unchanged =
        d.content as u64 * 10 == r.size && sha(d.content) == r.sha256 && d.mtime_ns == r.mtime_ns;
    let fail = Command::RecordFailure {
        key: key.clone(),
        move_id,
        sha256,
        attempt: r.attempts + 1,
        error: "boom".into(),
        next_attempt_at: t(clock as u64 + 100),
    };
    Some(match r.state {
        FileState::Intent | FileState::Uploaded if !unchanged && rng.chance(50) => {
            Command::RecordIntent(sim_intent(&k, d, rng.next()))
        }
        FileState::Intent if rng.chance(20) => fail,
        FileState::Intent => Command::MarkUploaded {
            key,
            move_id,
            sha256,
        },
        FileState::Uploaded if rng.chance(20) => fail,
        FileState::Uploaded => Command::MarkArchived {
            key,
            move_id,
            sha256,
            size: r.size,
            lake: Some(rng.pick(&LAKES).to_string()),
            verified_at: Some(t(clock as u64)),
        },
        // The policy's lake changed (or the copy was lost): verified again.
        FileState::Archived if rng.chance(15) => Command::MarkArchived {
            key,
            move_id,
            sha256,
            size: r.size,
            lake: Some(rng.pick(&LAKES).to_string()),
            verified_at: Some(t(clock as u64)),
        },
        FileState::Archived if rng.chance(15) => Command::MarkRecalled {
            key,
            move_id,
            sha256,
        },
        FileState::Archived if !unchanged && rng.chance(50) => Command::MarkAbandoned {
            key,
            move_id,
            sha256,
        },
        // The releaser reports what it sees on disk; the catalog refuses if it changed.
        FileState::Archived => Command::MarkReleased {
            key,
            move_id,
            sha256,
            size: u64::from(d.content) * 10,
            mtime_ns: d.mtime_ns,
            ino: 5,
            dev: 3,
            ctime_ns: d.mtime_ns + 1,
        },
        FileState::Released if rng.chance(30) => Command::MarkRecalled {
            key,
            move_id,
            sha256,
        },
        FileState::Released if !unchanged => Command::RecordIntent(sim_intent(&k, d, rng.next())),
        FileState::Released => return None,
        FileState::Recalled | FileState::Abandoned => {
            Command::RecordIntent(sim_intent(&k, d, rng.next()))
        }
    })
}

/// Any command at all, most of them nonsense.
fn garbage(rng: &mut Rng) -> Command {
    let key = FileKey::new(*rng.pick(&VOLUMES), *rng.pick(&PATHS));
    let c = 1 + rng.below(3) as u8;
    let sha256 = sha(c);
    let move_id = rng.below(3);
    match rng.below(7) {
        0 => Command::RecordIntent(sim_intent(
            &key,
            Disk {
                content: c,
                mtime_ns: rng.below(3) as i64,
            },
            move_id,
        )),
        1 => Command::MarkUploaded {
            key,
            move_id,
            sha256,
        },
        2 => Command::MarkArchived {
            key,
            move_id,
            sha256,
            size: 10 * rng.below(4),
            lake: match rng.below(4) {
                0 => None,
                1 => Some("s3://key:secret@lake".into()),
                _ => Some(rng.pick(&LAKES).to_string()),
            },
            verified_at: rng.chance(80).then(|| t(rng.below(2_000))),
        },
        3 => Command::MarkReleased {
            key,
            move_id,
            sha256,
            size: 10 * rng.below(4),
            mtime_ns: rng.below(3) as i64,
            ino: 5,
            dev: 3,
            ctime_ns: rng.below(4) as i64,
        },
        4 => Command::MarkAbandoned {
            key,
            move_id,
            sha256,
        },
        5 => Command::MarkRecalled {
            key,
            move_id,
            sha256,
        },
        _ => Command::RecordFailure {
            key,
            move_id,
            sha256,
            attempt: rng.below(4) as u32,
            error: "x".into(),
            next_attempt_at: t(9),
        },
    }
}

/// A random log: volumes registered, then agent steps (and, with
/// `garbage_percent`, arbitrary commands), each with its own time.
fn random_log(seed: u64, len: usize, garbage_percent: u64) -> Vec<LogEntry> {
    let mut rng = Rng(seed);
    let mut s = State::new();
    let mut disk = BTreeMap::new();
    let mut log = Vec::new();
    let mut sent = Vec::new();
    let mut clock = 0u64;
    for v in VOLUMES {
        log.push(LogEntry {
            by: None,
            at: t(clock),
            command: Command::RegisterVolume(Volume {
                id: v.into(),
                path: format!("/mnt/{v}"),
                labels: BTreeMap::new(),
            }),
        });
    }
    for e in &log {
        s.apply_entry(e).unwrap();
    }
    while log.len() < len {
        clock += 1 + rng.below(1_000);
        let cmd = if rng.chance(garbage_percent) {
            Some(garbage(&mut rng))
        } else {
            agent_step(&mut rng, &s, &mut disk, &sent, clock as i64)
        };
        let Some(command) = cmd else { continue };
        let entry = LogEntry {
            by: None,
            at: t(clock),
            command,
        };
        let _ = s.apply_entry(&entry);
        sent.push(entry.command.clone());
        log.push(entry);
    }
    log
}

/// Applies `entry`, checking on the way that rejections change nothing, that
/// an immediate replay changes nothing, that the backlog index is right, and
/// the invariant of a move. `archived` collects every (file, content, lake
/// key) that was ever committed as archived.
fn checked_apply(
    s: &mut State,
    entry: &LogEntry,
    archived: &mut BTreeSet<(FileKey, Sha256, String, Option<String>)>,
) {
    let before = s.clone();
    let key = entry.command.file_key().cloned();
    let old = key.as_ref().and_then(|k| before.file(k)).cloned();
    match s.apply_entry(entry) {
        Err(e) => {
            assert_eq!(*s, before, "rejection {e} changed the state");
            let _ = e.to_string();
        }
        Ok(applied) => {
            if applied == Applied::Unchanged {
                assert_eq!(*s, before, "{:?} said unchanged", entry.command);
            }
            let after = s.clone();
            let replay = LogEntry {
                by: None,
                at: t(entry.at.unix_nanos() + 1),
                command: entry.command.clone(),
            };
            assert_eq!(
                s.apply_entry(&replay),
                Ok(Applied::Unchanged),
                "replay of {:?}",
                entry.command
            );
            assert_eq!(*s, after, "replay of {:?} changed the state", entry.command);
        }
    }
    if let Some(new) = key.as_ref().and_then(|k| s.file(k)) {
        if new.state == FileState::Archived {
            archived.insert((
                new.key.clone(),
                new.sha256,
                new.lake_key.clone(),
                new.lake.clone(),
            ));
            assert!(
                new.lake
                    .as_deref()
                    .is_none_or(|l| !l.contains('@') && !l.contains('?')),
                "a lake with credentials was recorded: {:?}",
                new.lake
            );
        }
        if new.state == FileState::Released
            && old.as_ref().is_none_or(|o| o.state != FileState::Released)
        {
            let o = old.as_ref().expect("released without a record");
            assert_eq!(o.state, FileState::Archived, "released from {}", o.state);
            assert_eq!(
                (o.sha256, o.size, o.mtime_ns, o.ino, o.dev, o.ctime_ns),
                (
                    new.sha256,
                    new.size,
                    new.mtime_ns,
                    new.ino,
                    new.dev,
                    new.ctime_ns
                )
            );
            let Command::MarkReleased {
                size,
                mtime_ns,
                ino,
                dev,
                ctime_ns,
                ..
            } = &entry.command
            else {
                panic!("released by {:?}", entry.command)
            };
            assert_eq!(
                (*size, *mtime_ns, *ino, *dev, *ctime_ns),
                (o.size, o.mtime_ns, o.ino, o.dev, o.ctime_ns),
                "released a changed file"
            );
        }
    }
    for r in s.files.values().filter(|r| r.state == FileState::Released) {
        assert!(
            archived.contains(&(r.key.clone(), r.sha256, r.lake_key.clone(), r.lake.clone())),
            "{} released but never archived with {} in {:?}",
            r.key,
            r.sha256,
            r.lake
        );
    }
    let mut reindexed = s.clone();
    reindexed.reindex();
    assert_eq!(*s, reindexed, "backlog index out of step");
}

fn apply_all(s: &mut State, log: &[LogEntry]) {
    for e in log {
        let _ = s.apply_entry(e);
    }
}

#[test]
fn random_logs_never_release_what_was_not_archived() {
    for seed in 0..300 {
        for garbage_percent in [0, 30] {
            let log = random_log(seed, 200, garbage_percent);
            let mut s = State::new();
            let mut archived = BTreeSet::new();
            let (mut accepted, mut started, mut restarted) =
                (BTreeSet::new(), BTreeSet::new(), BTreeSet::new());
            for e in &log {
                let before = s.clone();
                checked_apply(&mut s, e, &mut archived);
                // A late retry of an intent whose move was replaced starts
                // that move again (the catalog keeps no list of old move ids).
                if let Command::RecordIntent(i) = &e.command {
                    let was = before.file(&i.key).map(|r| r.move_id);
                    let is = s.file(&i.key).map(|r| r.move_id);
                    if is == Some(i.move_id) && was != is && !started.insert(i.move_id) {
                        restarted.insert(i.move_id);
                    }
                }
                // Otherwise agents pick fresh move ids, so a late retry of a
                // step they already took is either a no-op or refused.
                let step = match &e.command {
                    Command::RecordIntent(_) => None,
                    Command::MarkUploaded { move_id, .. }
                    | Command::MarkArchived { move_id, .. }
                    | Command::MarkReleased { move_id, .. }
                    | Command::MarkAbandoned { move_id, .. }
                    | Command::RecordFailure { move_id, .. }
                    | Command::MarkRecalled { move_id, .. } => Some(*move_id),
                    _ => None,
                };
                let step = step.is_some_and(|m| !restarted.contains(&m));
                if garbage_percent == 0 && step && !accepted.insert(format!("{:?}", e.command)) {
                    assert_eq!(
                        s, before,
                        "seed {seed}: late retry of {:?} changed the state",
                        e.command
                    );
                }
            }
        }
    }
}

#[test]
fn random_agent_logs_reach_every_state() {
    let mut seen = BTreeSet::new();
    for seed in 0..50 {
        let mut s = State::new();
        apply_all(&mut s, &random_log(seed, 200, 0));
        seen.extend(s.files.values().map(|r| r.state));
    }
    assert_eq!(
        seen.len(),
        FileState::ALL.len(),
        "generator too narrow: {seen:?}"
    );
}

#[test]
fn applying_a_log_twice_equals_applying_it_once() {
    for seed in 0..300 {
        let log = random_log(seed, 150, 20);
        let mut once = State::new();
        for (i, e) in log.iter().enumerate() {
            let _ = once.apply_indexed(i as u64 + 1, e);
        }
        assert_eq!(once.last_applied(), Some(log.len() as u64));
        // The whole log again, and (as after a crash) a tail of it again
        // after a prefix, both end where applying it once did.
        let mut twice = once.clone();
        for (i, e) in log.iter().enumerate() {
            assert_eq!(twice.apply_indexed(i as u64 + 1, e), Ok(Applied::Unchanged));
        }
        assert_eq!(twice, once, "seed {seed}");
        let mut rng = Rng(seed);
        let done = rng.below(log.len() as u64) as usize;
        let from = rng.below(done as u64 + 1) as usize;
        let mut crashed = State::new();
        for (i, e) in log[..done].iter().enumerate() {
            let _ = crashed.apply_indexed(i as u64 + 1, e);
        }
        for (i, e) in log.iter().enumerate().skip(from) {
            let _ = crashed.apply_indexed(i as u64 + 1, e);
        }
        assert_eq!(crashed, once, "seed {seed}");
    }
}

#[test]
fn entries_without_a_command_move_the_position() {
    let mut s = State::new();
    s.skip_to(3);
    let e = LogEntry {
        by: None,
        at: t(1),
        command: volume("vol-a"),
    };
    assert_eq!(s.apply_indexed(2, &e), Ok(Applied::Unchanged));
    assert_eq!(s.volumes().count(), 0);
    assert_eq!(s.apply_indexed(4, &e), Ok(Applied::Changed));
    s.skip_to(1);
    assert_eq!(s.last_applied(), Some(4));
    assert_eq!(
        State::from_snapshot(&s.to_snapshot())
            .unwrap()
            .last_applied(),
        Some(4)
    );
}

#[test]
fn snapshots_round_trip_random_states() {
    for seed in 0..100 {
        let log = random_log(seed, 200, 20);
        let (head, tail) = log.split_at(120);
        let mut s = State::new();
        apply_all(&mut s, head);
        let bytes = s.to_snapshot();
        let mut restored = State::from_snapshot(&bytes).unwrap();
        assert_eq!(restored, s, "seed {seed}");
        assert_eq!(restored.to_snapshot(), bytes);
        // A replica restored from the snapshot goes on exactly like the original.
        for e in tail {
            assert_eq!(restored.apply_entry(e), s.apply_entry(e), "seed {seed}");
        }
        assert_eq!(restored, s, "seed {seed}");
    }
}
