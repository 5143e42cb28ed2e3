//! An interactive terminal session for `docker run -it` / `podman run -it`: a private tmux
//! server (its own socket in a temp dir) runs the command in a window of a known size; the test
//! types with `send-keys` and reads the screen with `capture-pane`, as a person at a terminal
//! would. Dropping a [`Tmux`] kills its server.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context, Result};

/// tmux from PATH (Debian's `tmux` package).
pub fn tmux_bin() -> Option<PathBuf> {
    husk_tests::which("tmux")
}

/// A tmux server with one window running a command.
pub struct Tmux {
    bin: PathBuf,
    socket: PathBuf,
    running: bool,
}

impl Tmux {
    /// Starts a server on `socket` whose one window (`cols` x `rows`) runs `sh -c SCRIPT` with
    /// `env` added to tmux's environment. The window stays open after the script ends (the
    /// script should print its exit status, which the test then reads from the screen).
    pub fn start(
        socket: &Path,
        env: &[(&str, &str)],
        script: &str,
        cols: u16,
        rows: u16,
    ) -> Result<Tmux> {
        let bin = tmux_bin().context("tmux is not installed")?;
        let mut cmd = Command::new(&bin);
        cmd.arg("-S")
            .arg(socket)
            // No user or system config: the test must not depend on anyone's tmux.conf.
            .args(["-f", "/dev/null", "new-session", "-d", "-x"])
            .arg(cols.to_string())
            .arg("-y")
            .arg(rows.to_string())
            .arg("sh")
            .arg("-c")
            // `sleep` keeps the pane (and its text) after the command; Drop kills the server.
            .arg(format!("{script}\nsleep 3600"))
            .envs(env.iter().copied())
            .env("TERM", "xterm")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let out = cmd.output().context("starting tmux")?;
        ensure!(
            out.status.success(),
            "tmux new-session failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(Tmux {
            bin,
            socket: socket.to_path_buf(),
            running: true,
        })
    }

    fn tmux(&self, args: &[&str]) -> Result<String> {
        let out = Command::new(&self.bin)
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .context("running tmux")?;
        ensure!(
            out.status.success(),
            "tmux {} failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Types `text` and presses Enter.
    pub fn type_line(&self, text: &str) -> Result<()> {
        // -l: literal, so words like "Enter" or "C-c" in `text` are not key names.
        self.tmux(&["send-keys", "-l", text])?;
        self.tmux(&["send-keys", "Enter"])?;
        Ok(())
    }

    /// The visible screen.
    pub fn screen(&self) -> String {
        self.tmux(&["capture-pane", "-p"]).unwrap_or_default()
    }

    /// Waits until the screen contains `needle`; the screen on success, an error with the
    /// screen when `timeout` passes.
    pub fn wait_for(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            let screen = self.screen();
            if screen.contains(needle) {
                return Ok(screen);
            }
            if Instant::now() > deadline {
                bail!("{needle:?} did not appear within {timeout:?}; the screen:\n{screen}");
            }
            sleep(Duration::from_millis(100));
        }
    }

    /// Kills the server and everything running in it.
    pub fn kill(&mut self) {
        if self.running {
            self.running = false;
            let _ = self.tmux(&["kill-server"]);
            let _ = std::fs::remove_file(&self.socket);
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        self.kill();
    }
}
