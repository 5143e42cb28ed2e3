//! The `husk` command line: the clap parser, and the dispatch from a parsed command to
//! [`crate::commands`]. Flags and commands mirror runc's so callers drive it unchanged.
//!
//! It lives in the library, not in `main.rs`, so that `cargo xtask dist` can render man pages
//! and shell completions from the same [`clap::Command`] the binary parses with.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::commands::{
    self, checkpoint::CriuOpts, create::CreateOpts, events::EventsOpts, exec::ExecOpts,
    list::ListFormat, ps::PsFormat, restore::RestoreOpts, update::UpdateOpts, Global,
};
use crate::logging::{self, LogFormat};

/// `husk --version` in runc's layout (`runc version X`, `commit:`, `spec:`, then toolchain).
const VERSION: &str = concat!(
    "husk version ",
    env!("CARGO_PKG_VERSION"),
    "\ncommit: ",
    env!("HUSK_COMMIT"),
    "\nspec: 1.0.2-dev\nrust: ",
    env!("HUSK_RUSTC")
);

#[derive(Parser, Debug)]
#[command(
    name = "husk",
    about = "husk: a runc-compatible OCI container runtime",
    disable_version_flag = true
)]
struct Cli {
    /// Enable debug logging.
    #[arg(long, global = true)]
    debug: bool,
    /// Log file (default: stderr).
    #[arg(long, global = true, value_name = "FILE")]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, value_enum, default_value = "text")]
    log_format: LogFormat,
    /// Root directory for container state (default: /run/husk as root, else
    /// $XDG_RUNTIME_DIR/husk, as runc does).
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// Path to criu (accepted for runc compatibility).
    #[arg(long, global = true, hide = true)]
    criu: Option<PathBuf>,
    /// Manage cgroups through systemd.
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// Print the version.
    #[arg(short = 'v', long = "version")]
    version: bool,
    /// Rootless mode: true, false or auto (before the command, as with runc).
    #[arg(long, value_name = "true|false|auto", num_args = 0..=1, default_missing_value = "true")]
    rootless: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(clap::Args, Debug, Clone)]
struct CreateArgs {
    /// Container id.
    id: String,
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the init.
    #[arg(long = "pidfd-socket")]
    pidfd_socket: Option<PathBuf>,
    /// File to write the init's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Do not use pivot_root (for a ramdisk rootfs).
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Do not create a new session keyring.
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N more file descriptors (3..3+N) to the container.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
}

impl CreateArgs {
    fn opts(&self) -> CreateOpts {
        CreateOpts {
            bundle: self.bundle.clone(),
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            pidfd_socket: self.pidfd_socket.clone(),
            no_pivot: self.no_pivot,
            no_new_keyring: self.no_new_keyring,
            preserve_fds: i32::try_from(self.preserve_fds).unwrap_or(i32::MAX - 3),
            console_fd: None,
        }
    }
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Create a container, leaving it waiting for start.
    Create(CreateArgs),
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
    },
    /// Create and start a container, and wait for it.
    Run {
        #[command(flatten)]
        create: CreateArgs,
        /// Return after start instead of waiting.
        #[arg(short, long)]
        detach: bool,
        /// Keep the container's state after it exits.
        #[arg(long)]
        keep: bool,
        /// Accepted for runc compatibility: the init is always husk's child.
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
    },
    /// Print a container's state.
    State {
        /// Container id.
        id: String,
    },
    /// Send a signal to a container's init.
    Kill {
        /// Send to every process of the container.
        #[arg(short, long)]
        all: bool,
        /// Container id.
        id: String,
        /// Signal name or number (`-9` is taken as a signal, not a flag).
        #[arg(default_value = "SIGTERM", allow_hyphen_values = true)]
        signal: String,
    },
    /// Delete a container.
    Delete {
        /// Kill it first if it runs.
        #[arg(short, long)]
        force: bool,
        /// Container id.
        id: String,
    },
    /// List containers.
    #[command(visible_alias = "ps-all")]
    List {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        format: ListFormat,
        /// Print only ids.
        #[arg(short, long)]
        quiet: bool,
    },
    /// Write a default config.json.
    Spec {
        /// Bundle directory to write it into.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// A config for a rootless container.
        #[arg(long)]
        rootless: bool,
    },
    /// Print the features husk supports.
    Features,
    /// Run a process in a running container.
    Exec(ExecArgs),
    /// Change a container's resource limits.
    Update(UpdateArgs),
    /// Freeze every process of a container.
    Pause {
        /// Container id.
        id: String,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
    },
    /// List the processes of a container.
    Ps {
        /// Output format.
        #[arg(short, long, value_enum, default_value = "table")]
        format: PsFormat,
        /// Container id.
        id: String,
        /// Options passed to ps(1) for the table form.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Print container statistics and OOM notifications as JSON events.
    Events {
        /// Print one stats event and exit.
        #[arg(long)]
        stats: bool,
        /// Time between stats events (a Go duration: 5s, 500ms, 1m).
        #[arg(long, default_value = "5s")]
        interval: String,
        /// Container id.
        id: String,
    },
    /// Checkpoint a running container with criu.
    Checkpoint {
        #[command(flatten)]
        criu: CriuArgs,
        /// Keep the container running after the checkpoint.
        #[arg(long = "leave-running")]
        leave_running: bool,
        /// Dump only memory, for a later dump with --parent-path.
        #[arg(long = "pre-dump")]
        pre_dump: bool,
        /// Images of a previous pre-dump, relative to --image-path.
        #[arg(long = "parent-path")]
        parent_path: Option<PathBuf>,
        /// Send pages to a criu page server at ADDRESS:PORT.
        #[arg(long = "page-server")]
        page_server: Option<String>,
        /// Container id.
        id: String,
    },
    /// Restore a container from a criu checkpoint.
    Restore {
        #[command(flatten)]
        criu: CriuArgs,
        /// Path to the bundle directory.
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
        /// Return once the container runs.
        #[arg(short, long)]
        detach: bool,
        /// File to write the restored init's pid to.
        #[arg(long = "pid-file")]
        pid_file: Option<PathBuf>,
        /// Unix socket that receives the pty master (refused: terminals are not restored).
        #[arg(long = "console-socket")]
        console_socket: Option<PathBuf>,
        /// Accepted for runc compatibility.
        #[arg(long = "no-pivot")]
        no_pivot: bool,
        /// Accepted for runc compatibility (also as -no-subreaper).
        #[arg(long = "no-subreaper")]
        no_subreaper: bool,
        /// Container id.
        id: String,
    },
}

