//! Library error type: every failure carries a kind that the binary maps to a sysexits code.

use std::fmt;

/// What class of failure an [`Error`] is; decides the process exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Anything without a more specific kind (exit 1).
    General,
    /// Bad arguments or a bad combination of them (exit 2).
    Usage,
    /// Stored data failed authentication, hashing or decoding (exit 65).
    Corrupt,
    /// Something asked for does not exist: repository, snapshot, file (exit 66).
    NotFound,
    /// Storage or a database could not be reached (exit 69).
    Unavailable,
    /// Something that must not exist already does, or cannot be created (exit 73).
    CantCreate,
    /// Local or remote I/O failed (exit 74).
    Io,
    /// A transient condition; retrying later may succeed (exit 75).
    Temporary,
    /// Wrong password, missing permission (exit 77).
    Permission,
    /// Configuration is missing or invalid (exit 78).
    Config,
}

impl ErrorKind {
    /// The sysexits code for this kind.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorKind::General => 1,
            ErrorKind::Usage => 2,
            ErrorKind::Corrupt => 65,
            ErrorKind::NotFound => 66,
            ErrorKind::Unavailable => 69,
            ErrorKind::CantCreate => 73,
            ErrorKind::Io => 74,
            ErrorKind::Temporary => 75,
            ErrorKind::Permission => 77,
            ErrorKind::Config => 78,
        }
    }

    /// The kind's name in JSON output and logs (stable: scripts match on it).
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::General => "general",
            ErrorKind::Usage => "usage",
            ErrorKind::Corrupt => "corrupt",
            ErrorKind::NotFound => "not_found",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::CantCreate => "cant_create",
            ErrorKind::Io => "io",
            ErrorKind::Temporary => "temporary",
            ErrorKind::Permission => "permission",
            ErrorKind::Config => "config",
        }
    }
}

/// The library's error: a kind plus a message that says what failed, on which object, and
/// what to do next.
#[derive(Debug, thiserror::Error)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    #[source]
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    hint: Option<Hint>,
}

/// What the operator can do about an error, in the library's terms (what to change, not which
/// flag or key changes it): the binary says it in its own words. Not part of the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    /// A retention policy needs at least one rule.
    KeepRules,
    /// The policy removes every snapshot of a group: allow that explicitly, if intended.
    AllowRemoveAll,
    /// Name the cluster this repository backs up by its system identifier.
    SystemId,
    /// Point-in-time recovery starts from a physical snapshot: take one.
    TakePhysicalSnapshot,
    /// A snapshot of several entries restores into a directory.
    RestoreIntoDirectory,
    /// The restore target exists: choose another, or allow overwriting it.
    TargetExists,
    /// No key opens with the password: check where it is read from.
    Password,
    /// PostgreSQL's client tools were not found: say where they are.
    ClientTools,
    /// File-by-file backups cannot take tablespaces: take a plain physical snapshot.
    PlainPhysical,
    /// Several databases are dumped at once by dumping all of them in parallel.
    ParallelDumps,
    /// The temporary directory is not writable, or too small: choose another.
    TempDir,
    /// MariaDB refused the credentials: check the user, its password and allowed hosts.
    MysqlCredentials,
    /// The MariaDB server cannot be reached: check its address.
    MysqlAddress,
    /// The accounts (globals) cannot be dumped: skip them.
    SkipGlobals,
    /// A lock that may be a live holder's: removable by hand once no process runs.
    RemoveAllLocks,
    /// A stored object failed verification: read everything to see what the damage reaches.
    ReadData,
    /// PostgreSQL refused the credentials: check the user, its password and pg_hba.conf.
    PgCredentials,
    /// The PostgreSQL server cannot be reached: check its address.
    PgAddress,
    /// The data directory to restore into is not empty: choose another, or write over it.
    PgdataNotEmpty,
    /// The snapshot is not a database dump: write it out and load it by hand.
    LoadByHand,
    /// The snapshot holds several databases: choose one, or load them all.
    ChooseDatabase,
    /// The database to load into does not exist: create it.
    CreateDatabase,
    /// The database to load into holds objects: load into a new one, or into this one anyway.
    LoadIntoNonEmpty,
    /// Leaving ownership out is PostgreSQL's; MySQL/MariaDB dumps keep their definers.
    NoOwnerIsPostgres,
    /// `latest` would be a guess between hosts or engines: say which, or give an id.
    ChooseSource,
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        if let Some(src) = &self.source {
            write!(f, ": {src}")?;
        }
        Ok(())
    }
}

/// `e` and its causes on one line, each said once: an error whose text already shows its
/// source (this crate's, OpenDAL's) does not get it repeated, one whose text does not
/// (reqwest's, hyper's) gets it appended.
pub fn one_line(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = String::new();
    let mut next = Some(e);
    while let Some(cause) = next {
        let text = cause.to_string();
        if !text.is_empty() && !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

/// Shorthand result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// A new error of `kind` with `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Error {
            kind,
            message: message.into(),
            source: None,
            hint: None,
        }
    }

    /// Attach what the operator can do about it.
    pub fn with_hint(mut self, hint: Hint) -> Self {
        self.hint = Some(hint);
        self
    }

    /// What the operator can do about it, when the library knows.
    pub fn hint(&self) -> Option<Hint> {
        self.hint
    }

    /// Attach an underlying cause, shown after the message.
    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    /// The error's kind.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    /// The message without the cause.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Stored object `object` failed verification.
    pub fn corrupt(object: impl fmt::Display, what: impl fmt::Display) -> Self {
        Error::new(ErrorKind::Corrupt, format!("corrupt object {object}: {what}")).with_hint(Hint::ReadData)
    }

    /// Shorthand constructors for each kind.
    pub fn usage(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::Usage, m)
    }
    /// See [`ErrorKind::NotFound`].
    pub fn not_found(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::NotFound, m)
    }
    /// See [`ErrorKind::Config`].
    pub fn config(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::Config, m)
    }
    /// See [`ErrorKind::General`].
    pub fn general(m: impl Into<String>) -> Self {
        Error::new(ErrorKind::General, m)
    }
    /// Local I/O on `what` failed.
    pub fn io(what: impl fmt::Display, e: std::io::Error) -> Self {
        let kind = match e.kind() {
            std::io::ErrorKind::NotFound => ErrorKind::NotFound,
            std::io::ErrorKind::PermissionDenied | std::io::ErrorKind::ReadOnlyFilesystem => ErrorKind::Permission,
            std::io::ErrorKind::AlreadyExists => ErrorKind::CantCreate,
            _ => ErrorKind::Io,
        };
        Error::new(kind, format!("{what}")).with_source(e)
    }
}

/// Attach context to foreign errors.
pub trait Context<T> {
    /// Map the error to an [`Error`] of `kind` with `message`.
    fn ctx(self, kind: ErrorKind, message: impl FnOnce() -> String) -> Result<T>;
}

impl<T, E: std::error::Error + Send + Sync + 'static> Context<T> for std::result::Result<T, E> {
    fn ctx(self, kind: ErrorKind, message: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| Error::new(kind, message()).with_source(e))
    }
}
