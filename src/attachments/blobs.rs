//! Where the bytes live: files under the data directory (embedded engine)
//! or an S3-compatible bucket (any engine; the only choice with Redis, whose
//! nodes share no disk). One small enum, three operations.

use std::path::PathBuf;

use bytes::Bytes;

use super::s3::S3Client;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    #[error("attachment storage: {0}")]
    Unavailable(String),
}

/// The store of attachment bytes.
#[derive(Clone, Debug)]
pub enum Blobs {
    /// `<data dir>/attachments/<key>`.
    Files(PathBuf),
    S3(S3Client),
}

impl Blobs {
    pub fn describe(&self) -> &'static str {
        match self {
            Blobs::Files(_) => "files in the data directory",
            Blobs::S3(_) => "S3-compatible object storage",
        }
    }

    /// Stores `bytes` under `key` (`<org>/<attachment>`), replacing any.
    pub async fn put(&self, key: &str, bytes: Bytes, content_type: &str) -> Result<(), BlobError> {
        match self {
            Blobs::Files(dir) => {
                let path = file_path(dir, key)?;
                // `<key>.part`: a key's own dot (`<ref>.thumb`) is kept, so
                // a file and its preview never share a temporary name.
                let mut tmp = path.clone().into_os_string();
                tmp.push(".part");
                let tmp = PathBuf::from(tmp);
                if let Some(parent) = path.parent() {
                    tokio::fs::create_dir_all(parent).await.map_err(io)?;
                }
                tokio::fs::write(&tmp, &bytes).await.map_err(io)?;
                tokio::fs::rename(&tmp, &path).await.map_err(io)
            }
            Blobs::S3(client) => client.put(key, bytes, content_type).await,
        }
    }

    pub async fn get(&self, key: &str) -> Result<Option<Bytes>, BlobError> {
        match self {
            Blobs::Files(dir) => match tokio::fs::read(file_path(dir, key)?).await {
                Ok(bytes) => Ok(Some(Bytes::from(bytes))),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(io(e)),
            },
            Blobs::S3(client) => client.get(key).await,
        }
    }

    /// Removes `key`; a missing one is not an error.
    pub async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match self {
            Blobs::Files(dir) => match tokio::fs::remove_file(file_path(dir, key)?).await {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(e)),
                _ => Ok(()),
            },
            Blobs::S3(client) => client.delete(key).await,
        }
    }
}

fn io(e: std::io::Error) -> BlobError {
    BlobError::Unavailable(e.to_string())
}

/// Keys are built by switchboard from UUIDs; anything else (a path
/// separator trick, a dot segment) is refused rather than resolved.
fn file_path(dir: &std::path::Path, key: &str) -> Result<PathBuf, BlobError> {
    let safe = !key.is_empty()
        && key.split('/').all(|segment| {
            !segment.is_empty()
                && !segment.starts_with('.')
                && segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        });
    if !safe {
        return Err(BlobError::Unavailable(format!(
            "not a storage key: {key:?}"
        )));
    }
    Ok(dir.join(key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn files_round_trip_and_refuse_escapes() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = Blobs::Files(dir.path().to_owned());
        let key = "org-1/file-1";
        assert_eq!(blobs.get(key).await.unwrap(), None);
        blobs
            .put(key, Bytes::from_static(b"abc"), "text/plain")
            .await
            .unwrap();
        assert_eq!(blobs.get(key).await.unwrap().unwrap(), &b"abc"[..]);
        blobs.delete(key).await.unwrap();
        blobs.delete(key).await.unwrap();
        assert_eq!(blobs.get(key).await.unwrap(), None);
        for bad in ["../x", "a/../../x", "/etc/passwd", "", "a//b", "a/.hidden"] {
            assert!(blobs.get(bad).await.is_err(), "{bad}");
        }
    }
}
