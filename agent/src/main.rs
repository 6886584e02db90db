//! The `truce-agent` binary: parse arguments, run the command, and on
//! failure print one line `error: …` and exit non-zero. Everything else is
//! in the library.

use std::process::ExitCode;

fn main() -> ExitCode {
    match truce_agent::cli::run(std::env::args_os()) {
        Ok(code) => code,
        Err(e) => {
            // One line, whatever the error carried.
            truce_shared::console::print_error("error: ", e);
            ExitCode::FAILURE
        }
    }
}
