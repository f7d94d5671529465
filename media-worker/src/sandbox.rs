//! What a media job's process may touch, once it has confined itself ([`enter`]): its input
//! file (read), its output directory (read, write, create), the descriptors it was born with
//! (the pipe to its host, its stderr file) — and nothing else. No other file, directory or
//! device; no socket of any kind; no other process to trace, read or signal.
//!
//! Two kernel mechanisms, both usable without privileges (as the `courier` user in the
//! container as much as root on a host):
//! - **Landlock** (Linux ≥ 5.13) confines the filesystem: every access right the kernel knows
//!   is handled, and only the two rules above grant any. On kernels that have them it also
//!   denies TCP bind/connect (ABI 4), abstract Unix sockets and signals to processes outside
//!   the sandbox (ABI 6); Landlock always forbids tracing a process outside the sandbox.
//! - **seccomp** denies what must be denied on every kernel: `socket` (so no network, whatever
//!   Landlock's ABI), `ptrace`, `process_vm_readv`/`writev`, and `kill`/`tgkill` aimed at any
//!   process but this one (the server shares its process group).
//!
//! The process holds no secret to leak either: the job host is started with an empty
//! environment ([`crate::isolate`]), and children are forked from it.
//!
//! A kernel without Landlock fails [`enter`] (the job is retried, and the server's start-up
//! [`check`] says why) unless the deployment opted out of filesystem confinement; seccomp has
//! been in every kernel since 3.5.

use serde::{Deserialize, Serialize};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

/// How strictly a job's filesystem is confined.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Confinement {
    /// Landlock must work, or no job runs.
    #[default]
    Required,
    /// Landlock where the kernel has it; without it, only seccomp and the limits.
    BestEffort,
}

/// Why the sandbox could not be entered.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the kernel does not offer Landlock ({0}); media jobs need Linux 5.13+ with Landlock \
         enabled, or --media-sandbox best-effort"
    )]
    NoLandlock(std::io::Error),
    #[error("{what}: {source}")]
    Call {
        what: &'static str,
        source: std::io::Error,
    },
}

fn call(what: &'static str) -> impl FnOnce(std::io::Error) -> SandboxError {
    move |source| SandboxError::Call { what, source }
}

/// What [`enter`] managed to apply, for the start-up report.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Applied {
    /// The Landlock ABI in force (0: none).
    pub landlock_abi: u32,
    pub seccomp: bool,
}

/// Confines this process (single-threaded, about to run one job) to reading `input` and
/// writing inside `out_dir`.
pub fn enter(input: &Path, out_dir: &Path, mode: Confinement) -> Result<Applied, SandboxError> {
    // Both mechanisms need it, and it stops a setuid program from regaining anything.
    // SAFETY: prctl with integer arguments.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(call("no_new_privs")(std::io::Error::last_os_error()));
    }
    let landlock_abi = match landlock::restrict(input, out_dir) {
        Ok(abi) => abi,
        Err(SandboxError::NoLandlock(_)) if mode == Confinement::BestEffort => 0,
        Err(e) => return Err(e),
    };
    seccomp::install().map_err(call("seccomp"))?;
    let applied = Applied {
        landlock_abi,
        seccomp: true,
    };
    let _ = APPLIED.set(applied.clone());
    Ok(applied)
}

/// What [`enter`] applied in this process, for [`probe`]'s report.
static APPLIED: std::sync::OnceLock<Applied> = std::sync::OnceLock::new();

mod landlock {
    //! Landlock through its three system calls (`landlock(7)`).
    use super::*;

    const CREATE_RULESET_VERSION: u32 = 1;
    const RULE_PATH_BENEATH: u32 = 1;

    // Filesystem rights (`LANDLOCK_ACCESS_FS_*`).
    const WRITE_FILE: u64 = 1 << 1;
    const READ_FILE: u64 = 1 << 2;
    const REMOVE_FILE: u64 = 1 << 5;
    const MAKE_REG: u64 = 1 << 8;
    /// Every right of ABI 1 (bits 0–12).
    const ABI1: u64 = (1 << 13) - 1;
    const REFER: u64 = 1 << 13;
    const TRUNCATE: u64 = 1 << 14;
    const IOCTL_DEV: u64 = 1 << 15;
    // Network rights (ABI 4) and scopes (ABI 6).
    const NET_BIND_TCP: u64 = 1 << 0;
    const NET_CONNECT_TCP: u64 = 1 << 1;
    const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0;
    const SCOPE_SIGNAL: u64 = 1 << 1;

    #[repr(C)]
    struct RulesetAttr {
        handled_access_fs: u64,
        handled_access_net: u64,
        scoped: u64,
    }

    #[repr(C, packed)]
    struct PathBeneath {
        allowed_access: u64,
        parent_fd: i32,
    }