/// Flags `checkpoint` and `restore` share, as runc (and containerd's go-runc) spell them.
#[derive(clap::Args, Debug, Clone)]
struct CriuArgs {
    /// Directory for the criu images (default: ./checkpoint).
    #[arg(long = "image-path")]
    image_path: Option<PathBuf>,
    /// Directory for criu's logs and work files (default: the image path).
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Allow open TCP connections.
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    /// Allow a shell job (a terminal).
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Handle file locks.
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// Cgroup mode: soft, full, strict or ignore.
    #[arg(long = "manage-cgroups-mode")]
    manage_cgroups_mode: Option<String>,
    /// Namespaces to leave empty (criu: only network).
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    /// A descriptor criu writes \0 to when ready (lazy pages).
    #[arg(long = "status-fd")]
    status_fd: Option<i32>,
    /// Restore memory lazily through userfaultfd.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
    /// Deduplicate images with their parent.
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
}

impl CriuArgs {
    fn opts(&self, criu: Option<PathBuf>) -> CriuOpts {
        CriuOpts {
            image_path: self.image_path.clone(),
            work_path: self.work_path.clone(),
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
            manage_cgroups_mode: self.manage_cgroups_mode.clone(),
            empty_ns: self.empty_ns.clone(),
            status_fd: self.status_fd,
            lazy_pages: self.lazy_pages,
            auto_dedup: self.auto_dedup,
            criu,
            ..Default::default()
        }
    }
}

#[derive(clap::Args, Debug, Clone)]
struct UpdateArgs {
    /// A linux.resources JSON file, or - for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    /// Memory limit (e.g. 64m).
    #[arg(long)]
    memory: Option<String>,
    /// Memory plus swap limit.
    #[arg(long = "memory-swap")]
    memory_swap: Option<String>,
    /// Memory soft limit.
    #[arg(long = "memory-reservation")]
    memory_reservation: Option<String>,
    /// Kernel memory limit (ignored, as in runc 1.1).
    #[arg(long = "kernel-memory", hide = true)]
    kernel_memory: Option<String>,
    /// CPU shares.
    // runc 1.1 spells it --cpu-share; both are accepted, as the hidden alias keeps --help short.
    #[arg(long = "cpu-shares", alias = "cpu-share")]
    cpu_shares: Option<u64>,
    /// CFS quota in microseconds.
    #[arg(long = "cpu-quota")]
    cpu_quota: Option<i64>,
    /// CFS period in microseconds.
    #[arg(long = "cpu-period")]
    cpu_period: Option<u64>,
    /// Realtime runtime in microseconds.
    #[arg(long = "cpu-rt-runtime")]
    cpu_rt_runtime: Option<i64>,
    /// Realtime period in microseconds.
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<u64>,
    /// CPUs allowed.
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    /// Memory nodes allowed.
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    /// Maximum number of pids.
    #[arg(long = "pids-limit")]
    pids_limit: Option<i64>,
    /// Block IO weight (10-1000).
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    /// Container id.
    id: String,
}

