//! The local sockets: owner-only whatever the umask, and a peer of another
//! user dropped even when the socket's mode would let it in.

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use futures::StreamExt;
use strata_trust::{LocalAccess, bind_local, local_peers};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn a_local_socket_is_owner_only_and_refuses_other_users() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("strata.sock");
    // A permissive umask must not leak into the socket's mode.
    let old = unsafe { libc::umask(0) };
    let listener = bind_local(&path, LocalAccess::default()).unwrap();
    unsafe { libc::umask(old) };
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        1,
        "no temporary name left"
    );

    // Serve: echo one byte to each admitted connection.
    let mut conns = Box::pin(local_peers(listener, LocalAccess::default()));
    tokio::spawn(async move {
        while let Some(Ok(mut c)) = conns.next().await {
            tokio::spawn(async move {
                let mut b = [0u8; 1];
                if c.read_exact(&mut b).await.is_ok() {
                    let _ = c.write_all(&b).await;
                }
            });
        }
    });

    // This user (root in CI) is admitted.
    let mut me = tokio::net::UnixStream::connect(&path).await.unwrap();
    me.write_all(b"x").await.unwrap();
    let mut b = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(5), me.read_exact(&mut b))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&b, b"x");

    if unsafe { libc::getuid() } != 0 {
        eprintln!("not root: cannot connect as another user; the mode check above still ran");
        return;
    }
    // Open the mode wide, as a careless chmod would: the credentials check
    // still turns user 65534 away (the connection is closed unanswered).
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    let script = format!(
        "import socket\ns=socket.socket(socket.AF_UNIX)\ns.settimeout(5)\ns.connect({:?})\n\
         try:\n  s.sendall(b'y')\n  print(repr(s.recv(1)))\nexcept (ConnectionResetError, BrokenPipeError):\n  \
         print('reset')",
        path.display().to_string()
    );
    let out = tokio::task::spawn_blocking(move || {
        use std::os::unix::process::CommandExt;
        std::process::Command::new("python3")
            .args(["-c", &script])
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && (stdout.trim() == "b''" || stdout.trim() == "reset"),
        "another user was answered: {stdout} {stderr}"
    );
}
