//! `run.json` cannot be turned against its owner: the spec a resume runs
//! carries an HMAC under a key only the user can read, kept outside the
//! project (`$XDG_DATA_HOME/wasmflow/key`, else
//! `~/.local/share/wasmflow/key`, 0600). Agents with file tools work inside
//! the project; they can edit `run.json`, but not make a later resume run a
//! spec they wrote (another backend, a command of their own).

use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::run::spec::RunSpec;

/// Where the key lives.
pub fn key_path(home: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(dir).join("wasmflow/key"));
    }
    home.map(|h| h.join(".local/share/wasmflow/key"))
}

/// The user's key, made on first use.
fn key(home: Option<&Path>) -> Result<Vec<u8>, String> {
    let path = key_path(home)
        .ok_or("no home directory to keep the run-signing key in: set HOME or XDG_DATA_HOME")?;
    match std::fs::read(&path) {
        Ok(k) if k.len() >= 32 => return Ok(k),
        Ok(_) => {
            return Err(format!(
                "the run-signing key {} is damaged (shorter than 32 bytes): delete it, and runs signed with it can no longer be resumed",
                path.display()
            ));
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut key = vec![0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .map_err(|e| format!("cannot read /dev/urandom for a key: {e}"))?;
    // create_new: two processes making the key at once agree on one.
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
    {
        Ok(mut f) => {
            f.write_all(&key)
                .and_then(|_| f.sync_all())
                .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
            Ok(key)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::read(&path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        }
        Err(e) => Err(format!("cannot create {}: {e}", path.display())),
    }
}

/// HMAC-SHA256 (RFC 2104).
pub fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > 64 {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|b| b ^ byte);
    let inner = Sha256::new()
        .chain_update(pad(0x36))
        .chain_update(message)
        .finalize();
    Sha256::new()
        .chain_update(pad(0x5c))
        .chain_update(inner)
        .finalize()
        .into()
}

fn mac_of(key: &[u8], spec: &RunSpec) -> Result<String, String> {
    let text = serde_json::to_vec(spec).map_err(|e| format!("cannot encode the run spec: {e}"))?;
    Ok(crate::run::key::hex(&hmac(key, &text)))
}

/// The seal of `spec` under the user's key.
pub fn sign(spec: &RunSpec, home: Option<&Path>) -> Result<String, String> {
    mac_of(&key(home)?, spec)
}

/// Whether `mac` seals `spec` under the user's key (compared in constant
/// time).
pub fn verify(spec: &RunSpec, mac: &str, home: Option<&Path>) -> Result<bool, String> {
    let expected = mac_of(&key(home)?, spec)?;
    let (a, b) = (expected.as_bytes(), mac.as_bytes());
    Ok(a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            crate::run::key::hex(&mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
