//! Processes husk starts: the fork model, the in-container init sequence and each process attribute.

pub mod capabilities;
pub mod cloned_binary;
pub mod console;
pub mod exe_switch;
pub mod exec;
pub mod fork;
pub mod hostname;
pub mod init;
pub mod ioprio;
pub mod keyring;
pub mod no_new_privs;
pub mod oom_score_adj;
pub mod personality;
pub mod rlimits;
pub mod scheduler;
pub mod sync;
pub mod timens;
pub mod tty;
pub mod user;
