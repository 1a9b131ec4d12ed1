//! What an operation on the repository is (repo-format §9): the name its lock carries, and
//! what it may do to others (write data others deduplicate against, remove, exclude all).

/// What a lock is held for; its name is the `operation` of the lock object (repo-format
/// §9). What an operation may do to others is decided here, from the variant, never from a
/// name spelled at the call site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    /// A snapshot: writes packs, index segments and a manifest.
    Snapshot,
    /// `wal push`: writes like a snapshot.
    WalPush,
    /// Removes snapshots.
    Forget,
    /// Removes data (and restores missing manifest copies).
    Prune,
    /// Rewrites the index or snapshots; excludes everything.
    Repair,
    /// Reads a snapshot back.
    Restore,
    /// Verifies the repository.
    Check,
    /// `wal fetch`: reads WAL back.
    WalFetch,
}

impl Operation {
    /// Every operation.
    pub const ALL: [Operation; 8] = [
        Operation::Snapshot,
        Operation::WalPush,
        Operation::Forget,
        Operation::Prune,
        Operation::Repair,
        Operation::Restore,
        Operation::Check,
        Operation::WalFetch,
    ];

    /// The name stored in lock objects.
    pub fn name(self) -> &'static str {
        match self {
            Operation::Snapshot => "snapshot",
            Operation::WalPush => "wal-push",
            Operation::Forget => "forget",
            Operation::Prune => "prune",
            Operation::Repair => "repair",
            Operation::Restore => "restore",
            Operation::Check => "check",
            Operation::WalFetch => "wal-fetch",
        }
    }

    /// The operation a stored name stands for (`None`: unreadable, or of a later version).
    pub fn from_name(name: &str) -> Option<Operation> {
        Operation::ALL.into_iter().find(|o| o.name() == name)
    }

    /// Writes data other writers may deduplicate against: prune's sweep waits for a writer
    /// that may not have seen a deletion plan (repo-format §10.3).
    pub fn is_writer(self) -> bool {
        matches!(self, Operation::Snapshot | Operation::WalPush)
    }

    /// Removes snapshots or data: never two at once (prune restores missing manifest copies,
    /// which must not race a forget deleting them).
    pub fn removes(self) -> bool {
        matches!(self, Operation::Prune | Operation::Forget)
    }

    /// Holds an exclusive lock, which excludes every other.
    pub fn exclusive(self) -> bool {
        matches!(self, Operation::Repair)
    }

    /// Only reads: may go on without a lock where it cannot write one.
    pub fn reads_only(self) -> bool {
        matches!(self, Operation::Restore | Operation::Check | Operation::WalFetch)
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_those_of_repo_format_section_9() {
        let names: Vec<&str> = Operation::ALL.iter().map(|o| o.name()).collect();
        assert_eq!(
            names,
            [
                "snapshot",
                "wal-push",
                "forget",
                "prune",
                "repair",
                "restore",
                "check",
                "wal-fetch"
            ]
        );
        for o in Operation::ALL {
            assert_eq!(Operation::from_name(o.name()), Some(o));
        }
        assert_eq!(Operation::from_name("Snapshot"), None);
    }
}
