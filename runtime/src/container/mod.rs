//! A container as husk keeps it between commands: its state file and the `--root` store.

pub mod state;
pub mod status;
pub mod store;

pub use state::State;
pub use status::Status;
pub use store::{ContainerDir, Store};
