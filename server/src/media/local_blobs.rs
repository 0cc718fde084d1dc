//! The local blob folder, the default [`super::blobs::BlobStore`] backend. A blob's name is
//! the SHA-256 of its bytes; uploads grow in a staging file and become a blob only after
//! their full hash is verified. Every acknowledged byte has been fsynced, so an
//! acknowledgement survives power loss. Its methods block: the async [`super::blobs::BlobStore`]
//! runs them on the blocking pool, and the thumbnail benchmark calls them directly.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::blobs::{BlobError, Derived, blob_name, check_upload_id, derived_name};

/// The local blob folder: `sha256/<aa>/<sha256>` for complete blobs (byte-exact originals),
/// `uploads/<id>` for uploads in progress and `derived/<aa>/<sha256>.<kind>.jpg` for the
/// re-encoded copies the console shows.
#[derive(Debug, Clone)]
pub struct LocalBlobStore {
    root: PathBuf,
}

impl LocalBlobStore {
    /// Open (and create) the blob folder.
    pub fn open(root: &Path) -> Result<Self, BlobError> {
        std::fs::create_dir_all(root.join("uploads"))?;
        std::fs::create_dir_all(root.join("sha256"))?;
        Ok(Self {
            root: root.to_owned(),
        })
    }

    fn blob_path(&self, sha256: &str) -> Result<PathBuf, BlobError> {
        Ok(self.root.join(blob_name(sha256)?))
    }

    fn derived_path(&self, sha256: &str, kind: Derived) -> Result<PathBuf, BlobError> {
        Ok(self.root.join(derived_name(sha256, kind)?))
    }

    /// Keep a derived copy of a blob: written to a temporary file, fsynced and renamed, so a
    /// reader never sees half a file. Derived copies can always be made again from the
    /// original, so the directory is not fsynced.
    pub fn write_derived(
        &self,
        sha256: &str,
        kind: Derived,
        bytes: &[u8],
    ) -> Result<(), BlobError> {
        let path = self.derived_path(sha256, kind)?;
        let directory = path
            .parent()
            .ok_or_else(|| BlobError::BadName(sha256.to_owned()))?;
        std::fs::create_dir_all(directory)?;
        let temporary = directory.join(format!(".{}.{}.tmp", uuid::Uuid::now_v7(), kind.suffix()));
        let written = (|| {
            let mut file = File::create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_data()?;
            std::fs::rename(&temporary, &path)
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temporary);
        }
        Ok(written?)
    }

