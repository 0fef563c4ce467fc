//! The local sockets (`strata.sock`, the CSI socket): no TLS, so the
//! kernel vouches for the peer. A socket is created owner-only (or
//! owner-and-group) whatever the umask, and each accepted connection's
//! credentials (`SO_PEERCRED`) are checked: root, this process's user, or
//! the configured group may talk; anyone else is dropped and logged.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use futures::Stream;
use tokio::net::{UnixListener, UnixStream};

/// Who may use a local socket besides root and this process's user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LocalAccess {
    /// Members of this group (by their primary group id) may connect; the
    /// socket is then mode 0660 and owned by the group. `None`: mode 0600.
    pub group: Option<u32>,
}

impl LocalAccess {
    fn mode(self) -> u32 {
        if self.group.is_some() { 0o660 } else { 0o600 }
    }

    /// Whether a peer with `uid`/`gid` may talk.
    pub fn admits(self, uid: u32, gid: u32) -> bool {
        uid == 0 || uid == own_uid() || self.group == Some(gid)
    }
}

fn own_uid() -> u32 {
    // SAFETY: getuid has no preconditions and cannot fail.
    unsafe { libc::getuid() }
}

/// Binds a unix socket at `path` that only root, this user (and
/// `access.group`) may open: bound under a temporary name in the same
/// directory, its mode and group set, then renamed into place, so the
/// socket is never reachable with looser permissions.
pub fn bind_local(path: &Path, access: LocalAccess) -> io::Result<UnixListener> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id()
    ));
    let _ = std::fs::remove_file(&tmp);
    let listener = UnixListener::bind(&tmp)?;
    let placed = (|| {
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(access.mode()))?;
        if let Some(gid) = access.group {
            std::os::unix::fs::chown(&tmp, None, Some(gid))?;
        }
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = placed {
        let _ = std::fs::remove_file(&tmp);
        return Err(e);
    }
    Ok(listener)
}

/// The connections `listener` accepts whose peer `access` admits, for
/// tonic's `serve_with_incoming`; a connection from anyone else is closed
/// at once and logged with its uid and gid.
pub fn local_peers(
    listener: UnixListener,
    access: LocalAccess,
) -> impl Stream<Item = io::Result<UnixStream>> {
    futures::stream::unfold(listener, move |listener| async move {
        loop {
            let conn = match listener.accept().await {
                Ok((conn, _)) => conn,
                Err(e) => return Some((Err(e), listener)),
            };
            match conn.peer_cred() {
                Ok(c) if access.admits(c.uid(), c.gid()) => return Some((Ok(conn), listener)),
                Ok(c) => tracing::warn!(
                    uid = c.uid(),
                    gid = c.gid(),
                    pid = ?c.pid(),
                    "refused a local connection: only root, this process's user{} may use this \
                     socket",
                    access
                        .group
                        .map(|g| format!(" and group {g}"))
                        .unwrap_or_default()
                ),
                Err(e) => tracing::warn!("refused a local connection: its credentials: {e}"),
            }
        }
    })
}
