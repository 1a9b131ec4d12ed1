//! The storage engine. This file: an opened repository (storage, config, unlocked keys) and
//! whole-object load/save. Beside it: `manifests` (snapshot manifests, their registry
//! copies and cache), `keys` (the key ring), `lock` (operations and their locks), `index`
//! (the index segments and the local index cache), `blob` (chunk codec), `packer` (pack
//! writer), `pack_reader` and `blob_reader` (reading packs and chunks back, verified).

pub mod blob;
pub mod blob_reader;
pub mod index;
pub mod keys;
pub(crate) mod liveness;
pub mod lock;
pub mod manifest_cache;
mod manifests;
pub mod objects;
pub mod operation;
pub mod pack_reader;
pub mod packer;
pub mod select;
pub mod session;

use std::sync::atomic::AtomicU64;

use crate::crypto::{KdfParams, Keys, MasterKey};
use crate::error::{Error, ErrorKind, Hint, Result};
use crate::format::config::{ChunkerParams, Config};
use crate::format::keyfile::KeyFile;
use crate::format::object::path_of;
use crate::format::{open_object, seal_object, Id, ObjectKind, RepoObject};
use crate::repo::manifest_cache::ManifestCache;
use crate::storage::Store;
pub use manifests::{ManifestCopy, REGISTRY_DIR};

/// An unlocked repository.
pub struct Repository {
    store: Store,
    config: Config,
    master: MasterKey,
    keys: Keys,
    key_id: Id,
    /// Sealed manifests kept on local disk ([`Repository::use_cache_dir`]).
    manifest_cache: Option<ManifestCache>,
    /// Manifests read from storage (not from the cache) since the repository was opened.
    manifest_reads: AtomicU64,
}

/// Options for `init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// Chunker parameters.
    pub chunker: ChunkerParams,
    /// Default zstd level.
    pub compression_level: i32,
    /// Target pack size in bytes.
    pub pack_size: u32,
    /// Argon2id cost of the first key.
    pub kdf: KdfParams,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::default(),
            compression_level: 3,
            pack_size: 16 << 20,
            kdf: KdfParams::default(),
        }
    }
}

impl Repository {
    /// Create a new repository in `store`, unlocked by `password`. Refuses (exit 73) when one
    /// exists there already.
    pub fn init(store: Store, password: &[u8], opts: &InitOptions) -> Result<Repository> {
        if password.is_empty() {
            return Err(Error::usage("an empty password is not allowed"));
        }
        let config = Self::new_config(opts)?;
        Self::refuse_existing(&store)?;
        Self::refuse_non_empty(&store)?;
        let master = MasterKey::generate();
        let kf = KeyFile::wrap(&master, password, &config.id, opts.kdf)?;
        let bytes = kf.encode()?;
        let key_id = Id::of_stored(&bytes);
        // Key first, config last: a repository exists once its config does.
        store.write(&format!("keys/{key_id}"), bytes, false)?;
        store.write("config", config.encode()?, true)?;
        Ok(Self::unlocked(store, config, master, key_id))
    }

    /// A repository whose master key `master` (from key file `key_id`) is unlocked.
    fn unlocked(store: Store, config: Config, master: MasterKey, key_id: Id) -> Repository {
        let keys = master.derive();
        Repository {
            store,
            config,
            master,
            keys,
            key_id,
            manifest_cache: None,
            manifest_reads: AtomicU64::new(0),
        }
    }

    /// The config a repository made with `opts` gets (a new random id), once every option
    /// is known to be in range: a bad option is refused before anything is written.
    pub fn new_config(opts: &InitOptions) -> Result<Config> {
        let mut config = Config::new(opts.chunker, opts.compression_level);
        config.pack_size = opts.pack_size;
        config.validate()?;
        opts.kdf.validate()?;
        Ok(config)
    }

    /// Error (exit 73) when `store` holds anything: a repository is made only in an empty
    /// place, never among other files.
    pub fn refuse_non_empty(store: &Store) -> Result<()> {
        if !store.is_empty()? {
            return Err(Error::new(
                ErrorKind::CantCreate,
                format!(
                    "{} is not empty and holds no repository; a repository is made only in an empty directory or bucket prefix",
                    store.display()
                ),
            ));
        }
        Ok(())
    }

