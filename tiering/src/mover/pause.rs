//! Test hooks: named points between two steps of a move where a crash test
//! can freeze the process (and then `kill -9` it). See the module docs of
//! [`crate::mover`].

use std::fmt;
use std::sync::OnceLock;

/// The environment variable naming the point to pause at (test hook).
pub const PAUSE_ENV: &str = "STRATA_TEST_PAUSE_AT";

/// A point between two steps of a move or a recall (test hook).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PausePoint {
    /// `RecordIntent` committed; nothing uploaded.
    AfterIntent,
    /// The object is in the lake; `MarkUploaded` not proposed.
    AfterUpload,
    /// `MarkUploaded` committed; not verified.
    AfterMarkUploaded,
    /// Verified in the lake; `MarkArchived` not proposed.
    AfterVerify,
    /// `MarkArchived` committed; the local file untouched.
    AfterMarkArchived,
    /// The local file removed (and its directory fsynced); `MarkReleased` not proposed.
    AfterUnlink,
    /// `MarkReleased` committed.
    AfterMarkReleased,
    /// A recall renamed the file into place; `MarkRecalled` not proposed.
    AfterRename,
}

impl PausePoint {
    /// Every point, in the order a move (then a recall) passes them.
    pub const ALL: [PausePoint; 8] = [
        PausePoint::AfterIntent,
        PausePoint::AfterUpload,
        PausePoint::AfterMarkUploaded,
        PausePoint::AfterVerify,
        PausePoint::AfterMarkArchived,
        PausePoint::AfterUnlink,
        PausePoint::AfterMarkReleased,
        PausePoint::AfterRename,
    ];

    /// The name used in [`PAUSE_ENV`] and in the printed line.
    pub fn as_str(self) -> &'static str {
        match self {
            PausePoint::AfterIntent => "after-intent",
            PausePoint::AfterUpload => "after-upload",
            PausePoint::AfterMarkUploaded => "after-mark-uploaded",
            PausePoint::AfterVerify => "after-verify",
            PausePoint::AfterMarkArchived => "after-mark-archived",
            PausePoint::AfterUnlink => "after-unlink",
            PausePoint::AfterMarkReleased => "after-mark-released",
            PausePoint::AfterRename => "after-rename",
        }
    }

    /// The point named `name`.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

impl fmt::Display for PausePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn configured() -> Option<PausePoint> {
    static AT: OnceLock<Option<PausePoint>> = OnceLock::new();
    *AT.get_or_init(|| {
        let name = std::env::var(PAUSE_ENV).ok()?;
        let point = PausePoint::from_name(name.trim());
        if point.is_none() {
            tracing::warn!(name, "{PAUSE_ENV} names no pause point; ignored");
        }
        point
    })
}

/// Freezes the calling task forever if the process was told to pause at
/// `point`; otherwise returns at once.
pub(crate) async fn pause(point: PausePoint) {
    if configured() == Some(point) {
        eprintln!("strata: paused at {point}");
        std::future::pending::<()>().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mover_pause_points_round_trip() {
        for p in PausePoint::ALL {
            assert_eq!(PausePoint::from_name(p.as_str()), Some(p));
            assert_eq!(p.to_string(), p.as_str());
        }
        assert_eq!(PausePoint::from_name("after-lunch"), None);
    }
}