    fn syscall_result(r: libc::c_long) -> std::io::Result<libc::c_long> {
        if r < 0 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(r)
        }
    }

    /// The filesystem rights this ABI knows.
    fn handled_fs(abi: u32) -> u64 {
        let mut fs = ABI1;
        if abi >= 2 {
            fs |= REFER;
        }
        if abi >= 3 {
            fs |= TRUNCATE;
        }
        if abi >= 5 {
            fs |= IOCTL_DEV;
        }
        fs
    }

    /// Applies the ruleset; returns the ABI version used.
    pub(super) fn restrict(input: &Path, out_dir: &Path) -> Result<u32, SandboxError> {
        // SAFETY: the documented version query: no attribute, size 0.
        let abi = syscall_result(unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                std::ptr::null::<RulesetAttr>(),
                0usize,
                CREATE_RULESET_VERSION,
            )
        })
        .map_err(SandboxError::NoLandlock)? as u32;
        let fs = handled_fs(abi);
        let attr = RulesetAttr {
            handled_access_fs: fs,
            handled_access_net: if abi >= 4 {
                NET_BIND_TCP | NET_CONNECT_TCP
            } else {
                0
            },
            scoped: if abi >= 6 {
                SCOPE_ABSTRACT_UNIX_SOCKET | SCOPE_SIGNAL
            } else {
                0
            },
        };
        // Older kernels read only the fields they know (the rest is zero for them).
        let size = match abi {
            0..=3 => 8,
            4 | 5 => 16,
            _ => std::mem::size_of::<RulesetAttr>(),
        };
        // SAFETY: `attr` outlives the call and `size` does not exceed it.
        let ruleset = syscall_result(unsafe {
            libc::syscall(
                libc::SYS_landlock_create_ruleset,
                &attr as *const RulesetAttr,
                size,
                0u32,
            )
        })
        .map_err(call("landlock_create_ruleset"))?;
        // SAFETY: the kernel just returned this descriptor to us.
        let ruleset: OwnedFd = unsafe { std::os::fd::FromRawFd::from_raw_fd(ruleset as i32) };
        allow(&ruleset, input, READ_FILE)?;
        allow(
            &ruleset,
            out_dir,
            (READ_FILE | WRITE_FILE | MAKE_REG | REMOVE_FILE | TRUNCATE) & fs,
        )?;
        // SAFETY: a descriptor we own, no flags.
        syscall_result(unsafe {
            libc::syscall(libc::SYS_landlock_restrict_self, ruleset.as_raw_fd(), 0u32)
        })
        .map_err(call("landlock_restrict_self"))?;
        Ok(abi)
    }

    /// Grants `rights` on `path` and everything beneath it.
    fn allow(ruleset: &OwnedFd, path: &Path, rights: u64) -> Result<(), SandboxError> {
        let fd: OwnedFd = std::fs::File::open(path)
            .map_err(call("opening a path to allow"))?
            .into();
        let rule = PathBeneath {
            allowed_access: rights,
            parent_fd: fd.as_raw_fd(),
        };
        // SAFETY: `rule` and both descriptors outlive the call.
        syscall_result(unsafe {
            libc::syscall(
                libc::SYS_landlock_add_rule,
                ruleset.as_raw_fd(),
                RULE_PATH_BENEATH,
                &rule as *const PathBeneath,
                0u32,
            )
        })
        .map_err(call("landlock_add_rule"))?;
        Ok(())
    }
}

mod seccomp {
    //! A classic-BPF seccomp filter (`seccomp(2)`), written out by hand: a dozen instructions.
    use libc::{sock_filter, sock_fprog};

    #[cfg(target_arch = "x86_64")]
    const ARCH: u32 = 0xC000_003E; // AUDIT_ARCH_X86_64
    #[cfg(target_arch = "aarch64")]
    const ARCH: u32 = 0xC000_00B7; // AUDIT_ARCH_AARCH64
    /// x32 system calls on x86-64 carry this bit; none are allowed.
    const X32_BIT: u32 = 0x4000_0000;

    const LD_W_ABS: u16 = 0x20;
    const JEQ_K: u16 = 0x15;
    const JGE_K: u16 = 0x35;
    const RET_K: u16 = 0x06;
    // Offsets in `struct seccomp_data`.
    const NR: u32 = 0;
    const ARCH_OFF: u32 = 4;
    const ARG0_LOW: u32 = 16;

    const ALLOW: u32 = 0x7fff_0000;
    const KILL: u32 = 0x8000_0000;
    fn errno(e: i32) -> u32 {
        0x0005_0000 | (e as u32 & 0xffff)
    }

    fn stmt(code: u16, k: u32) -> sock_filter {
        sock_filter {
            code,
            jt: 0,
            jf: 0,
            k,
        }
    }
    fn jump(code: u16, k: u32, jt: u8, jf: u8) -> sock_filter {
        sock_filter { code, jt, jf, k }
    }