    /// Error (exit 73) when `store` already holds a repository.
    pub fn refuse_existing(store: &Store) -> Result<()> {
        if store.exists("config")? {
            return Err(Error::new(
                ErrorKind::CantCreate,
                format!(
                    "a repository already exists at {}; refusing to overwrite it",
                    store.display()
                ),
            ));
        }
        Ok(())
    }

    /// Open and unlock the repository in `store` with `password`.
    pub fn open(store: Store, password: &[u8]) -> Result<Repository> {
        let config = Self::read_config(&store)?;
        Self::open_with_config(store, config, password)
    }

    /// [`Repository::open`] with a config already read by [`Repository::read_config`].
    pub fn open_with_config(store: Store, config: Config, password: &[u8]) -> Result<Repository> {
        let names = store.list("keys")?;
        if names.is_empty() {
            return Err(Error::new(
                ErrorKind::Corrupt,
                format!("repository {} has no key files", store.display()),
            ));
        }
        let mut damaged = None;
        for (name, _) in &names {
            let kf = match store
                .read(&format!("keys/{name}"))
                .and_then(|b| KeyFile::decode(name, &b))
            {
                Ok(k) => k,
                Err(e) if e.kind() == ErrorKind::Corrupt => {
                    tracing::warn!(key = %name, error = %e, "skipping damaged key file");
                    damaged = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            if let Some(master) = kf.unwrap(password, &config.id)? {
                let key_id = name.parse()?;
                return Ok(Self::unlocked(store, config, master, key_id));
            }
        }
        let mut msg = format!("wrong password: no key of repository {} opens with it", store.display());
        if let Some(d) = damaged {
            msg.push_str(&format!("; note: {d}"));
        }
        Err(Error::new(ErrorKind::Permission, msg).with_hint(Hint::Password))
    }

    /// Read and validate `config`.
    pub fn read_config(store: &Store) -> Result<Config> {
        match store.read("config") {
            Ok(b) => Config::decode(&b),
            Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::not_found(format!(
                "no repository at {}: `config` not found (create one with `dbbackup init`)",
                store.display()
            ))),
            Err(e) => Err(e),
        }
    }

    /// The storage.
    pub fn store(&self) -> &Store {
        &self.store
    }
    /// The config.
    pub fn config(&self) -> &Config {
        &self.config
    }
    /// The sub-keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
    /// The master key (for wrapping under a new password).
    pub fn master(&self) -> &MasterKey {
        &self.master
    }
    /// Id of the key file that unlocked this repository.
    pub fn key_id(&self) -> Id {
        self.key_id
    }

    /// Encode, seal and store a whole object; returns its id.
    pub fn save<T: RepoObject>(&self, object: &T) -> Result<Id> {
        self.save_object(T::KIND, &object.encode()?)
    }

    /// Load, verify, open and decode object `id` of type `T`.
    pub fn load<T: RepoObject>(&self, id: &Id) -> Result<T> {
        let plain = self.load_object(T::KIND, id)?;
        T::decode(&path_of::<T>(id), &plain)
    }

    /// Seal and store a whole object's payload as it is; returns its id. [`Repository::save`]
    /// is the typed path.
    pub fn save_object(&self, kind: ObjectKind, payload: &[u8]) -> Result<Id> {
        let sealed = seal_object(&self.keys, kind, payload)?;
        let id = Id::of_stored(&sealed);
        self.store.write(&format!("{}/{id}", kind.dir()), sealed, false)?;
        Ok(id)
    }

    /// Load, verify and open a whole object.
    pub fn load_object(&self, kind: ObjectKind, id: &Id) -> Result<Vec<u8>> {
        let raw = self.store.read(&format!("{}/{id}", kind.dir()))?;
        open_object(&self.keys, kind, &id.to_hex(), &raw)
    }

    /// Ids of all objects of `kind`.
    pub fn list_ids(&self, kind: ObjectKind) -> Result<Vec<Id>> {
        self.ids_in(kind.dir())
    }

    fn ids_in(&self, dir: &str) -> Result<Vec<Id>> {
        Ok(self
            .store
            .list(dir)?
            .into_iter()
            .filter_map(|(n, _)| n.parse().ok())
            .collect())
    }

    /// Every pack in storage with its size.
    pub fn pack_sizes(&self) -> Result<std::collections::BTreeMap<Id, u64>> {
        Ok(self
            .store
            .list("data")?
            .into_iter()
            .filter_map(|(n, s)| n.rsplit('/').next().and_then(|x| x.parse().ok()).map(|id| (id, s)))
            .collect())
    }
}
