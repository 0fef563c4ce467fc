//! [`LibRunner`]: runs each command in-process through Debian's liblvm2cmd
//! (`lvm2_run`), on one dedicated thread that owns the library handle.
//!
//! Why one thread for the whole process: the log callback that carries the
//! output is process-global, libdevmapper is not thread-safe, and a handle
//! caches state (config, device cache) that must not be shared across threads.
//! Every [`LibRunner`] is a cheap handle onto that one thread, so commands from
//! all of them run one after another, never at the same time.
//!
//! What lvm2_run does to the process, and how it is contained:
//! - it sets the umask to 077 (seen in `lvm2_init` and every `lvm2_run`): the
//!   caller's umask is put back after each call. While a command runs the
//!   process umask is 077; files created by other threads meanwhile are merely
//!   more private than asked;
//! - output arrives through the callback, one line per call: level 4 carries
//!   report lines and messages, 3 and below carry errors. Level-4 lines that
//!   start with `WARNING:` go to stderr like the `lvm` program's warnings do,
//!   so they never land inside a JSON report;
//! - `lvm2_run` returns 1 for success: it is mapped to 0.

use std::cell::RefCell;
use std::ffi::{CStr, CString, c_char, c_int};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, Sender, SyncSender};

use lvm2cmd_sys as sys;

use super::{LvmError, RunOutput, Runner};

/// `lvm_split` refuses command lines of this many words or more (MAX_ARGS).
const MAX_WORDS: usize = 64;

const BACKEND: &str = "lvm2cmd";

/// A handle onto the process's one liblvm2cmd thread. Clones and further
/// [`LibRunner::new`] calls share that thread.
#[derive(Debug, Clone)]
pub struct LibRunner {
    jobs: Sender<Job>,
}

#[derive(Debug)]
struct Job {
    cmdline: CString,
    reply: SyncSender<RunOutput>,
}

/// The worker, started by the first [`LibRunner::new`]. It is never stopped
/// and `lvm2_exit` is never called: the handle lives as long as the process.
/// Exiting and re-initialising the library on demand (after the last runner
/// is dropped) is not something LVM supports well (`lvm2_init` re-registers
/// all commands and global state each time), a command is never left half
/// done between calls (each `lvm2_run` releases its locks), and the kernel
/// frees the rest when the process ends. The cost is a "memory leak" notice
/// libdevmapper sends to the (silent) callback at exit.
static WORKER: OnceLock<Result<Sender<Job>, String>> = OnceLock::new();

impl LibRunner {
    /// Start (once per process) the thread that owns the library handle, or
    /// share it. Fails when `lvm2_init` fails; that failure is remembered.
    pub fn new() -> Result<LibRunner, LvmError> {
        match WORKER.get_or_init(start_worker) {
            Ok(jobs) => Ok(LibRunner { jobs: jobs.clone() }),
            Err(message) => Err(LvmError::Spawn {
                backend: BACKEND,
                source: std::io::Error::other(message.clone()),
            }),
        }
    }
}

impl Runner for LibRunner {
    fn name(&self) -> &'static str {
        BACKEND
    }

    fn run(&self, args: &[String]) -> Result<RunOutput, LvmError> {
        if args.len() >= MAX_WORDS {
            return Err(LvmError::InvalidArgument {
                argument: args.join(" "),
                reason: "liblvm2cmd takes fewer than 64 words per command",
            });
        }
        // LvmTool has already refused whitespace; a NUL is the one thing left.
        let cmdline = CString::new(args.join(" ")).map_err(|_| LvmError::InvalidArgument {
            argument: args.join(" "),
            reason: "contains a NUL byte",
        })?;
        let (reply, answer) = mpsc::sync_channel(1);
        let gone = || LvmError::Spawn {
            backend: BACKEND,
            source: std::io::Error::other("the liblvm2cmd thread has stopped"),
        };
        self.jobs.send(Job { cmdline, reply }).map_err(|_| gone())?;
        answer.recv().map_err(|_| gone())
    }
}

fn start_worker() -> Result<Sender<Job>, String> {
    let (jobs, queue) = mpsc::channel();
    let (ready, started) = mpsc::sync_channel(1);
    std::thread::Builder::new()
        .name("lvm2cmd".to_owned())
        // LVM is written for a process main thread's stack.
        .stack_size(8 << 20)
        .spawn(move || worker(queue, ready))
        .map_err(|e| format!("cannot start the liblvm2cmd thread: {e}"))?;
    started
        .recv()
        .map_err(|_| "the liblvm2cmd thread stopped while starting".to_owned())??;
    Ok(jobs)
}

