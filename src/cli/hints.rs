//! The library's hints said in the command line's words: which flag, environment variable or
//! command does what the hint asks.

use dbbackup::{Error, Hint};

/// What to do about an error with `hint`.
pub fn say(hint: Hint) -> &'static str {
    match hint {
        Hint::KeepRules => {
            "give at least one of --keep-last, --keep-hourly, --keep-daily, --keep-weekly, --keep-monthly, \
             --keep-yearly, --keep-within, --keep-tag"
        }
        Hint::AllowRemoveAll => "add --allow-remove-all if that is intended",
        Hint::SystemId => {
            "name the cluster this repository backs up with --system-id \
             (SELECT system_identifier FROM pg_control_system() on it)"
        }
        Hint::TakePhysicalSnapshot => "take one with `dbbackup snapshot --physical`",
        Hint::RestoreIntoDirectory => "restore it into a directory with --target DIR",
        Hint::TargetExists => "choose another --target or pass --overwrite",
        Hint::Password => "check DBBACKUP_PASSWORD, --password-file or --password-command",
        Hint::ClientTools => "set --bin-dir to PostgreSQL's client tools",
        Hint::PlainPhysical => "take `snapshot --physical` without --mode",
        Hint::ParallelDumps => "use --all --jobs N to dump several databases at once",
        Hint::TempDir => "point --temp-dir at a writable directory on a file system with room for the dump",
        Hint::MysqlCredentials => {
            "check the user (--user or the option files) and its password in MYSQL_PWD, ~/.my.cnf or the \
             file given with --defaults-file, and the account's allowed hosts"
        }
        Hint::MysqlAddress => "check --host/--port (or the option files) and that the server is running",
        Hint::SkipGlobals => "or skip the accounts with --no-globals",
        Hint::RemoveAllLocks => "once no dbbackup process is running, `dbbackup unlock --remove-all` removes it",
        Hint::ReadData => "run `dbbackup check --read-data` to see what it affects",
        Hint::PgCredentials => {
            "check the user (--user, PGUSER) and its password in PGPASSWORD, ~/.pgpass (PGPASSFILE) or the \
             service file, and the server's pg_hba.conf"
        }
        Hint::PgAddress => "check --host/--port (PGHOST/PGPORT) and that the server is running",
        Hint::PgdataNotEmpty => "restore into an empty directory, or pass --force to write over it",
        Hint::LoadByHand => "restore it with --target and load it by hand",
        Hint::ChooseDatabase => "choose one with --database, or restore them all with --all",
        Hint::CreateDatabase => "add --create to create it",
        Hint::LoadIntoNonEmpty => {
            "restore into a new database (--create), or pass --force (with --clean to drop the dumped objects first)"
        }
        Hint::NoOwnerIsPostgres => "--no-owner applies to PostgreSQL; leave it out",
        Hint::ChooseSource => "choose with --snapshot-host, --engine or --name, or give the snapshot's id",
    }
}

/// The library error in `e`'s chain, if any (the first: the one that says what failed).
pub fn library_error(e: &anyhow::Error) -> Option<&Error> {
    e.chain().find_map(|c| c.downcast_ref::<Error>())
}
