//! `husk`: the command line. Flags and commands mirror runc's so callers drive it unchanged.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use husk::commands::{
    self, create::CreateOpts, exec::ExecOpts, list::ListFormat, ps::PsFormat, update::UpdateOpts,
    Global,
};
use husk::logging::{self, LogFormat};

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
    /// Root directory for container state.
    #[arg(long, global = true, default_value = "/run/husk")]
    root: PathBuf,
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
        /// Signal name or number.
        #[arg(default_value = "SIGTERM")]
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
    #[arg(long = "cpu-shares")]
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

fn main() -> ExitCode {
    let cli = Cli::parse();
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
        root: cli.root.clone(),
        systemd_cgroup: cli.systemd_cgroup,
        rootless: cli.rootless.clone(),
    };
    match dispatch(&global, command) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(255)),
        Err(e) => {
            let msg = format!("{e:#}");
            logging::error(&msg);
            // With --log the line went to the file; the caller's terminal still gets the reason.
            if logging::has_log_file() {
                eprintln!("{msg}");
            }
            ExitCode::FAILURE
        }
    }
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
    }
}