    /// A derived copy, or `None` when it was never made (blobs stored before derived copies
    /// existed).
    pub fn read_derived(&self, sha256: &str, kind: Derived) -> Result<Option<Vec<u8>>, BlobError> {
        match std::fs::read(self.derived_path(sha256, kind)?) {
            Ok(bytes) => Ok(Some(bytes)),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    fn staging_path(&self, upload_id: &str) -> Result<PathBuf, BlobError> {
        check_upload_id(upload_id)?;
        Ok(self.root.join("uploads").join(upload_id))
    }

    /// True when a complete blob with this hash is on disk.
    pub fn contains(&self, sha256: &str) -> bool {
        self.blob_path(sha256)
            .map(|path| path.is_file())
            .unwrap_or(false)
    }

    /// Read a whole blob.
    pub fn read(&self, sha256: &str) -> Result<Vec<u8>, BlobError> {
        Ok(std::fs::read(self.blob_path(sha256)?)?)
    }

    /// Bytes durably staged for an upload so far.
    pub fn staged_len(&self, upload_id: &str) -> Result<u64, BlobError> {
        match std::fs::metadata(self.staging_path(upload_id)?) {
            Ok(metadata) => Ok(metadata.len()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(error) => Err(error.into()),
        }
    }

    /// Append a chunk at `offset` and fsync before returning. The caller has checked that
    /// `offset` equals the committed offset; a staging file longer than that (a write that
    /// was not acknowledged before a crash) is truncated first.
    pub fn append_chunk(
        &self,
        upload_id: &str,
        offset: u64,
        data: &[u8],
    ) -> Result<u64, BlobError> {
        let path = self.staging_path(upload_id)?;
        let mut file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        file.set_len(offset)?;
        use std::io::Seek;
        file.seek(std::io::SeekFrom::Start(offset))?;
        file.write_all(data)?;
        file.sync_data()?;
        Ok(offset + data.len() as u64)
    }

    /// Delete an upload's staging file (an expired upload, or the leftover of an upload
    /// whose blob already existed). Missing files are fine; complete blobs are never touched.
    pub fn remove_staging(&self, upload_id: &str) -> Result<(), BlobError> {
        match std::fs::remove_file(self.staging_path(upload_id)?) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error.into()),
        }
    }

    /// Ids of the uploads that have a staging file, so that files whose upload row is gone
    /// can be swept.
    pub fn staged_upload_ids(&self) -> Result<Vec<String>, BlobError> {
        let mut ids = Vec::new();
        for entry in std::fs::read_dir(self.root.join("uploads"))? {
            let name = entry?.file_name();
            if let Some(name) = name.to_str()
                && uuid::Uuid::parse_str(name).is_ok()
            {
                ids.push(name.to_owned());
            }
        }
        Ok(ids)
    }

    /// Verify size and SHA-256 of a staged upload, then move it into place: fsync the file,
    /// rename it, fsync the directory. Idempotent when the blob already exists.
    pub fn commit(
        &self,
        upload_id: &str,
        expected_sha256: &str,
        expected_size: u64,
    ) -> Result<(), BlobError> {
        let final_path = self.blob_path(expected_sha256)?;
        if final_path.is_file() {
            return Ok(());
        }
        let staging = self.staging_path(upload_id)?;
        verify_staged(&staging, expected_sha256, expected_size)?;
        publish(&staging, &final_path)
    }
}

/// Check that a staged file has exactly the announced size and SHA-256, reading it in 64 KiB
/// pieces (a photo is never held whole for this).
fn verify_staged(
    staging: &Path,
    expected_sha256: &str,
    expected_size: u64,
) -> Result<(), BlobError> {
    let mut file = File::open(staging)?;
    let actual_size = file.metadata()?.len();
    if actual_size != expected_size {
        return Err(BlobError::SizeMismatch {
            expected: expected_size,
            actual: actual_size,
        });
    }
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    let actual = hex::encode(hasher.finalize());
    if actual != expected_sha256 {
        return Err(BlobError::HashMismatch {
            expected: expected_sha256.to_owned(),
            actual,
        });
    }
    Ok(())
}

/// Make a verified staged file the blob: fsync it, rename it into place, fsync the directory
/// (so the rename survives a crash).
fn publish(staging: &Path, final_path: &Path) -> Result<(), BlobError> {
    File::open(staging)?.sync_all()?;
    let directory = final_path
        .parent()
        .ok_or_else(|| BlobError::BadName(final_path.display().to_string()))?;
    std::fs::create_dir_all(directory)?;
    std::fs::rename(staging, final_path)?;
    File::open(directory)?.sync_all()?;
    Ok(())
}

impl LocalBlobStore {
    /// Like [`LocalBlobStore::commit`], with a gate: the staged file's size and SHA-256 are
    /// verified, and `vet` runs over the file *before* the blob exists. When `vet` refuses,
    /// the staging file is deleted and nothing is stored (`Ok(Err(refusal))`); when it
    /// accepts, the file is fsynced, renamed into place and the directory fsynced
    /// (`Ok(Ok(value))`). When the blob already exists (another device sent the same bytes,
    /// or a retry after a crash), `vet` runs over the stored blob, which is never changed,
    /// and the redundant staging file is removed.
    ///
    /// `vet` gets the file's path, not its bytes, so it can stream it
    /// ([`crate::media::photo::prepare_file`]); its I/O errors are the server's own.
    pub fn commit_vetted<T, R>(
        &self,
        upload_id: &str,
        expected_sha256: &str,
        expected_size: u64,
        vet: impl FnOnce(&Path) -> std::io::Result<Result<T, R>>,
    ) -> Result<Result<T, R>, BlobError> {
        let final_path = self.blob_path(expected_sha256)?;
        let staging = self.staging_path(upload_id)?;
        if final_path.is_file() {
            let vetted = vet(&final_path)?;
            self.discard_staging(&staging)?;
            return Ok(vetted);
        }
        verify_staged(&staging, expected_sha256, expected_size)?;
        let value = match vet(&staging)? {
            Ok(value) => value,
            Err(refusal) => {
                self.discard_staging(&staging)?;
                return Ok(Err(refusal));
            }
        };
        publish(&staging, &final_path)?;
        Ok(Ok(value))
    }

