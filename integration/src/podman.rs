//! podman (Debian's package) driving husk: every command runs with its own storage (`--root`,
//! `--runroot`, vfs driver), tmp dir, CNI config dir and cgroup parent in a fresh
//! `/tmp/husk-pdm-*` dir, `--network none`, and the busybox image loaded from a locally built
//! archive ([`crate::archive`]). As root, or rootless as an unprivileged user the harness creates
//! ([`RootlessUser`]). Dropping a [`Podman`] removes its containers, conmon processes, mounts,
//! cgroups, the user and the temp dir, even when the test failed.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, ensure, Context, Result};
use husk_tests::Output;
use tempfile::TempDir;

/// How long one podman command may take.
pub const PODMAN_TIMEOUT: Duration = Duration::from_secs(60);

/// podman: `HUSK_PODMAN`, else from PATH.
pub fn podman_bin() -> Option<PathBuf> {
    std::env::var_os("HUSK_PODMAN")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| husk_tests::which("podman"))
}

/// Returns early from a test when it cannot run here (not root, no podman), saying so.
#[macro_export]
macro_rules! require_podman {
    () => {
        husk_tests::require_root!();
        if $crate::podman::podman_bin().is_none() {
            eprintln!(
                "SKIPPED {}: podman not installed (Debian's podman; `cargo xtask test` installs it)",
                module_path!()
            );
            return;
        }
    };
}

/// The host path root podman creates whatever flags it is given: containers/image's blob info
/// cache for root (`/var/lib/containers/cache`). Removed after the last podman harness of this
/// test process, when it did not exist before the first.
const PODMAN_HOST_PATH: &str = "/var/lib/containers";

static HOST_PATH: Mutex<(usize, bool)> = Mutex::new((0, false));

fn host_path_acquire() {
    if let Ok(mut g) = HOST_PATH.lock() {
        if g.0 == 0 {
            g.1 = fs::symlink_metadata(PODMAN_HOST_PATH).is_err();
        }
        g.0 += 1;
    }
}

fn host_path_release() {
    if let Ok(mut g) = HOST_PATH.lock() {
        g.0 = g.0.saturating_sub(1);
        if g.0 == 0 && g.1 {
            g.1 = false;
            let cache = Path::new(PODMAN_HOST_PATH).join("cache");
            let _ = fs::remove_file(cache.join("blob-info-cache-v1.boltdb"));
            let _ = fs::remove_dir(&cache);
            let _ = fs::remove_dir(PODMAN_HOST_PATH);
        }
    }
}

/// The hard limit of `resource` for this process.
fn rlimit(resource: libc::__rlimit_resource_t) -> Option<u64> {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into `r`, a valid rlimit.
    (unsafe { libc::getrlimit(resource, &mut r) } == 0).then_some(r.rlim_max)
}

/// `--ulimit` flags that any runtime can apply here. podman asks for nofile and nproc
/// 1048576 by default; raising a hard limit needs CAP_SYS_RESOURCE, which root lacks on some
/// hosts (this VM's bounding set drops it), and there runc, crun and husk all fail
/// `setrlimit` with EPERM. The runtime podman 4.3 starts inherits a hard RLIMIT_NPROC of at
/// most 32768 (observed here; podman or conmon lowers it). So: no more than what the runtime
/// inherits.
pub fn safe_ulimits() -> Vec<String> {
    let nofile = rlimit(libc::RLIMIT_NOFILE).unwrap_or(1024).min(1 << 20);
    let nproc = rlimit(libc::RLIMIT_NPROC).unwrap_or(4096).min(32768);
    vec![
        "--ulimit".into(),
        format!("nofile={nofile}:{nofile}"),
        "--ulimit".into(),
        format!("nproc={nproc}:{nproc}"),
    ]
}

/// An unprivileged user created for a rootless run (with subordinate uid/gid ranges for
/// podman's user namespace) and removed on Drop with every process it still runs.
pub struct RootlessUser {
    /// Login name.
    pub name: String,
    /// Its uid.
    pub uid: u32,
    /// Its primary gid.
    pub gid: u32,
    /// First subordinate uid and gid (65536 of each).
    pub subid_start: u32,
}

