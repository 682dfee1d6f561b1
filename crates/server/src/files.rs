//! The files a node keeps in its data dir (and shared dir): the secret
//! key, the admin token and the node id, each created on first start,
//! readable by its owner only, and fsynced before use.

use anyhow::{Context, Result};
use nimbus_control::Sealer;
use std::path::Path;

/// The key that seals secrets: `NIMBUS_SECRET_KEY` (64 hex digits), else
/// the data dir's `secret-key` file, created on first start.
pub(crate) fn secret_key(data_dir: &Path) -> Result<Sealer> {
    if let Ok(k) = std::env::var("NIMBUS_SECRET_KEY") {
        return Sealer::from_hex(&k).map_err(|e| anyhow::anyhow!("NIMBUS_SECRET_KEY: {e}"));
    }
    let path = data_dir.join("secret-key");
    if let Ok(k) = std::fs::read_to_string(&path) {
        return Sealer::from_hex(&k).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()));
    }
    let key: [u8; 32] = rand::random();
    write_private(&path, hex::encode(key).as_bytes())?;
    Ok(Sealer::new(key))
}

/// Writes a file only its owner can read (created with mode 0600, never
/// readable by others even for a moment), via a temporary file and a rename.
pub(crate) fn write_private(path: &Path, contents: &[u8]) -> Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let _ = std::fs::remove_file(&tmp);
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts
        .open(&tmp)
        .with_context(|| format!("creating {}", tmp.display()))?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The trimmed text of `path`, or else `new()`, written there first.
fn read_or_create(path: &Path, new: impl FnOnce() -> String) -> Result<String> {
    if let Ok(t) = std::fs::read_to_string(path) {
        let t = t.trim();
        if !t.is_empty() {
            return Ok(t.to_string());
        }
    }
    let text = new();
    write_private(path, text.as_bytes())?;
    Ok(text)
}

/// Reads the admin token from the data dir, creating it on first start.
pub(crate) fn admin_token(data_dir: &Path) -> Result<String> {
    read_or_create(&data_dir.join("admin-token"), || {
        format!("nimbus_{}", hex::encode(rand::random::<[u8; 32]>()))
    })
}

/// This node's stable id (the data dir's `node-id`, created on first start):
/// the leases it takes carry it, so after a crash it takes them back.
pub(crate) fn node_id(data_dir: &Path) -> Result<String> {
    read_or_create(&data_dir.join("node-id"), || {
        format!("node-{}", hex::encode(rand::random::<[u8; 8]>()))
    })
}
