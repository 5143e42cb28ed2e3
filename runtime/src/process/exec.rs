//! The last step of every container process: find the program in the container and exec it.

use std::convert::Infallible;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Process;

/// Why the program cannot be run.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// args is empty.
    #[error("args must not be empty")]
    NoArgs,
    /// Not found in PATH or not executable (runc's wording: containerd shows it to users).
    #[error("exec: {0:?}: executable file not found in $PATH")]
    NotFound(String),
    /// A path that exists but cannot be executed.
    #[error("exec: {path:?}: {reason}")]
    NotExecutable {
        /// The path.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// An argument or variable holds a NUL byte.
    #[error("exec: argument or environment variable contains a NUL byte")]
    Nul,
    /// execve(2) itself failed.
    #[error("exec {path:?}: {source}")]
    Exec {
        /// The program.
        path: PathBuf,
        /// Why.
        source: nix::Error,
    },
}

/// The process environment, with HOME added from the container's /etc/passwd when missing,
/// as runc does.
pub fn environment(process: &Process) -> Vec<String> {
    let mut env = process.env().clone().unwrap_or_default();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        let home = super::user::home_for(process.user().uid()).unwrap_or_else(|| "/".to_string());
        env.push(format!("HOME={home}"));
    }
    env
}

/// Resolves args[0] like exec.LookPath with the process's own PATH, in the current root.
pub fn find(args: &[String], env: &[String]) -> Result<PathBuf, ExecError> {
    let name = args.first().ok_or(ExecError::NoArgs)?;
    if name.contains('/') {
        let p = PathBuf::from(name);
        return check_executable(&p).map(|_| p);
    }
    let path_var = env
        .iter()
        .rev()
        .find_map(|e| e.strip_prefix("PATH="))
        .unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path_var.split(':') {
        let dir = if dir.is_empty() { "." } else { dir };
        let candidate = Path::new(dir).join(name);
        if check_executable(&candidate).is_ok() {
            return Ok(candidate);
        }
    }
    Err(ExecError::NotFound(name.clone()))
}

fn check_executable(p: &Path) -> Result<(), ExecError> {
    let meta = std::fs::metadata(p).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            ExecError::NotFound(p.display().to_string())
        } else {
            ExecError::NotExecutable {
                path: p.to_path_buf(),
                reason: e.to_string(),
            }
        }
    })?;
    if meta.is_dir() {
        return Err(ExecError::NotExecutable {
            path: p.to_path_buf(),
            reason: "is a directory".into(),
        });
    }
    if meta.permissions().mode() & 0o111 == 0 {
        return Err(ExecError::NotExecutable {
            path: p.to_path_buf(),
            reason: "permission denied".into(),
        });
    }
    Ok(())
}

/// Replaces this process with the program; returns only on failure.
pub fn exec(program: &Path, args: &[String], env: &[String]) -> ExecError {
    match try_exec(program, args, env) {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

fn try_exec(program: &Path, args: &[String], env: &[String]) -> Result<Infallible, ExecError> {
    let path = CString::new(program.as_os_str().as_bytes()).map_err(|_| ExecError::Nul)?;
    let to_c = |v: &[String]| -> Result<Vec<CString>, ExecError> {
        v.iter()
            .map(|s| CString::new(s.as_bytes()).map_err(|_| ExecError::Nul))
            .collect()
    };
    let argv = to_c(args)?;
    let envp = to_c(env)?;
    nix::unistd::execve(&path, &argv, &envp).map_err(|source| ExecError::Exec {
        path: program.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_in_path_and_reports_missing() {
        let env = vec!["PATH=/nonexistent:/bin:/usr/bin".to_string()];
        let found = find(&["sh".to_string()], &env).expect("sh is on PATH");
        assert!(found.ends_with("sh"));
        let err = find(&["no-such-program-husk".to_string()], &env).expect_err("missing");
        assert_eq!(
            err.to_string(),
            "exec: \"no-such-program-husk\": executable file not found in $PATH"
        );
        assert!(find(&[], &env).is_err());
        assert!(find(&["/etc".to_string()], &env).is_err());
    }
}