/// The first id after every range in a subuid/subgid file, rounded up to 65536.
fn free_subid_start(text: &str) -> u32 {
    let end = text
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            Some(f.get(1)?.parse::<u64>().ok()? + f.get(2)?.parse::<u64>().ok()?)
        })
        .max()
        .unwrap_or(100_000)
        .max(100_000);
    u32::try_from(end.div_ceil(65536) * 65536).unwrap_or(u32::MAX - 65536)
}

fn run_tool(cmd: &mut Command) -> Result<String> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {:?}", cmd.get_program()))?;
    ensure!(
        out.status.success(),
        "{:?} {:?} failed: {}",
        cmd.get_program(),
        cmd.get_args().collect::<Vec<_>>(),
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

impl RootlessUser {
    /// Creates user `husk-rl-PID-N` with home `home` (not created) and subordinate ids.
    pub fn create(home: &Path) -> Result<RootlessUser> {
        let name = husk_tests::unique("husk-rl");
        run_tool(
            Command::new("useradd")
                .args(["--no-create-home", "--user-group", "--shell", "/bin/sh"])
                .arg("--home-dir")
                .arg(home)
                .arg(&name),
        )?;
        let mut user = RootlessUser {
            uid: 0,
            gid: 0,
            subid_start: 0,
            name,
        };
        // From here on Drop removes the user (by name), whatever fails next.
        let id = |flag: &str, name: &str| -> Result<u32> {
            run_tool(Command::new("id").arg(flag).arg(name))?
                .trim()
                .parse()
                .context("parsing id's output")
        };
        user.uid = id("-u", &user.name)?;
        user.gid = id("-g", &user.name)?;
        let has_range = |file: &str| {
            fs::read_to_string(file)
                .unwrap_or_default()
                .lines()
                .find(|l| l.split(':').next() == Some(user.name.as_str()))
                .and_then(|l| l.split(':').nth(1)?.parse::<u32>().ok())
        };
        // useradd gives a new user ranges when login.defs asks for them (Debian's does); else
        // add some after every existing range.
        match (has_range("/etc/subuid"), has_range("/etc/subgid")) {
            (Some(u), Some(_)) => user.subid_start = u,
            _ => {
                let taken = format!(
                    "{}\n{}",
                    fs::read_to_string("/etc/subuid").unwrap_or_default(),
                    fs::read_to_string("/etc/subgid").unwrap_or_default()
                );
                let start = free_subid_start(&taken);
                let range = format!("{start}-{}", start + 65535);
                run_tool(
                    Command::new("usermod")
                        .args(["--add-subuids", &range, "--add-subgids", &range])
                        .arg(&user.name),
                )?;
                user.subid_start = start;
            }
        }
        Ok(user)
    }

    /// Pids of processes running as this user or as one of its subordinate uids (podman's
    /// pause process, conmon, containers). Never root's: an id not known yet matches nothing.
    pub fn pids(&self) -> Vec<i32> {
        let mine = |u: u32| {
            (self.uid != 0 && u == self.uid)
                || (self.subid_start >= 1000
                    && (self.subid_start..self.subid_start.saturating_add(65536)).contains(&u))
        };
        let Ok(rd) = fs::read_dir("/proc") else {
            return Vec::new();
        };
        rd.flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                let status = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("Uid:"))
                    .and_then(|l| l.split_whitespace().next()?.parse::<u32>().ok())
                    .is_some_and(mine)
            })
            .collect()
    }
}

