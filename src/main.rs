//! The `dbbackup` binary: parses arguments, sets up logging and progress, runs one command,
//! and maps library errors to sysexits exit codes.

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    // Everything this process creates locally is private: files 0600, directories 0700.
    unsafe {
        libc::umask(0o077);
    }
    cli::run()
}
