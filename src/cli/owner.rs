//! The ownership guard of local repositories: a command run by an OS user other than the one
//! that owns the repository directory would leave files the owner cannot read or replace
//! (a `prune` as root on a repository the `postgres` user archives WAL into stops archiving).
//! Commands that write refuse before writing anything; commands that only read go on without
//! a lock, so they leave nothing behind. `--allow-other-owner` lets both go on as usual.

use std::os::unix::fs::MetadataExt;

use dbbackup::storage::Location;
use dbbackup::{Error, ErrorKind};

/// The owner of the local repository at `loc` when it is not this process's effective user:
/// `(owner, me)` as names (or `uid N`).
pub fn other_owner(loc: &Location) -> Option<(String, String)> {
    let root = loc.local.as_ref()?;
    let owner = std::fs::metadata(root).ok()?.uid();
    let me = uzers::get_effective_uid();
    (owner != me).then(|| (name(owner), name(me)))
}

fn name(uid: u32) -> String {
    match uzers::get_user_by_uid(uid) {
        Some(u) => format!("`{}` (uid {uid})", u.name().to_string_lossy()),
        None => format!("uid {uid}"),
    }
}

/// The refusal for a command that writes.
pub fn refusal(loc: &Location, owner: &str, me: &str) -> Error {
    Error::new(
        ErrorKind::Permission,
        format!(
            "the repository {} belongs to OS user {owner}, and this command runs as {me}: files it wrote \
             would belong to {me}, and the owner's own commands (such as PostgreSQL's archive_command) \
             could no longer use them. Run it as the owner (e.g. `sudo -u <owner> dbbackup ...`), or \
             pass --allow-other-owner if you mean to",
            loc.display
        ),
    )
}
