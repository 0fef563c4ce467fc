//! A real S3 endpoint for tests: `moto_server` on a free loopback port,
//! stopped by PID when dropped.
//!
//! The binary is found through `STRATA_MOTO_SERVER`, then `PATH`, then the venv
//! `scripts/test-all` installs under
//! `${STRATA_TOOLS_DIR:-$HOME/.cache/strata-tools}/moto-venv`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running moto_server.
pub struct Moto {
    child: Child,
    port: u16,
    log: PathBuf,
}

/// Where moto_server is, or a message saying how to install it.
pub fn moto_binary() -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os("STRATA_MOTO_SERVER") {
        return Ok(PathBuf::from(p));
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let c = dir.join("moto_server");
            if c.is_file() {
                return Ok(c);
            }
        }
    }
    let tools = std::env::var_os("STRATA_TOOLS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/strata-tools")));
    if let Some(t) = tools {
        let c = t.join("moto-venv/bin/moto_server");
        if c.is_file() {
            return Ok(c);
        }
    }
    Err("moto_server not found (set STRATA_MOTO_SERVER, put it on PATH, or run the setup group of scripts/test-all)".into())
}

/// A loopback port nothing listens on (at the moment of asking).
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().unwrap().port()
}

impl Moto {
    /// Starts moto_server and waits until it answers.
    pub fn start() -> Moto {
        let bin = moto_binary().unwrap_or_else(|e| panic!("{e}"));
        let port = free_port();
        let log =
            std::env::temp_dir().join(format!("strata-moto-{}-{port}.log", std::process::id()));
        let err = std::fs::File::create(&log).expect("create moto log");
        let child = Command::new(&bin)
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", bin.display()));
        let mut moto = Moto { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited early ({status}): {}", moto.log_text());
            }
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto_server did not start: {}",
                moto.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        moto
    }

    /// `http://127.0.0.1:<port>`
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Creates a bucket with a plain HTTP PUT (moto accepts unsigned requests).
    pub fn create_bucket(&self, bucket: &str) {
        let mut s = TcpStream::connect(("127.0.0.1", self.port)).expect("connect moto");
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        write!(
            s,
            "PUT /{bucket} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.port
        )
        .unwrap();
        let mut resp = String::new();
        let _ = s.read_to_string(&mut resp);
        assert!(
            resp.starts_with("HTTP/1.1 200") || resp.starts_with("HTTP/1.0 200"),
            "create bucket {bucket}: {}",
            resp.lines().next().unwrap_or("")
        );
    }

    /// Freezes the server (SIGSTOP to its PID): connections are still
    /// accepted by the kernel but nothing answers, like a link that died.
    /// moto keeps its objects in memory, so a frozen server (unlike a killed
    /// one) comes back with its data.
    #[allow(dead_code)]
    pub fn freeze(&self) {
        self.signal(libc::SIGSTOP);
    }

    /// Lets a frozen server run again (SIGCONT to its PID).
    #[allow(dead_code)]
    pub fn thaw(&self) {
        self.signal(libc::SIGCONT);
    }

    #[allow(dead_code)]
    fn signal(&self, sig: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid fits pid_t");
        // SAFETY: kill(2) on the PID of our own child process.
        let r = unsafe { libc::kill(pid, sig) };
        assert_eq!(
            r,
            0,
            "signal {sig} to moto_server: {}",
            std::io::Error::last_os_error()
        );
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        // Child::kill signals exactly this PID (a frozen one too: SIGKILL
        // needs no cooperation).
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}
