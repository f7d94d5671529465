//! Each processing task runs in a child process of its own, under OS limits, so that a hostile
//! file can at worst kill that process: not the server, not the other jobs.
//!
//! The parent ([`run`]) starts `program args…` (the `courier` binary's hidden `media-job`
//! command), writes the [`Job`] as JSON on its stdin and reads one JSON reply from its
//! stdout. The child ([`child_main`]) confines itself before touching the file — address space
//! (`RLIMIT_AS`), CPU seconds (`RLIMIT_CPU`), no core dumps, a lower scheduling priority, and
//! death with its parent — then runs [`execute`] and answers. The parent kills it when the
//! wall-clock budget runs out.
//!
//! How a job ends decides whether it is tried again: a bad file, a limit or a crash are the
//! file's fault ([`JobError::Poisoned`]); a process that cannot start or answers nonsense, or
//! an I/O error, is not ([`JobError::Transient`]).

use crate::task::{execute, Facts, Job};
use crate::MediaError;
use serde::{Deserialize, Serialize};
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// How a job failed, for the queue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    /// The file is to blame (corrupt, over a limit, crashed its decoder): no retry.
    #[error("{0}")]
    Poisoned(String),
    /// Something around it failed: try again later.
    #[error("{0}")]
    Transient(String),
}

/// The OS limits a job process runs under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessLimits {
    /// Address space in bytes (`RLIMIT_AS`; the binary's own mappings count).
    pub memory: u64,
    /// CPU seconds over all threads (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Added to the niceness, so jobs yield the CPU to message delivery.
    pub nice: i32,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        Self {
            memory: 2 << 30,
            cpu_seconds: 300,
            nice: 10,
        }
    }
}

/// The program that runs jobs, and the limits it runs them under.
#[derive(Clone, Debug)]
pub struct JobProcess {
    pub program: PathBuf,
    /// Arguments before which the program reads a job on stdin (`["media-job"]`).
    pub args: Vec<String>,
    pub limits: ProcessLimits,
}

impl JobProcess {
    /// This executable, which must answer `media-job` by calling [`child_main`] (the
    /// `courier` binary does), under the default limits.
    pub fn this_executable() -> Self {
        Self {
            program: std::env::current_exe().unwrap_or_else(|_| "courier".into()),
            args: vec!["media-job".into()],
            limits: ProcessLimits::default(),
        }
    }
}

#[derive(Serialize, Deserialize)]
struct Request {
    job: Job,
    limits: ProcessLimits,
}

#[derive(Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Reply {
    Done(Facts),
    Poisoned(String),
    Transient(String),
}

impl From<MediaError> for Reply {
    fn from(e: MediaError) -> Self {
        match e {
            MediaError::Corrupt(_) | MediaError::TooLarge(_) => Reply::Poisoned(e.to_string()),
            MediaError::Io(_) | MediaError::Failed(_) => Reply::Transient(e.to_string()),
        }
    }
}

/// Runs `job` in a child process, killing it after `budget`.
pub async fn run(process: &JobProcess, job: Job, budget: Duration) -> Result<Facts, JobError> {
    let request = serde_json::to_vec(&Request {
        job,
        limits: process.limits.clone(),
    })
    .map_err(|e| JobError::Transient(e.to_string()))?;
    let mut child = tokio::process::Command::new(&process.program)
        .args(&process.args)
        // The first line of stderr explains a crash (no backtrace after it).
        .env_remove("RUST_BACKTRACE")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| {
            JobError::Transient(format!(
                "cannot start the media job process {}: {e}",
                process.program.display()
            ))
        })?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    let finished = async move {
        // A child that dies early closes its stdin: what it says on the way out matters more.
        let _ = stdin.write_all(&request).await;
        drop(stdin);
        child.wait_with_output().await
    };
    // Dropping the unfinished future drops the child, which kills it.
    let output = match tokio::time::timeout(budget, finished).await {
        Err(_) => return Err(JobError::Poisoned("over the processing time budget".into())),
        Ok(Err(e)) => return Err(JobError::Transient(format!("media job process: {e}"))),
        Ok(Ok(output)) => output,
    };
    if let Ok(reply) = serde_json::from_slice::<Reply>(&output.stdout) {
        return match reply {
            Reply::Done(facts) => Ok(facts),
            Reply::Poisoned(why) => Err(JobError::Poisoned(why)),
            Reply::Transient(why) => Err(JobError::Transient(why)),
        };
    }
    let said = first_line(&output.stderr);
    Err(match killed_by(&output.status) {
        Some(signal) => JobError::Poisoned(format!(
            "the decoder died ({}){}",
            signal_name(signal),
            if said.is_empty() {
                String::new()
            } else {
                format!(": {said}")
            }
        )),
        None => JobError::Transient(format!(
            "the media job process failed ({}) without an answer: {said}",
            output.status
        )),
    })
}

fn first_line(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(300).collect()
}

#[cfg(unix)]
fn killed_by(status: &std::process::ExitStatus) -> Option<i32> {
    std::os::unix::process::ExitStatusExt::signal(status)
}

#[cfg(not(unix))]
fn killed_by(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

fn signal_name(signal: i32) -> String {
    match signal {
        6 => "aborted".into(),
        9 => "killed".into(),
        11 => "segmentation fault".into(),
        24 => "over the CPU time limit".into(),
        n => format!("signal {n}"),
    }
}

/// The child's side: reads a job on stdin, confines itself, runs it, answers on stdout.
/// Exits non-zero only when it could not answer.
pub fn child_main() -> ExitCode {
    let mut input = Vec::new();
    if let Err(e) = std::io::stdin().read_to_end(&mut input) {
        eprintln!("media job: cannot read the request: {e}");
        return ExitCode::from(2);
    }
    let request: Request = match serde_json::from_slice(&input) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("media job: bad request: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = confine(&request.limits) {
        eprintln!("media job: cannot apply limits: {e}");
        return ExitCode::from(2);
    }
    // A panic is the file's fault; keep its message for the reply, off stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let reply = match std::panic::catch_unwind(|| execute(&request.job)) {
        Ok(Ok(facts)) => Reply::Done(facts),
        Ok(Err(e)) => Reply::from(e),
        Err(panic) => Reply::Poisoned(format!("the decoder crashed: {}", panic_text(&panic))),
    };
    let mut out = std::io::stdout().lock();
    let answered = serde_json::to_writer(&mut out, &reply)
        .map_err(std::io::Error::from)
        .and_then(|()| out.flush());
    match answered {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("media job: cannot answer: {e}");
            ExitCode::from(2)
        }
    }
}

fn panic_text(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic".into()
    }
}

#[cfg(target_os = "linux")]
fn confine(limits: &ProcessLimits) -> std::io::Result<()> {
    use rustix::process::{nice, set_parent_process_death_signal, setrlimit, Resource, Rlimit};
    let fixed = |n: u64| Rlimit {
        current: Some(n),
        maximum: Some(n),
    };
    set_parent_process_death_signal(Some(rustix::process::Signal::KILL))?;
    setrlimit(Resource::As, fixed(limits.memory))?;
    setrlimit(Resource::Core, fixed(0))?;
    // The soft limit sends SIGXCPU; the hard one, a second later, SIGKILL.
    setrlimit(
        Resource::Cpu,
        Rlimit {
            current: Some(limits.cpu_seconds),
            maximum: Some(limits.cpu_seconds + 1),
        },
    )?;
    nice(limits.nice)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn confine(_: &ProcessLimits) -> std::io::Result<()> {
    Ok(())
}