    fn discard_staging(&self, staging: &Path) -> Result<(), BlobError> {
        match std::fs::remove_file(staging) {
            Ok(()) => Ok(()),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(error) => Err(error.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_resume_and_commit_only_with_the_right_hash() {
        let folder = tempfile::tempdir().unwrap();
        let blobs = LocalBlobStore::open(folder.path()).unwrap();
        let upload_id = uuid::Uuid::now_v7().to_string();
        let bytes: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8).collect();
        let sha = hex::encode(Sha256::digest(&bytes));
        assert_eq!(
            blobs.append_chunk(&upload_id, 0, &bytes[..400]).unwrap(),
            400
        );
        assert_eq!(blobs.staged_len(&upload_id).unwrap(), 400);
        // A retry of an unacknowledged write at the committed offset overwrites cleanly.
        assert_eq!(
            blobs
                .append_chunk(&upload_id, 400, &bytes[400..700])
                .unwrap(),
            700
        );
        assert_eq!(
            blobs.append_chunk(&upload_id, 400, &bytes[400..]).unwrap(),
            1000
        );
        let wrong = "0".repeat(64);
        assert!(matches!(
            blobs.commit(&upload_id, &wrong, 1000),
            Err(BlobError::HashMismatch { .. })
        ));
        assert!(matches!(
            blobs.commit(&upload_id, &sha, 999),
            Err(BlobError::SizeMismatch { .. })
        ));
        blobs.commit(&upload_id, &sha, 1000).unwrap();
        assert!(blobs.contains(&sha));
        assert_eq!(blobs.read(&sha).unwrap(), bytes);
    }

    #[test]
    fn a_vetted_commit_stores_nothing_when_refused_and_keeps_derived_copies() {
        let folder = tempfile::tempdir().unwrap();
        let blobs = LocalBlobStore::open(folder.path()).unwrap();
        let bytes = b"not really a photo".to_vec();
        let sha = hex::encode(Sha256::digest(&bytes));
        let refused_id = uuid::Uuid::now_v7().to_string();
        blobs.append_chunk(&refused_id, 0, &bytes).unwrap();
        let outcome = blobs
            .commit_vetted(&refused_id, &sha, bytes.len() as u64, |_| {
                Ok(Err::<(), _>("refused"))
            })
            .unwrap();
        assert_eq!(outcome, Err("refused"));
        assert!(!blobs.contains(&sha), "no blob after a refusal");
        assert_eq!(
            blobs.staged_len(&refused_id).unwrap(),
            0,
            "staged bytes discarded"
        );

        let accepted_id = uuid::Uuid::now_v7().to_string();
        blobs.append_chunk(&accepted_id, 0, &bytes).unwrap();
        assert!(matches!(
            blobs.commit_vetted(&accepted_id, &"0".repeat(64), bytes.len() as u64, |_| {
                Ok(Ok::<_, ()>(()))
            }),
            Err(BlobError::HashMismatch { .. })
        ));
        let seen = blobs
            .commit_vetted(&accepted_id, &sha, bytes.len() as u64, |seen| {
                std::fs::read(seen).map(|seen| Ok::<_, ()>(seen.len()))
            })
            .unwrap();
        assert_eq!(seen, Ok(bytes.len()));
        assert_eq!(blobs.read(&sha).unwrap(), bytes);

        assert_eq!(blobs.read_derived(&sha, Derived::Thumbnail).unwrap(), None);
        blobs
            .write_derived(&sha, Derived::Thumbnail, b"thumb")
            .unwrap();
        blobs
            .write_derived(&sha, Derived::Display, b"display")
            .unwrap();
        assert_eq!(
            blobs
                .read_derived(&sha, Derived::Thumbnail)
                .unwrap()
                .as_deref(),
            Some(&b"thumb"[..])
        );
        assert_eq!(
            blobs
                .read_derived(&sha, Derived::Display)
                .unwrap()
                .as_deref(),
            Some(&b"display"[..])
        );
        assert!(matches!(
            blobs.write_derived("../x", Derived::Display, b"x"),
            Err(BlobError::BadName(_))
        ));
    }

    #[test]
    fn path_traversal_names_are_refused() {
        let folder = tempfile::tempdir().unwrap();
        let blobs = LocalBlobStore::open(folder.path()).unwrap();
        assert!(matches!(
            blobs.append_chunk("../../etc/passwd", 0, b"x"),
            Err(BlobError::BadName(_))
        ));
        assert!(!blobs.contains("../x"));
    }
}
