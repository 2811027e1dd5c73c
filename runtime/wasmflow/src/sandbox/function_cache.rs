//! Cranelift's incremental compilation cache, on disk.
//!
//! A component built by `wasmflow build` is the engine plus a few functions,
//! so compiling it from scratch repeats ~1 s of work already done for the
//! engine. Cranelift can reuse compiled functions whose code is unchanged;
//! this store keeps them in one append-only file in the compile cache
//! directory, shared by every process. Records are framed with their
//! lengths and a checksum, each appended with one `write` on an `O_APPEND`
//! descriptor (so concurrent processes do not interleave them); a torn or
//! damaged tail is ignored. The map is loaded when Cranelift first asks and
//! dropped again after each compile, so a run that only loads cached code
//! pays nothing.

use std::borrow::Cow;
use std::collections::HashMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;

use sha2::{Digest, Sha256};
use wasmtime::CacheStore;

const MAGIC: &[u8; 4] = b"wfc1";
/// Past this size the file takes no more records (it is a cache: deleting
/// it is always safe).
const MAX_FILE_BYTES: u64 = 512 << 20;

/// Compiled functions by Cranelift's key.
#[derive(Debug)]
pub struct FunctionCache {
    path: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    loaded: Option<HashMap<Vec<u8>, Vec<u8>>>,
    pending: Vec<u8>,
    stats: CacheStats,
}

/// What the cache did since the engine was made.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Functions Cranelift looked up.
    pub lookups: u64,
    /// Of those, found compiled.
    pub hits: u64,
}

impl FunctionCache {
    /// A cache kept in `path` (created on the first flush).
    pub fn new(path: PathBuf) -> FunctionCache {
        FunctionCache {
            path,
            state: Mutex::new(State::default()),
        }
    }

    /// Appends what was inserted since the last flush and frees the map.
    pub fn flush(&self) -> std::io::Result<()> {
        let Ok(mut state) = self.state.lock() else {
            return Ok(());
        };
        state.loaded = None;
        let pending = std::mem::take(&mut state.pending);
        if pending.is_empty() {
            return Ok(());
        }
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.path)?;
        if file.metadata()?.len() > MAX_FILE_BYTES {
            return Ok(());
        }
        file.write_all(&pending)
    }

    /// Lookups and hits so far.
    pub fn stats(&self) -> CacheStats {
        self.state.lock().map(|s| s.stats).unwrap_or_default()
    }

    fn load(&self) -> HashMap<Vec<u8>, Vec<u8>> {
        let bytes = std::fs::read(&self.path).unwrap_or_default();
        parse(&bytes)
    }
}

fn checksum(key: &[u8], value: &[u8]) -> [u8; 8] {
    let mut sha = Sha256::new();
    sha.update(key);
    sha.update(value);
    let mut out = [0u8; 8];
    out.copy_from_slice(&sha.finalize()[..8]);
    out
}

fn frame(key: &[u8], value: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(20 + key.len() + value.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(key.len() as u32).to_le_bytes());
    out.extend_from_slice(&(value.len() as u32).to_le_bytes());
    out.extend_from_slice(&checksum(key, value));
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    out
}

/// Every whole record up to the first damaged one.
fn parse(bytes: &[u8]) -> HashMap<Vec<u8>, Vec<u8>> {
    let mut map = HashMap::new();
    let mut rest = bytes;
    while rest.len() >= 20 && &rest[..4] == MAGIC {
        let klen = u32::from_le_bytes(rest[4..8].try_into().unwrap_or_default()) as usize;
        let vlen = u32::from_le_bytes(rest[8..12].try_into().unwrap_or_default()) as usize;
        let Some(end) = 20usize.checked_add(klen).and_then(|n| n.checked_add(vlen)) else {
            break;
        };
        if rest.len() < end {
            break;
        }
        let (key, value) = (&rest[20..20 + klen], &rest[20 + klen..end]);
        if checksum(key, value) != rest[12..20] {
            break;
        }
        map.insert(key.to_vec(), value.to_vec());
        rest = &rest[end..];
    }
    map
}

impl CacheStore for FunctionCache {
    fn get(&self, key: &[u8]) -> Option<Cow<'_, [u8]>> {
        let mut state = self.state.lock().ok()?;
        if state.loaded.is_none() {
            state.loaded = Some(self.load());
        }
        let found = state
            .loaded
            .as_ref()
            .and_then(|m| m.get(key))
            .map(|v| Cow::Owned(v.clone()));
        state.stats.lookups += 1;
        state.stats.hits += u64::from(found.is_some());
        found
    }

    fn insert(&self, key: &[u8], value: Vec<u8>) -> bool {
        let Ok(mut state) = self.state.lock() else {
            return false;
        };
        let record = frame(key, &value);
        state.pending.extend_from_slice(&record);
        if let Some(map) = state.loaded.as_mut() {
            map.insert(key.to_vec(), value);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_survive_a_reload_and_a_torn_tail_is_ignored() {
        let dir = std::env::temp_dir().join(format!("wf-fcache-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let path = dir.join("functions.bin");
        let cache = FunctionCache::new(path.clone());
        assert!(cache.get(b"a").is_none());
        assert!(cache.insert(b"a", b"one".to_vec()));
        assert!(cache.insert(b"b", b"two".to_vec()));
        cache.flush().unwrap();
        let again = FunctionCache::new(path.clone());
        assert_eq!(again.get(b"b").as_deref(), Some(&b"two"[..]));
        // A half-written record after the good ones.
        let mut bytes = std::fs::read(&path).unwrap();
        let torn = frame(b"c", b"three");
        bytes.extend_from_slice(&torn[..torn.len() - 2]);
        std::fs::write(&path, &bytes).unwrap();
        let map = parse(&bytes);
        assert_eq!(map.len(), 2);
        // A flipped byte ends the readable part there.
        bytes[25] ^= 0xff;
        assert!(parse(&bytes).len() < 2);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