/// Owns the handle; runs jobs until the process ends.
fn worker(queue: Receiver<Job>, ready: SyncSender<Result<(), String>>) {
    // SAFETY: a plain C function pointer that lives for the program; the
    // callback only touches this thread's capture buffer.
    unsafe { sys::lvm2_log_fn(Some(log_line)) };
    let handle = with_umask_restored(|| {
        // SAFETY: no arguments; the result is checked for NULL.
        unsafe { sys::lvm2_init() }
    });
    let init = take_capture();
    if handle.is_null() {
        let _ = ready.send(Err(format!("lvm2_init failed: {}", init.stderr.trim())));
        return;
    }
    let _ = ready.send(Ok(()));
    for job in queue {
        let _ = take_capture();
        let rc = with_umask_restored(|| {
            // SAFETY: handle came from lvm2_init, is only used on this thread,
            // and cmdline is a valid NUL-terminated string for the call.
            unsafe { sys::lvm2_run(handle, job.cmdline.as_ptr()) }
        });
        let out = take_capture();
        let code = match rc {
            1 => 0,
            // Inside LVM 0 means "failed"; it should never escape, but must not read as success.
            0 => 5,
            other => other,
        };
        let _ = job.reply.send(RunOutput {
            code,
            stdout: out.stdout,
            stderr: out.stderr,
        });
    }
}

/// Run `f` and put the process umask back as it was (LVM sets 077).
fn with_umask_restored<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: umask cannot fail. 077 is what LVM is about to set anyway.
    let saved = unsafe { libc::umask(0o077) };
    let result = f();
    // SAFETY: as above.
    unsafe { libc::umask(saved) };
    result
}

#[derive(Debug, Default)]
struct Capture {
    stdout: String,
    stderr: String,
}

thread_local! {
    static CAPTURE: RefCell<Capture> = RefCell::new(Capture::default());
}

fn take_capture() -> Capture {
    CAPTURE.with(|c| std::mem::take(&mut *c.borrow_mut()))
}

/// The process-wide log callback. Called by LVM for every message at every
/// level, on the thread running the command (and at exit, from libdevmapper's
/// destructor, on whatever thread ends the process: hence `try_with`).
unsafe extern "C" fn log_line(
    level: c_int,
    _file: *const c_char,
    _line: c_int,
    _dm_errno: c_int,
    message: *const c_char,
) {
    // LVM keeps flags above the low nibble of its internal levels.
    let level = level & 0x0f;
    if level > sys::LVM2_LOG_PRINT as c_int || message.is_null() {
        return;
    }
    // SAFETY: LVM passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(message) }.to_string_lossy();
    let _ = CAPTURE.try_with(|c| {
        let Ok(mut c) = c.try_borrow_mut() else {
            return;
        };
        let to_stderr =
            level < sys::LVM2_LOG_PRINT as c_int || text.trim_start().starts_with("WARNING:");
        let buf = if to_stderr {
            &mut c.stderr
        } else {
            &mut c.stdout
        };
        buf.push_str(&text);
        buf.push('\n');
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Held by every test that runs a command: the umask check must not see
    /// another test's command in flight (the umask is 077 while one runs).
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

    fn run(args: &[&str]) -> RunOutput {
        let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
        LibRunner::new().unwrap().run(&args).unwrap()
    }

    /// The umask as the kernel reports it, read without changing it.
    fn umask() -> String {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("Umask:"))
            .unwrap()
            .trim()
            .to_owned()
    }

    #[test]
    fn success_is_zero_and_output_is_captured() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        let before = umask();
        let out = run(&["version"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.contains("LVM version:"), "{out:?}");
        assert_eq!(umask(), before, "lvm2_run's 077 must not stick");
    }

    #[test]
    fn failures_keep_lvm2_run_codes() {
        let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
        assert_eq!(run(&["nosuchcommand"]).code, 2);
        let out = run(&["vgs", "--nosuchoption"]);
        assert_eq!(out.code, 3);
        assert!(
            out.stderr.contains("Error during parsing of command line."),
            "{out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }

    #[test]
    fn limits_are_checked_before_the_library() {
        let runner = LibRunner::new().unwrap();
        let many = vec!["x".to_owned(); MAX_WORDS];
        assert!(matches!(
            runner.run(&many),
            Err(LvmError::InvalidArgument { .. })
        ));
        let nul = ["vgs".to_owned(), "a\0b".to_owned()];
        assert!(matches!(
            runner.run(&nul),
            Err(LvmError::InvalidArgument {
                reason: "contains a NUL byte",
                ..
            })
        ));
    }
}
