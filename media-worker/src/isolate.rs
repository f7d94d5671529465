//! Each processing task runs in a process of its own, under OS limits, so that a hostile file
//! can at worst kill that process: not the server, not the other jobs, not a later job.
//!
//! Starting the `courier` binary costs ~30 ms (the dynamic loader maps the ~140 libraries the
//! system FFmpeg pulls in), so processes are not started per task but forked: the server
//! starts a few **job hosts** (`courier media-job`, [`host_main`]) which load everything
//! once, never touch a file, and for each request fork a fresh child. Hosts start with an
//! empty environment, so no job can find the server's secrets (database URL, S3 keys, service
//! secret) there. The child confines itself before it reads the input — address space
//! (`RLIMIT_AS`), CPU seconds (`RLIMIT_CPU`), no core dumps, a lower scheduling priority,
//! death with its parent, then the [`sandbox`](crate::sandbox): its input and output
//! directory only, no network, no other process — runs [`execute`], answers and exits. Each
//! task thus gets a pristine address space, as if started from scratch.
//!
//! The conversation with a host is JSON lines: the server writes one [`Request`]; the host
//! answers `{"pid":…}` for the child, the child `{"reply":…}`, and the host, once the child
//! is gone, `{"exited":{…}}`. The server kills the child when the wall-clock budget runs out,
//! and replaces a host that misbehaves.
//!
//! How a job ends decides whether it is tried again: a bad file, a limit or a crash are the
//! file's fault ([`JobError::Poisoned`]); a host that cannot start or answers nonsense, or an
//! I/O error, is not ([`JobError::Transient`]).

use crate::sandbox::Confinement;
use crate::task::{execute, Facts, Job};
use crate::MediaError;
use serde::{Deserialize, Serialize};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout};

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

/// The OS limits each job's process runs under.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessLimits {
    /// Address space in bytes (`RLIMIT_AS`; the binary's own mappings count).
    pub memory: u64,
    /// CPU seconds over all threads (`RLIMIT_CPU`).
    pub cpu_seconds: u64,
    /// Added to the niceness, so jobs yield the CPU to message delivery.
    pub nice: i32,
    /// Whether a job may run without Landlock's filesystem confinement.
    #[serde(default)]
    pub confinement: Confinement,
}

impl Default for ProcessLimits {
    fn default() -> Self {
        Self {
            memory: 2 << 30,
            cpu_seconds: 300,
            nice: 10,
            confinement: Confinement::Required,
        }
    }
}

/// The program that hosts jobs, and the limits it runs them under.
#[derive(Clone, Debug)]
pub struct JobProcess {
    pub program: PathBuf,
    /// Arguments that make the program a job host (`["media-job"]`).
    pub args: Vec<String>,
    pub limits: ProcessLimits,
}

impl JobProcess {
    /// This executable, which must answer `media-job` by calling [`host_main`] (the
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

/// What the child answers.
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

/// How the child ended, and the first line it wrote on stderr (why it crashed, often).
#[derive(Serialize, Deserialize, Debug, Default)]
struct Exit {
    code: Option<i32>,
    signal: Option<i32>,
    said: String,
}

/// Where a child's stderr goes: a file in its output directory, read back by the host.
const STDERR_FILE: &str = "stderr.log";

/// One line from a host: exactly one of these is set.
#[derive(Serialize, Deserialize, Default)]
struct Line {
    #[serde(skip_serializing_if = "Option::is_none")]
    pid: Option<i32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reply: Option<Reply>,
    #[serde(skip_serializing_if = "Option::is_none")]
    exited: Option<Exit>,
}

/// Runs jobs in children forked by job hosts, keeping idle hosts for the next job.
pub struct Isolator {
    process: JobProcess,
    idle: Mutex<Vec<Host>>,
}

impl Isolator {
    pub fn new(process: JobProcess) -> Self {
        Self {
            process,
            idle: Mutex::new(Vec::new()),
        }
    }

