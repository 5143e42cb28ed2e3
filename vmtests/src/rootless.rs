//! Rootless husk on v2 in a delegated subtree, the way systemd delegates one to a user: a
//! cgroup owned by the user (directory, cgroup.procs, cgroup.threads, cgroup.subtree_control)
//! with controllers enabled, and the user's processes already inside it. husk running as that
//! user creates the container's cgroup there and applies limits (device rules are skipped:
//! bpf(2) needs privileges); outside it, limits are refused with a message that says to
//! delegate.

use std::ffi::CString;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{chown, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use anyhow::{ensure, Context, Result};
use serde_json::json;

use crate::checks::Outcome;
use crate::harness::{
    check_file, procs, read, run_captured, Env, Out, CGROUP_ROOT, COMMAND_TIMEOUT,
};

/// The unprivileged user (the bundle's /etc/passwd has it as `user`).
const UID: u32 = 1000;
const ID: &str = "v2-rootless";

/// The delegated subtree, its launcher leaf and the user's husk state; removed on drop.
struct Delegation<'a> {
    env: &'a Env,
    top: PathBuf,
    launcher: PathBuf,
    state_root: PathBuf,
    xdg: PathBuf,
}

impl Delegation<'_> {
    fn new(env: &Env) -> Result<Delegation<'_>> {
        let top = Path::new(CGROUP_ROOT).join("husk-vm-user");
        let d = Delegation {
            env,
            launcher: top.join("launcher"),
            top,
            state_root: env.work.join("rootless-state"),
            xdg: env.work.join("rootless-xdg"),
        };
        // From here on a failure still removes whatever was made (Drop).
        d.setup()?;
        Ok(d)
    }

    fn setup(&self) -> Result<()> {
        let d = self;
        fs::create_dir(&d.top).with_context(|| format!("creating {}", d.top.display()))?;
        let control = d.top.join("cgroup.subtree_control");
        fs::write(&control, "+cpu +memory +pids")
            .with_context(|| format!("enabling controllers in {}", control.display()))?;
        fs::create_dir(&d.launcher)
            .with_context(|| format!("creating {}", d.launcher.display()))?;
        // What systemd chowns for a delegated unit (cgroup-v2.rst, "Delegation Containment").
        for path in [
            d.top.clone(),
            d.top.join("cgroup.procs"),
            d.top.join("cgroup.threads"),
            control,
            d.launcher.clone(),
            d.launcher.join("cgroup.procs"),
        ] {
            chown(&path, Some(UID), Some(UID))
                .with_context(|| format!("chown {UID} {}", path.display()))?;
        }
        for dir in [&d.state_root, &d.xdg] {
            fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            chown(dir, Some(UID), Some(UID))
                .with_context(|| format!("chown {UID} {}", dir.display()))?;
            fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
                .with_context(|| format!("chmod 700 {}", dir.display()))?;
        }
        Ok(())
    }

    /// husk as the user, started inside the launcher leaf (moved there while still root:
    /// an unprivileged process may only migrate within a subtree it owns).
    fn husk(&self, args: &[&str]) -> Result<Out> {
        let mut cmd = std::process::Command::new(&self.env.husk);
        cmd.arg("--root")
            .arg(&self.state_root)
            .args(args)
            .env("XDG_RUNTIME_DIR", &self.xdg)
            .env("HOME", &self.xdg);
        let procs = CString::new(self.launcher.join("cgroup.procs").as_os_str().as_bytes())
            .context("launcher path has a NUL")?;
        // SAFETY: the closure runs between fork and exec and calls only async-signal-safe
        // functions (open, write, close, setgroups, setgid, setuid) on data made before fork.
        unsafe {
            cmd.pre_exec(move || {
                let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                if fd < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                // "0" moves the writing process itself.
                let n = libc::write(fd, b"0".as_ptr().cast(), 1);
                let err = std::io::Error::last_os_error();
                libc::close(fd);
                if n != 1 {
                    return Err(err);
                }
                if libc::setgroups(0, std::ptr::null()) != 0
                    || libc::setgid(UID) != 0
                    || libc::setuid(UID) != 0
                {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        run_captured(cmd, None, &self.env.work, self.env.next(), COMMAND_TIMEOUT)
    }
}

impl Drop for Delegation<'_> {
    fn drop(&mut self) {
        let _ = self.husk(&["delete", "--force", ID]);
        let _ = self.husk(&["delete", "--force", "v2-rootless-undelegated"]);
        for dir in [
            self.top.join("ctr"),
            self.launcher.clone(),
            self.top.clone(),
        ] {
            let _ = fs::remove_dir(dir);
        }
        let _ = fs::remove_dir_all(&self.state_root);
        let _ = fs::remove_dir_all(&self.xdg);
        let _ = fs::remove_dir_all(self.env.work.join("bundles").join(ID));
    }
}

/// The check: see the module doc.
pub fn rootless_delegated(env: &Env) -> Result<Outcome> {
    ensure!(
        env.rootless_template.is_object(),
        "the image has no /bundle/config-rootless.json"
    );
    let d = Delegation::new(env)?;
    let mut cfg = env.rootless_template.clone();
    cfg["process"]["args"] = json!(["sleep", "300"]);
    cfg["root"]["path"] = json!(env.rootfs);
    cfg["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": UID, "size": 1}]);
    cfg["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": UID, "size": 1}]);
    cfg["linux"]["cgroupsPath"] = json!("/husk-vm-user/ctr");
    // Device rules too: an unprivileged husk cannot load the eBPF device filter and goes on
    // without it, as runc does, instead of failing the container.
    cfg["linux"]["resources"] = json!({
        "memory": {"limit": 32 << 20},
        "pids": {"limit": 10},
        "devices": [{"allow": false, "access": "rwm"}],
    });
    let bundle = env.write_bundle(ID, &cfg)?;
    let bundle_s = bundle.to_string_lossy().into_owned();

    d.husk(&["create", "--bundle", &bundle_s, ID])?.ok()?;
    d.husk(&["start", ID])?.ok()?;
    let state: serde_json::Value = serde_json::from_str(&d.husk(&["state", ID])?.ok()?.stdout)
        .context("husk state (rootless) printed invalid JSON")?;
    let pid = state["pid"]
        .as_i64()
        .and_then(|p| i32::try_from(p).ok())
        .with_context(|| format!("husk state has no pid: {state}"))?;
    let ctr = d.top.join("ctr");
    ensure!(
        ctr.is_dir() && procs(&ctr)?.contains(&pid),
        "the rootless container's init (pid {pid}) is not in {}",
        ctr.display()
    );
    check_file(&ctr, "memory.max", &(32 << 20).to_string())?;
    check_file(&ctr, "pids.max", "10")?;
    let status = read(Path::new(&format!("/proc/{pid}/status")))?;
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    ensure!(
        uid_line.split_whitespace().nth(1) == Some("1000"),
        "the rootless container's init runs as {uid_line:?}, not uid 1000"
    );
    d.husk(&["delete", "--force", ID])?.ok()?;
    ensure!(!ctr.exists(), "{} survived delete", ctr.display());

    // Limits on a cgroup outside the delegation cannot hold: refused, saying why.
    let mut cfg = cfg.clone();
    cfg["linux"]["cgroupsPath"] = json!("/husk-vm/rootless-undelegated");
    let id = "v2-rootless-undelegated";
    let bundle = env.write_bundle(id, &cfg)?;
    let out = d.husk(&["run", "--bundle", &bundle.to_string_lossy(), id])?;
    let _ = fs::remove_dir_all(&bundle);
    ensure!(
        !out.status.success() && out.stderr.contains("delegate a cgroup"),
        "{}",
        out.story("did not refuse limits on an undelegated cgroup as expected")
    );
    Ok(Outcome::Pass)
}
