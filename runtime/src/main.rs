//! `husk`: the command line. The parser and dispatch live in [`husk::cli`], so `cargo xtask
//! dist` renders man pages and completions from the same definition.

use std::process::ExitCode;

fn main() -> ExitCode {
    husk::cli::main()
}