    /// Runs `job` in a fresh confined process, killing it after `budget`.
    pub async fn run(&self, job: Job, budget: Duration) -> Result<Facts, JobError> {
        let idle = self.idle.lock().expect("host list").pop();
        let mut host = match idle {
            Some(h) => h,
            None => Host::start(&self.process)?,
        };
        let request = Request {
            job,
            limits: self.process.limits.clone(),
        };
        let (result, healthy) = host.run(&request, budget).await;
        if healthy {
            self.idle.lock().expect("host list").push(host);
        }
        result
    }
}

/// A running job host.
struct Host {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// What the host and its children wrote on stderr since the last job started.
    stderr: Arc<Mutex<String>>,
}

/// How long a host may take to report a killed child gone.
const REAP_GRACE: Duration = Duration::from_secs(5);

impl Host {
    fn start(process: &JobProcess) -> Result<Self, JobError> {
        let mut command = tokio::process::Command::new(&process.program);
        // Nothing of the server's environment (its secrets among it) reaches a job; the
        // loader's search path is all a host may need to start.
        command.env_clear();
        if let Some(path) = std::env::var_os("LD_LIBRARY_PATH") {
            command.env("LD_LIBRARY_PATH", path);
        }
        let mut child = command
            .args(&process.args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| {
                JobError::Transient(format!(
                    "cannot start the media job host {}: {e}",
                    process.program.display()
                ))
            })?;
        let stdin = child.stdin.take().expect("piped stdin");
        let lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
        let sink = stderr.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = err_lines.next_line().await {
                let mut s = sink.lock().expect("stderr buffer");
                if s.len() < 4096 {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Ok(Self {
            child,
            stdin,
            lines,
            stderr,
        })
    }

    /// Runs one request; the bool says whether the host can take another.
    async fn run(
        &mut self,
        request: &Request,
        budget: Duration,
    ) -> (Result<Facts, JobError>, bool) {
        self.stderr.lock().expect("stderr buffer").clear();
        let mut line = serde_json::to_vec(request).expect("a job serialises");
        line.push(b'\n');
        if let Err(e) = self.stdin.write_all(&line).await {
            return (
                Err(self.broken(format!("cannot send it a job: {e}"))),
                false,
            );
        }
        let (mut pid, mut reply) = (None, None);
        let deadline = tokio::time::Instant::now() + budget;
        let mut over_budget = false;
        let exit = loop {
            let next = if over_budget {
                tokio::time::timeout(REAP_GRACE, self.lines.next_line()).await
            } else {
                tokio::time::timeout_at(deadline, self.lines.next_line()).await
            };
            let text = match next {
                Ok(Ok(Some(text))) => text,
                Ok(Ok(None)) => return (Err(self.broken("it exited".into())), false),
                Ok(Err(e)) => return (Err(self.broken(e.to_string())), false),
                Err(_) if over_budget => {
                    return (Err(self.broken("it did not reap its child".into())), false)
                }
                Err(_) => {
                    over_budget = true;
                    if let Some(pid) = pid {
                        kill(pid);
                    }
                    continue;
                }
            };
            let Ok(parsed) = serde_json::from_str::<Line>(&text) else {
                return (Err(self.broken(format!("it said {text:?}"))), false);
            };
            if let Some(p) = parsed.pid {
                pid = Some(p);
                if over_budget {
                    kill(p);
                }
            }
            if parsed.reply.is_some() {
                reply = parsed.reply;
            }
            if let Some(exit) = parsed.exited {
                break exit;
            }
        };
        let said = exit.said;
        let result = match (over_budget, reply, exit.signal) {
            (true, ..) => Err(JobError::Poisoned("over the processing time budget".into())),
            (_, Some(Reply::Done(facts)), _) => Ok(facts),
            (_, Some(Reply::Poisoned(why)), _) => Err(JobError::Poisoned(why)),
            (_, Some(Reply::Transient(why)), _) => Err(JobError::Transient(why)),
            (_, None, Some(signal)) => Err(JobError::Poisoned(format!(
                "the decoder died ({}){}",
                signal_name(signal),
                if said.is_empty() {
                    String::new()
                } else {
                    format!(": {said}")
                }
            ))),
            (_, None, None) => Err(JobError::Transient(format!(
                "the media job process exited ({:?}) without an answer: {said}",
                exit.code
            ))),
        };
        (result, true)
    }

    /// The host is unusable: it is killed (on drop) and the job tried again later.
    fn broken(&mut self, why: String) -> JobError {
        let _ = self.child.start_kill();
        let said = first_line(&self.stderr.lock().expect("stderr buffer"));
        JobError::Transient(
            format!("media job host failed: {why} {said}")
                .trim()
                .to_owned(),
        )
    }
}

fn kill(pid: i32) {
    if let Some(pid) = rustix::process::Pid::from_raw(pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
}

fn first_line(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
    line.chars().take(300).collect()
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

/// The job host: reads requests on stdin, one per line, and runs each in a forked child;
/// returns when stdin closes. Runs before anything else in the process, which must stay
/// single-threaded to fork safely.
pub fn host_main() -> ExitCode {
    #[cfg(target_os = "linux")]
    let _ = rustix::process::set_parent_process_death_signal(Some(rustix::process::Signal::KILL));
    // Load what every job needs once, here, rather than in every child.
    let _ = crate::video::init();
    let stdin = std::io::stdin();
    for request in stdin.lock().lines() {
        let Ok(request) = request else {
            return ExitCode::from(2);
        };
        let exit = match serde_json::from_str::<Request>(&request) {
            Ok(request) => match fork_job(&request) {
                Ok(exit) => exit,
                Err(e) => {
                    eprintln!("media job host: cannot fork: {e}");
                    return ExitCode::from(2);
                }
            },
            Err(e) => {
                eprintln!("media job host: bad request: {e}");
                Exit {
                    code: Some(2),
                    ..Default::default()
                }
            }
        };
        if say(&Line {
            exited: Some(exit),
            ..Default::default()
        })
        .is_err()
        {
            return ExitCode::from(2);
        }
    }
    ExitCode::SUCCESS
}

/// Writes one line to stdout (shared with the children: one short write each).
fn say(line: &Line) -> std::io::Result<()> {
    let mut text = serde_json::to_vec(line)?;
    text.push(b'\n');
    let mut out = std::io::stdout().lock();
    out.write_all(&text)?;
    out.flush()
}

/// Forks a child for `request`, reports its pid, waits for it.
fn fork_job(request: &Request) -> std::io::Result<Exit> {
    use rustix::process::{waitpid, Pid, WaitOptions};
    // SAFETY: the host is single-threaded (it runs before any runtime or thread starts), so
    // the child may do anything the parent could.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(std::io::Error::last_os_error());
    }
    if pid == 0 {
        let code = run_child(request);
        // Leave at once: nothing of the host's may run again in the child.
        // SAFETY: ends this process; stdout was flushed by `say`.
        unsafe { libc::_exit(code) }
    }
    say(&Line {
        pid: Some(pid),
        ..Default::default()
    })?;
    let child = Pid::from_raw(pid).expect("a child pid");
    let (_, status) = waitpid(Some(child), WaitOptions::empty())?.expect("the child's status");
    let said = std::fs::read(request.job.out_dir.join(STDERR_FILE)).unwrap_or_default();
    Ok(Exit {
        code: status.exit_status(),
        signal: status.terminating_signal(),
        said: first_line(&String::from_utf8_lossy(&said)),
    })
}

/// In the forked child: confine, run, answer. Returns the exit code.
fn run_child(request: &Request) -> i32 {
    if let Ok(file) = std::fs::File::create(request.job.out_dir.join(STDERR_FILE)) {
        let _ = rustix::stdio::dup2_stderr(&file);
    }
    if let Err(e) = confine(&request.limits) {
        eprintln!("media job: cannot apply limits: {e}");
        return 2;
    }
    let job = &request.job;
    if let Err(e) = crate::sandbox::enter(&job.input, &job.out_dir, request.limits.confinement) {
        eprintln!("media job: cannot enter the sandbox: {e}");
        return 2;
    }
    // A panic is the file's fault; keep its message for the reply, off stderr.
    std::panic::set_hook(Box::new(|_| {}));
    let reply = match std::panic::catch_unwind(|| execute(&request.job)) {
        Ok(Ok(facts)) => Reply::Done(facts),
        Ok(Err(e)) => Reply::from(e),
        Err(panic) => Reply::Poisoned(format!("the decoder crashed: {}", panic_text(&panic))),
    };
    let reply = match reply {
        Reply::Poisoned(why) => Reply::Poisoned(why.chars().take(1000).collect()),
        Reply::Transient(why) => Reply::Transient(why.chars().take(1000).collect()),
        done => done,
    };
    match say(&Line {
        reply: Some(reply),
        ..Default::default()
    }) {
        Ok(()) => 0,
        Err(_) => 2,
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