#[derive(clap::Args, Debug, Clone)]
struct ExecArgs {
    /// A runtime-spec process JSON file.
    #[arg(short, long)]
    process: Option<PathBuf>,
    /// Set an environment variable (repeatable).
    #[arg(short, long)]
    env: Vec<String>,
    /// Working directory in the container.
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// uid[:gid] to run as.
    #[arg(short, long)]
    user: Option<String>,
    /// Additional gids (repeatable).
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Add a capability (repeatable).
    #[arg(short, long)]
    cap: Vec<String>,
    /// Set no_new_privileges.
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    /// Allocate a pseudo-TTY.
    #[arg(short, long)]
    tty: bool,
    /// Unix socket that receives the pty master.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the process.
    #[arg(long = "pidfd-socket")]
    pidfd_socket: Option<PathBuf>,
    /// File to write the process's pid to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Return once the process runs.
    #[arg(short, long)]
    detach: bool,
    /// Exec even into a paused container (the process starts frozen).
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Pass N more file descriptors to the process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// AppArmor profile (not supported: refused when set).
    #[arg(long)]
    apparmor: Option<String>,
    /// SELinux label (not supported: refused when set).
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// Container id.
    id: String,
    /// Command and arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    command: Vec<String>,
}

/// Go's flag syntax lets runc take a long flag with one dash; containerd's go-runc passes
/// `restore ... -no-subreaper`. Only that spelling is rewritten, and only for `restore` and
/// `run`, which take no command arguments that it could clash with.
fn go_style_args(args: impl Iterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut out: Vec<std::ffi::OsString> = args.collect();
    let sub = out.iter().position(|a| a == "restore" || a == "run");
    if let Some(i) = sub {
        for a in out.iter_mut().skip(i + 1) {
            if a == "-no-subreaper" {
                *a = "--no-subreaper".into();
            }
        }
    }
    out
}

/// The state directory without --root: /run/husk is root's, so an unprivileged user gets
/// $XDG_RUNTIME_DIR/husk (its own tmpfs), as runc uses $XDG_RUNTIME_DIR/runc.
fn default_root() -> PathBuf {
    // As runc: an unprivileged user, or "root" of a user namespace that is not really root
    // (rootless podman), keeps state under $XDG_RUNTIME_DIR.
    let fake_root =
        crate::commands::in_user_namespace() && std::env::var("USER").map_or(true, |u| u != "root");
    if !nix::unistd::geteuid().is_root() || fake_root {
        if let Some(xdg) = std::env::var_os("XDG_RUNTIME_DIR").filter(|v| !v.is_empty()) {
            return PathBuf::from(xdg).join("husk");
        }
    }
    PathBuf::from("/run/husk")
}

/// The whole command line as clap sees it, for man pages and shell completions.
pub fn command() -> clap::Command {
    Cli::command()
}

/// Parses the process's arguments, runs the command and returns husk's exit code.
pub fn main() -> ExitCode {
    let cli = Cli::parse_from(go_style_args(std::env::args_os()));
    let Some(command) = cli.command else {
        if cli.version {
            println!("{VERSION}");
            return ExitCode::SUCCESS;
        }
        eprintln!("husk: no command given; see husk --help");
        return ExitCode::FAILURE;
    };
    logging::init(cli.log.clone(), cli.log_format, cli.debug);
    let global = Global {
        root: cli.root.clone().unwrap_or_else(default_root),
        systemd_cgroup: cli.systemd_cgroup,
        rootless: cli.rootless.clone(),
        criu: cli.criu.clone(),
    };
    // Commands that fork into a container first make sure the container cannot reach a
    // writable husk binary through /proc/PID/exe (CVE-2019-5736); this may re-exec once.
    if matches!(
        command,
        Command::Create(_) | Command::Run { .. } | Command::Exec(_) | Command::Restore { .. }
    ) {
        if let Err(e) = crate::process::cloned_binary::ensure(&global.root) {
            logging::error(&e.to_string());
            return ExitCode::FAILURE;
        }
    }
    // runc exits 255 when exec itself fails, so a caller can tell that from the process's
    // own exit code (which `exec` returns).
    let failure = if matches!(command, Command::Exec(_)) {
        ExitCode::from(255)
    } else {
        ExitCode::FAILURE
    };
    let is_exec = matches!(command, Command::Exec(_));
    match dispatch(&global, command) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            let msg = if is_exec {
                format!("exec failed: {}", one_line(&e))
            } else {
                one_line(&e)
            };
            logging::error(&msg);
            // With --log the line went to the file; the caller's terminal still gets the reason.
            if logging::has_log_file() {
                eprintln!("{msg}");
            }
            failure
        }
    }
}