impl Drop for RootlessUser {
    fn drop(&mut self) {
        for _ in 0..3 {
            let pids = self.pids();
            if pids.is_empty() {
                break;
            }
            for pid in pids {
                // SAFETY: plain syscall; every process of a user this test created.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        // userdel also removes the user's /etc/subuid and /etc/subgid lines.
        let _ = Command::new("userdel")
            .arg(&self.name)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

/// podman with private storage, driving `runtime` (a path, or a name from containers.conf).
pub struct Podman {
    tmp: Option<TempDir>,
    /// The temp dir holding everything.
    pub dir: PathBuf,
    /// The dir podman's state lives in (owned by the rootless user when there is one).
    pub base: PathBuf,
    bin: PathBuf,
    /// `--runtime` (a path or a name); None: containers.conf's `engine.runtime`.
    runtime: Option<String>,
    /// `containers.conf` given as `CONTAINERS_CONF`, if any.
    conf: Option<PathBuf>,
    /// The containers' cgroup parent (root only: rootless podman on cgroup v1 makes none).
    pub cgroup_parent: Option<String>,
    user: Option<RootlessUser>,
    scratch: PathBuf,
    holds_host_path: bool,
}

impl Podman {
    /// podman as root with `--runtime RUNTIME` (a path, or a name `conf` defines; None: the
    /// runtime `conf` makes the default) and containers.conf `conf` (given as
    /// `CONTAINERS_CONF`), with the busybox image loaded.
    pub fn start(runtime: Option<&str>, conf: Option<&str>) -> Result<Podman> {
        Podman::setup(runtime, conf, false)
    }

    /// podman rootless as a new unprivileged user. `runtime` is copied into the temp dir
    /// (the user may not reach the build tree) unless it is a bare name.
    pub fn start_rootless(runtime: &Path) -> Result<Podman> {
        let rt = runtime.display().to_string();
        Podman::setup(Some(&rt), None, true)
    }

    fn setup(runtime: Option<&str>, conf: Option<&str>, rootless: bool) -> Result<Podman> {
        let bin = podman_bin().context("podman is not installed")?;
        let tmp = tempfile::Builder::new()
            .prefix("husk-pdm-")
            .tempdir_in("/tmp")
            .context("creating a temp dir")?;
        let dir = tmp.path().to_path_buf();
        let base = dir.join("p");
        for d in ["scratch", "work", "p"] {
            fs::create_dir_all(dir.join(d))?;
        }
        host_path_acquire();
        let mut p = Podman {
            tmp: Some(tmp),
            scratch: dir.join("scratch"),
            base,
            bin,
            runtime: runtime.map(str::to_string),
            conf: None,
            cgroup_parent: None,
            user: None,
            dir,
            holds_host_path: true,
        };
        if let Some(text) = conf {
            let path = p.dir.join("containers.conf");
            fs::write(&path, text)?;
            p.conf = Some(path);
        }
        if rootless {
            // The user must reach its dirs and the runtime binary: the temp dir is 0700.
            fs::set_permissions(&p.dir, fs::Permissions::from_mode(0o755))?;
            let user = RootlessUser::create(&p.base.join("home"))?;
            let (uid, gid) = (user.uid, user.gid);
            p.user = Some(user);
            let runtime = runtime.context("a rootless run needs a runtime path")?;
            let copy = p.dir.join("bin").join(
                Path::new(runtime)
                    .file_name()
                    .context("the runtime path has no file name")?,
            );
            fs::create_dir_all(p.dir.join("bin"))?;
            fs::copy(runtime, &copy).context("copying the runtime for the rootless user")?;
            fs::set_permissions(&copy, fs::Permissions::from_mode(0o755))?;
            p.runtime = Some(copy.display().to_string());
            for d in ["home", "run", "storage", "runroot", "tmp", "cni"] {
                fs::create_dir_all(p.base.join(d))?;
            }
            fs::set_permissions(p.base.join("run"), fs::Permissions::from_mode(0o700))?;
            chown_tree(&p.base, uid, gid)?;
        } else {
            p.cgroup_parent = Some(format!("/{}", husk_tests::unique("husk-test-podman")));
        }
        let archive = crate::archive::build(&p.dir.join("work"))?;
        fs::set_permissions(&archive, fs::Permissions::from_mode(0o644))?;
        let archive = archive.display().to_string();
        let out = p.podman(&["load", "-i", &archive]);
        if !out.success() {
            bail!("podman load failed:\n{out}");
        }
        Ok(p)
    }

    /// True when podman runs as the unprivileged user.
    pub fn rootless(&self) -> bool {
        self.user.is_some()
    }

    /// The runtime podman is told to use (`--runtime`), if any.
    pub fn runtime(&self) -> Option<&str> {
        self.runtime.as_deref()
    }

    /// `podman GLOBAL-FLAGS ARGS` as a Command (as the rootless user when there is one).
    pub fn podman_command(&self, args: &[&str]) -> Command {
        let b = |s: &str| self.base.join(s).display().to_string();
        let mut cmd = Command::new(&self.bin);
        cmd.args(["--root", &b("storage"), "--runroot", &b("runroot")])
            .args(["--storage-driver", "vfs"])
            .args(self.runtime.iter().flat_map(|r| ["--runtime", r.as_str()]))
            // No systemd or journald here (or not ours): plain cgroupfs and an events file.
            .args(["--cgroup-manager", "cgroupfs", "--events-backend", "file"])
            .args(["--tmpdir", &b("tmp"), "--network-config-dir", &b("cni")])
            .args(args)
            .current_dir(&self.base);
        cmd.env_remove("CONTAINERS_CONF")
            .env_remove("CONTAINER_HOST")
            .env_remove("XDG_RUNTIME_DIR");
        if let Some(conf) = &self.conf {
            cmd.env("CONTAINERS_CONF", conf);
        }
        if let Some(u) = &self.user {
            // A login-like environment: podman keys rootless paths off these, and runc (and
            // so a drop-in) picks its state dir from XDG_RUNTIME_DIR when USER is not root.
            cmd.env_clear()
                .env(
                    "PATH",
                    "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin",
                )
                .env("HOME", b("home"))
                .env("USER", &u.name)
                .env("LOGNAME", &u.name)
                .env("XDG_RUNTIME_DIR", b("run"))
                .env("XDG_CONFIG_HOME", b("home/.config"))
                .env("XDG_DATA_HOME", b("home/.local/share"))
                .uid(u.uid)
                .gid(u.gid);
        }
        cmd
    }

    /// Runs `podman ARGS`.
    pub fn podman(&self, args: &[&str]) -> Output {
        husk_tests::capture(self.podman_command(args), &self.scratch, PODMAN_TIMEOUT)
    }

    /// `podman run --network none --pull never [--cgroup-parent P] ULIMITS FLAGS IMAGE ARGS`.
    pub fn run(&self, flags: &[&str], args: &[&str]) -> Output {
        let mut a: Vec<String> = ["run", "--network", "none", "--pull", "never"]
            .map(String::from)
            .to_vec();
        if let Some(cg) = &self.cgroup_parent {
            a.extend(["--cgroup-parent".into(), cg.clone()]);
        }
        a.extend(safe_ulimits());
        a.extend(flags.iter().map(|s| s.to_string()));
        a.push(crate::archive::IMAGE.into());
        a.extend(args.iter().map(|s| s.to_string()));
        let a: Vec<&str> = a.iter().map(String::as_str).collect();
        self.podman(&a)
    }

    /// `podman inspect -f FORMAT NAME`, trimmed ("" when it fails).
    pub fn inspect(&self, name: &str, format: &str) -> String {
        let out = self.podman(&["inspect", "-f", format, name]);
        if out.success() {
            out.stdout.trim().to_string()
        } else {
            String::new()
        }
    }

    fn cleanup(&mut self) {
        let _ = husk_tests::capture(
            self.podman_command(&["rm", "-af", "-t", "0"]),
            &self.scratch,
            Duration::from_secs(60),
        );
        // conmon and the runtime's processes name our dirs on their command lines.
        for pid in crate::pids_with_cmdline(&self.dir.display().to_string()) {
            // SAFETY: plain syscall; processes podman started for this test.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        if let Some(cg) = &self.cgroup_parent {
            husk_tests::host::remove_cgroup(cg);
        }
        // The user's processes go (and the user) before its files.
        self.user = None;
        if self.holds_host_path {
            self.holds_host_path = false;
            host_path_release();
        }
        if let Some(tmp) = self.tmp.take() {
            husk_tests::remove_temp_dir(tmp);
        }
    }
}

/// `chown -R uid:gid dir`.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(dir, Some(uid), Some(gid))
        .with_context(|| format!("chown {}", dir.display()))?;
    if dir.is_dir() && !dir.is_symlink() {
        for e in fs::read_dir(dir)? {
            chown_tree(&e?.path(), uid, gid)?;
        }
    }
    Ok(())
}

impl Drop for Podman {
    fn drop(&mut self) {
        self.cleanup();
    }
}

#[cfg(test)]
mod tests {
    use super::free_subid_start;

    #[test]
    fn subid_ranges_start_after_the_taken_ones() {
        assert_eq!(free_subid_start(""), 131072);
        assert_eq!(free_subid_start("a:100000:65536\n"), 196608);
        assert_eq!(free_subid_start("a:100000:65536\nb:300000:10\n"), 327680);
    }
}
