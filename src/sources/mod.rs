//! Where snapshot streams come from, and where database restores go: a user's command, and
//! the database engines' own tools driven through pipes (never a shell, never a password on
//! their command line).

pub mod command;
pub mod dump;
pub mod load;
pub mod mysql;
pub mod mysql_load;
pub mod names;
pub mod pg_backup;
pub mod pgdata;
mod pgdata_files;
pub mod physical;
pub mod postgres;
pub mod postgres_load;
pub mod process;

pub use command::CommandSource;
