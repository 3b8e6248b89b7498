//! The on-disk cache of pre-initialisation snapshots: a warm start reads the
//! snapshot a previous start made instead of running `wizer-initialize` again
//! (for the built-in content filter, 0.5–0.8 s of the start, the largest part).
//!
//! A snapshot is a function of the component's bytes, the step's settings
//! and memory limit (the initialiser may read both) and the engine (the
//! wasmtime version and settings wizer ran under): the key hashes all of them,
//! and WASI randomness during initialisation is seeded from the bytes, so the
//! same inputs give the same snapshot. Files live in `<cache-dir>-preinit`,
//! beside wasmtime's compile cache, whose cleaner deletes files it did not
//! write. A file that cannot be read or compiled is deleted and the snapshot
//! made afresh; writes go through a temporary file and a rename, so a crash
//! never leaves half a snapshot; at most [`MAX_SNAPSHOTS`] files are kept,
//! the least recently written deleted first.

use std::hash::{Hash as _, Hasher as _};
use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};

/// Snapshots kept on disk at most (a snapshot is a whole component, e.g.
/// 21 MB for the content filter): enough for every step and version of a
/// host and a few previous configurations.
pub const MAX_SNAPSHOTS: usize = 32;

/// The snapshot cache directory of one runtime.
#[derive(Debug, Clone)]
pub(super) struct SnapshotCache {
    /// `<cache-dir>-preinit`.
    dir: PathBuf,
}

impl SnapshotCache {
    /// The cache beside the compile cache `compile_cache`.
    pub(super) fn beside(compile_cache: &Path) -> Self {
        let mut name = compile_cache.as_os_str().to_owned();
        name.push("-preinit");
        Self {
            dir: PathBuf::from(name),
        }
    }

    /// The key of a snapshot of `bytes` with `config` and `memory_limit`
    /// made on `engine`.
    pub(super) fn key(
        engine: &wasmtime::Engine,
        bytes: &[u8],
        config: &[(String, String)],
        memory_limit: u64,
    ) -> String {
        let mut engine_hash = std::collections::hash_map::DefaultHasher::new();
        engine
            .precompile_compatibility_hash()
            .hash(&mut engine_hash);
        let mut digest = Sha256::new();
        digest.update(b"stephost-preinit-v1\0");
        digest.update(env!("CARGO_PKG_VERSION").as_bytes());
        digest.update(engine_hash.finish().to_le_bytes());
        digest.update(memory_limit.to_le_bytes());
        for (k, v) in config {
            for part in [k, v] {
                digest.update((part.len() as u64).to_le_bytes());
                digest.update(part.as_bytes());
            }
        }
        digest.update(Sha256::digest(bytes));
        digest
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn path(&self, key: &str) -> PathBuf {
        self.dir.join(format!("{key}.wasm"))
    }

    /// The snapshot stored under `key`, if any.
    pub(super) fn get(&self, key: &str) -> Option<Vec<u8>> {
        std::fs::read(self.path(key)).ok()
    }

    /// Forget the snapshot under `key` (it did not compile).
    pub(super) fn remove(&self, key: &str) {
        let _ = std::fs::remove_file(self.path(key));
    }

    /// Store `snapshot` under `key`, then delete the oldest files beyond
    /// [`MAX_SNAPSHOTS`]. Failures only cost the next start its time: logged,
    /// never an error.
    pub(super) fn put(&self, key: &str, snapshot: &[u8]) {
        let written = std::fs::create_dir_all(&self.dir).and_then(|()| {
            let tmp = self.dir.join(format!(".{key}.{}.tmp", std::process::id()));
            std::fs::write(&tmp, snapshot)?;
            std::fs::rename(&tmp, self.path(key))
        });
        if let Err(e) = written {
            tracing::warn!(error = %e, dir = %self.dir.display(), "cannot store the pre-initialisation snapshot");
            return;
        }
        self.evict();
    }

    /// Delete the least recently written snapshots beyond [`MAX_SNAPSHOTS`].
    fn evict(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut files: Vec<(std::time::SystemTime, PathBuf)> = entries
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "wasm"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        if files.len() <= MAX_SNAPSHOTS {
            return;
        }
        files.sort();
        for (_, path) in &files[..files.len() - MAX_SNAPSHOTS] {
            let _ = std::fs::remove_file(path);
        }
    }
}