    pub(super) fn install() -> std::io::Result<()> {
        let me = std::process::id();
        let denied = [
            (libc::SYS_socket, libc::EACCES),
            (libc::SYS_ptrace, libc::EPERM),
            (libc::SYS_process_vm_readv, libc::EPERM),
            (libc::SYS_process_vm_writev, libc::EPERM),
            (libc::SYS_tkill, libc::EPERM),
        ];
        let mut prog = vec![
            stmt(LD_W_ABS, ARCH_OFF),
            jump(JEQ_K, ARCH, 1, 0),
            stmt(RET_K, KILL),
            stmt(LD_W_ABS, NR),
            jump(JGE_K, X32_BIT, 0, 1),
            stmt(RET_K, errno(libc::ENOSYS)),
        ];
        for (nr, e) in denied {
            prog.push(jump(JEQ_K, nr as u32, 0, 1));
            prog.push(stmt(RET_K, errno(e)));
        }
        // kill(pid, …) and tgkill(tgid, …) only towards this process (raise, abort, threads).
        for nr in [libc::SYS_kill, libc::SYS_tgkill] {
            prog.push(jump(JEQ_K, nr as u32, 0, 4));
            prog.push(stmt(LD_W_ABS, ARG0_LOW));
            prog.push(jump(JEQ_K, me, 0, 1));
            prog.push(stmt(RET_K, ALLOW));
            prog.push(stmt(RET_K, errno(libc::EPERM)));
            // The accumulator holds the argument now: reload the number for the next test.
            prog.push(stmt(LD_W_ABS, NR));
        }
        prog.push(stmt(RET_K, ALLOW));
        let fprog = sock_fprog {
            len: prog.len() as u16,
            filter: prog.as_mut_ptr(),
        };
        // SAFETY: `fprog` points at `prog`, alive across the call; no_new_privs is set.
        let r = unsafe {
            libc::prctl(
                libc::PR_SET_SECCOMP,
                libc::SECCOMP_MODE_FILTER as libc::c_ulong,
                &fprog as *const sock_fprog,
            )
        };
        if r != 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(())
    }
}

/// What the sandbox check found: the things a job could do that it should not.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Report {
    pub applied: Applied,
    /// Whether the job could read its input and write its output (it must).
    pub works: bool,
    /// Every escape that succeeded; empty when the sandbox holds.
    pub escapes: Vec<String>,
}

/// The sandbox check, run as a job ([`crate::Task::SandboxCheck`]) after [`enter`]: tries to
/// get out in every way a hostile file's code would, plus the paths and `tcp:host:port`
/// targets listed in the input, one per line.
pub fn probe(input: &Path, out_dir: &Path) -> Report {
    let mut escapes = Vec::new();
    let listed = std::fs::read_to_string(input);
    let works = listed.is_ok() && std::fs::write(out_dir.join("probe"), b"ok").is_ok();
    let job_dir = out_dir.parent().unwrap_or(out_dir);
    let mut read_targets: Vec<PathBuf> = vec![
        "/etc/passwd".into(),
        format!("/proc/{}/environ", std::os::unix::process::parent_id()).into(),
    ];
    let mut tcp_targets = Vec::new();
    for line in listed.as_deref().unwrap_or("").lines() {
        match line.strip_prefix("tcp:") {
            Some(addr) => tcp_targets.push(addr.to_owned()),
            None if !line.trim().is_empty() => read_targets.push(line.trim().into()),
            None => {}
        }
    }
    for path in &read_targets {
        if std::fs::File::open(path).is_ok() {
            escapes.push(format!("read {}", path.display()));
        }
    }
    if std::fs::read_dir(job_dir).is_ok() {
        escapes.push(format!("listed {}", job_dir.display()));
    }
    if std::fs::write(job_dir.join("escape-check"), b"x").is_ok() {
        escapes.push(format!("wrote in {}", job_dir.display()));
    }
    if let Some(parent) = job_dir.parent() {
        if std::fs::create_dir(parent.join("escape-check")).is_ok() {
            escapes.push(format!("made a directory in {}", parent.display()));
        }
    }
    for (family, name) in [
        (libc::AF_INET, "AF_INET"),
        (libc::AF_INET6, "AF_INET6"),
        (libc::AF_UNIX, "AF_UNIX"),
        (libc::AF_NETLINK, "AF_NETLINK"),
    ] {
        // SAFETY: plain system call; a descriptor it returns is closed at once.
        let fd = unsafe { libc::socket(family, libc::SOCK_STREAM, 0) };
        if fd >= 0 {
            escapes.push(format!("opened an {name} socket"));
            // SAFETY: the descriptor was just returned to us.
            unsafe { libc::close(fd) };
        }
    }
    for addr in tcp_targets {
        if std::net::TcpStream::connect(&addr).is_ok() {
            escapes.push(format!("connected to tcp {addr}"));
        }
    }
    let env: Vec<String> = std::env::vars_os()
        .map(|(k, _)| k.to_string_lossy().into_owned())
        .filter(|k| k != "LD_LIBRARY_PATH")
        .collect();
    if !env.is_empty() {
        escapes.push(format!("inherited environment: {}", env.join(", ")));
    }
    // SAFETY: signal 0 only checks whether the parent could be signalled.
    if unsafe { libc::kill(std::os::unix::process::parent_id() as i32, 0) } == 0 {
        escapes.push("signalled its parent".into());
    }
    Report {
        applied: APPLIED.get().cloned().unwrap_or_default(),
        works,
        escapes,
    }
}
