//! Starting and ending managed processes.
//!
//! Children are spawned from one dedicated thread that lives as long as the kernel,
//! because Linux's parent-death signal fires when the *thread* that forked a child exits.
//! Each child is started through the kernel's own binary (`burrow __exec`), which asks
//! for SIGKILL on the kernel's death (`PR_SET_PDEATHSIG`), checks the kernel is still its
//! parent, and then `exec`s the app: so even a SIGKILLed kernel leaves no app behind.
//! Children get their own process group, so a Ctrl-C at the kernel's terminal reaches the
//! kernel only and the kernel stops them in order.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc as std_mpsc;

use nix::sys::signal::Signal;
use tokio::sync::oneshot;

/// The hidden subcommand of `burrow` that becomes a managed app.
pub const EXEC_SUBCOMMAND: &str = "__exec";

type Job = (Command, oneshot::Sender<std::io::Result<Child>>);

/// Spawns children from one long-lived thread.
#[derive(Debug, Clone)]
pub struct Spawner {
    jobs: std_mpsc::Sender<Job>,
}

impl Spawner {
    /// Starts the spawner thread.
    pub fn start() -> std::io::Result<Self> {
        let (tx, rx) = std_mpsc::channel::<Job>();
        std::thread::Builder::new().name("burrow-spawner".into()).spawn(move || {
            // Lives until the kernel drops every sender, i.e. as long as the kernel.
            for (mut command, reply) in rx {
                let _ = reply.send(command.spawn());
            }
        })?;
        Ok(Self { jobs: tx })
    }

    /// Spawns `command` on the spawner thread.
    pub async fn spawn(&self, command: Command) -> std::io::Result<Child> {
        let (tx, rx) = oneshot::channel();
        self.jobs
            .send((command, tx))
            .map_err(|_| std::io::Error::other("the spawner thread is gone"))?;
        rx.await.map_err(|_| std::io::Error::other("the spawner thread is gone"))?
    }
}

/// The command that starts `program args` as a managed app through `burrow __exec`.
pub fn managed_command(program: &PathBuf, args: &[String]) -> std::io::Result<Command> {
    // After an upgrade replaced the binary, current_exe() names a deleted file; the
    // running image is still reachable through /proc.
    let burrow = if cfg!(target_os = "linux") && std::path::Path::new("/proc/self/exe").exists() {
        PathBuf::from("/proc/self/exe")
    } else {
        std::env::current_exe()?
    };
    let mut command = Command::new(burrow);
    command
        .arg(EXEC_SUBCOMMAND)
        .arg("--parent-pid")
        .arg(std::process::id().to_string())
        .arg("--")
        .arg(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(unix)]
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    Ok(command)
}

/// `burrow __exec --parent-pid P -- PROGRAM ARGS...`: ask to die with the kernel, then
/// become the app. Returns only on failure (the exit code to use).
pub fn exec_child(parent_pid: u32, program: &str, args: &[String]) -> i32 {
    #[cfg(target_os = "linux")]
    {
        if let Err(e) = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL) {
            eprintln!("burrow __exec: cannot set the parent-death signal: {e}");
        }
        // The kernel may have died before the request took effect.
        if nix::unistd::getppid().as_raw() as u32 != parent_pid {
            eprintln!("burrow __exec: the kernel is gone; not starting {program}");
            return 1;
        }
    }
    #[cfg(unix)]
    {
        let err = std::os::unix::process::CommandExt::exec(Command::new(program).args(args));
        eprintln!("burrow __exec: cannot run {program}: {err}");
        127
    }
    #[cfg(not(unix))]
    {
        let _ = parent_pid;
        match Command::new(program).args(args).status() {
            Ok(status) => status.code().unwrap_or(1),
            Err(e) => {
                eprintln!("burrow __exec: cannot run {program}: {e}");
                127
            }
        }
    }
}

/// Sends `signal` to the process group `pid` leads (managed apps run in their own
/// group), then to `pid` itself in case it left the group; a process already gone is
/// ignored.
pub fn signal(pid: u32, signal: Signal) {
    #[cfg(unix)]
    {
        let pid = nix::unistd::Pid::from_raw(pid as i32);
        let _ = nix::sys::signal::killpg(pid, signal);
        let _ = nix::sys::signal::kill(pid, signal);
    }
    #[cfg(not(unix))]
    let _ = (pid, signal);
}

/// Lets the waiter reap a child once the supervisor has forgotten its pid, so a pid is
/// never signalled after it could have been recycled.
pub type Reap = std::sync::mpsc::Sender<()>;

/// Waits for `child` on its own thread and calls `done` with how it ended and a [`Reap`]
/// handle: the child stays a zombie (its pid reserved) until `done`'s owner sends on it
/// (or drops it). Returns false if no thread could be started.
pub fn watch_exit(
    mut child: Child,
    done: impl FnOnce(std::io::Result<ExitStatus>, Reap) + Send + 'static,
) -> bool {
    let spawned = std::thread::Builder::new().name("burrow-child-wait".into()).spawn(move || {
        #[cfg(target_os = "linux")]
        {
            use nix::sys::wait::{Id, WaitPidFlag, waitid};
            let pid = nix::unistd::Pid::from_raw(child.id() as i32);
            // Wait for the exit without reaping it.
            while let Err(nix::errno::Errno::EINTR) =
                waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT)
            {}
        }
        let (reap, reaped) = std::sync::mpsc::channel();
        #[cfg(target_os = "linux")]
        {
            // Report the status from a non-reaping peek; reap only once allowed.
            let status = peek_status(&child);
            done(status, reap);
            let _ = reaped.recv();
            let _ = child.wait();
        }
        #[cfg(not(target_os = "linux"))]
        {
            let _ = reaped;
            done(child.wait(), reap);
        }
    });
    match spawned {
        Ok(_) => true,
        Err(e) => {
            tracing::error!(error = %e, "cannot start a thread to wait for a managed app");
            false
        }
    }
}

/// The exit status of a child that has exited but is not reaped yet.
#[cfg(target_os = "linux")]
fn peek_status(child: &Child) -> std::io::Result<ExitStatus> {
    use nix::sys::wait::{Id, WaitPidFlag, WaitStatus, waitid};
    use std::os::unix::process::ExitStatusExt;
    let pid = nix::unistd::Pid::from_raw(child.id() as i32);
    match waitid(Id::Pid(pid), WaitPidFlag::WEXITED | WaitPidFlag::WNOWAIT) {
        Ok(WaitStatus::Exited(_, code)) => Ok(ExitStatus::from_raw((code & 0xff) << 8)),
        Ok(WaitStatus::Signaled(_, sig, _)) => Ok(ExitStatus::from_raw(sig as i32)),
        Ok(other) => Err(std::io::Error::other(format!("unexpected wait status {other:?}"))),
        Err(e) => Err(std::io::Error::from(e)),
    }
}

/// A human description of an exit status, and whether it counts as a failure.
pub fn describe(status: &Result<ExitStatus, String>) -> (String, bool) {
    match status {
        Err(e) => (e.clone(), true),
        Ok(s) if s.success() => ("exited 0".to_owned(), false),
        Ok(s) => {
            #[cfg(unix)]
            if let Some(sig) = std::os::unix::process::ExitStatusExt::signal(s) {
                return (format!("killed by signal {sig}"), true);
            }
            (format!("exited {}", s.code().unwrap_or(-1)), true)
        }
    }
}
