//! `dbbackup completions SHELL` (clap_complete) and `dbbackup man [--dir DIR]` (clap_mangen):
//! shell completions and man pages generated from the same definitions as `-h`, so they
//! never drift from the binary.

use std::path::PathBuf;

use clap::CommandFactory;
use dbbackup::Error;

/// Arguments of `completions`.
#[derive(clap::Args, Debug)]
pub struct CompletionsArgs {
    /// The shell (e.g. `dbbackup completions bash > /etc/bash_completion.d/dbbackup`)
    shell: clap_complete::Shell,
}

/// Arguments of `man`.
#[derive(clap::Args, Debug)]
pub struct ManArgs {
    /// Write dbbackup.1 and a page per subcommand (dbbackup-snapshot.1, ...) into this
    /// directory, instead of dbbackup.1 to standard output
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
}

/// Print the completion script.
pub fn completions(a: CompletionsArgs) -> anyhow::Result<()> {
    let mut cmd = super::Cli::command();
    let mut buf = Vec::new();
    clap_complete::generate(a.shell, &mut cmd, "dbbackup", &mut buf);
    stdout(&buf)
}

/// Write the man pages.
pub fn man(a: ManArgs) -> anyhow::Result<()> {
    let cmd = super::Cli::command();
    match a.dir {
        Some(dir) => {
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
            clap_mangen::generate_to(cmd, &dir)
                .map_err(|e| Error::io(format!("cannot write man pages into {}", dir.display()), e))?;
        }
        None => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(cmd)
                .render(&mut buf)
                .map_err(|e| Error::io("cannot render the man page", e))?;
            stdout(&buf)?;
        }
    }
    Ok(())
}

/// Write `bytes` to stdout; a closed pipe (`| head`) ends the process as `print!` would.
fn stdout(bytes: &[u8]) -> anyhow::Result<()> {
    print!("{}", String::from_utf8_lossy(bytes));
    Ok(())
}