/// The error and its causes on one line, each cause once: many error types already print
/// their source, and anyhow's `{:#}` would repeat it.
fn one_line(e: &anyhow::Error) -> String {
    let mut msg = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if text.is_empty() || msg.contains(&text) {
            continue;
        }
        if !msg.is_empty() {
            msg.push_str(": ");
        }
        msg.push_str(&text);
    }
    msg.split('\n')
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join("; ")
}

fn dispatch(g: &Global, command: Command) -> anyhow::Result<i32> {
    match command {
        Command::Create(a) => commands::create::create(g, &a.id, &a.opts()).map(|_| 0),
        Command::Start { id } => commands::start::start(g, &id).map(|_| 0),
        Command::Run {
            create,
            detach,
            keep,
            no_subreaper: _,
        } => commands::run::run(g, &create.id, &create.opts(), detach, keep),
        Command::State { id } => commands::state::state(g, &id).map(|_| 0),
        Command::Kill { all, id, signal } => commands::kill::kill(g, &id, &signal, all).map(|_| 0),
        Command::Delete { force, id } => commands::delete::delete(g, &id, force).map(|_| 0),
        Command::List { format, quiet } => commands::list::list(g, format, quiet).map(|_| 0),
        Command::Spec { bundle, rootless } => commands::spec::spec(&bundle, rootless).map(|_| 0),
        Command::Features => commands::features::features().map(|_| 0),
        Command::Exec(a) => {
            let opts = ExecOpts {
                process: a.process,
                args: a.command,
                env: a.env,
                cwd: a.cwd,
                user: a.user,
                additional_gids: a.additional_gids,
                caps: a.cap,
                no_new_privs: a.no_new_privs,
                tty: a.tty,
                console_socket: a.console_socket,
                pid_file: a.pid_file,
                detach: a.detach,
                preserve_fds: i32::try_from(a.preserve_fds).unwrap_or(i32::MAX - 3),
                apparmor: a.apparmor,
                process_label: a.process_label,
                pidfd_socket: a.pidfd_socket,
                ignore_paused: a.ignore_paused,
            };
            commands::exec::exec(g, &a.id, &opts)
        }
        Command::Update(a) => {
            let opts = UpdateOpts {
                resources: a.resources,
                memory: a.memory,
                memory_swap: a.memory_swap,
                memory_reservation: a.memory_reservation,
                cpu_shares: a.cpu_shares,
                cpu_quota: a.cpu_quota,
                cpu_period: a.cpu_period,
                cpu_rt_runtime: a.cpu_rt_runtime,
                cpu_rt_period: a.cpu_rt_period,
                cpuset_cpus: a.cpuset_cpus,
                cpuset_mems: a.cpuset_mems,
                pids_limit: a.pids_limit,
                blkio_weight: a.blkio_weight,
            };
            commands::update::update(g, &a.id, &opts).map(|_| 0)
        }
        Command::Pause { id } => commands::pause::pause(g, &id).map(|_| 0),
        Command::Resume { id } => commands::pause::resume(g, &id).map(|_| 0),
        Command::Ps {
            format,
            id,
            ps_args,
        } => commands::ps::ps(g, &id, format, &ps_args).map(|_| 0),
        Command::Events {
            stats,
            interval,
            id,
        } => {
            let opts = EventsOpts {
                stats,
                interval: commands::events::parse_duration(&interval)?,
            };
            commands::events::events(g, &id, &opts).map(|_| 0)
        }
        Command::Checkpoint {
            criu,
            leave_running,
            pre_dump,
            parent_path,
            page_server,
            id,
        } => {
            let opts = CriuOpts {
                leave_running,
                pre_dump,
                parent_path,
                page_server,
                ..criu.opts(g.criu.clone())
            };
            commands::checkpoint::checkpoint(g, &id, &opts).map(|_| 0)
        }
        Command::Restore {
            criu,
            bundle,
            detach,
            pid_file,
            console_socket,
            no_pivot,
            no_subreaper,
            id,
        } => {
            let opts = RestoreOpts {
                criu: criu.opts(g.criu.clone()),
                bundle,
                detach,
                pid_file,
                console_socket,
                no_pivot,
                no_subreaper,
            };
            commands::restore::restore(g, &id, &opts)
        }
    }
}
