//! `truce-server`: parses arguments and hands over to the library.

fn main() -> std::process::ExitCode {
    truce_server::cli::main()
}
