//! Taking a photo into the app: read the original bytes, hash them (SHA-256 of the ORIGINAL,
//! before any compression, DESIGN §4), recognise the image type and keep a byte-exact copy
//! under `photos/<sha256>` in the data dir. The copy is what gets uploaded, so deleting or
//! editing the gallery file later cannot change the evidence.
//!
//! The type is checked from the bytes with the server's own rules
//! ([`fieldsync_model::photo_type`]) before anything is stored: a file that is not a JPEG,
//! PNG or WebP is [`ClientError::PhotoNotAnImage`], a HEIC/HEIF photo is
//! [`ClientError::PhotoHeicNeedsConversion`], so no photo the server would refuse can leave
//! a visit waiting for bytes that never upload.

use std::io::Write;
use std::path::{Path, PathBuf};

use fieldsync_model::photo_type::{ImageKind, NotAPhoto, photo_kind};
use fieldsync_model::visit::MAX_PHOTO_BYTES;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::error::{ClientError, ClientResult};

/// A photo copied into the data dir.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportedPhoto {
    pub sha256: String,
    pub size_bytes: u64,
    pub mime_type: String,
    pub local_path: PathBuf,
    /// File modification time of the source: the best capture time available without
    /// parsing EXIF on the phone (the server reads EXIF itself).
    pub modified_at: Option<OffsetDateTime>,
}

/// A photo file read into memory and checked: its bytes, its type, and the file's
/// modification time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedPhoto {
    pub bytes: Vec<u8>,
    pub kind: ImageKind,
    pub modified_at: Option<OffsetDateTime>,
}

/// Read `source` completely and check that it is a photo the server accepts (type from the
/// bytes, size within the limit). Nothing is written, so a missing, unreadable or wrong file
/// fails before any database change.
pub fn read_photo(source: &Path) -> ClientResult<CheckedPhoto> {
    let bytes = std::fs::read(source).map_err(|error| ClientError::io(source, error))?;
    let kind = check_photo_bytes(source, &bytes)?;
    if bytes.len() as u64 > MAX_PHOTO_BYTES {
        return Err(ClientError::Invalid {
            field: "photo".into(),
            message: format!(
                "照片过大 {} is {} bytes; the limit is {MAX_PHOTO_BYTES}",
                source.display(),
                bytes.len()
            ),
        });
    }
    let modified_at = std::fs::metadata(source)
        .and_then(|metadata| metadata.modified())
        .ok()
        .map(OffsetDateTime::from);
    Ok(CheckedPhoto {
        bytes,
        kind,
        modified_at,
    })
}

/// Write `bytes` to `path` (creating its folder): to a temporary name, fsync, rename, so
/// the file is either complete or absent after a crash.
pub fn write_file_durably(path: &Path, bytes: &[u8]) -> ClientResult<()> {
    let folder = path.parent().unwrap_or_else(|| Path::new("."));
    std::fs::create_dir_all(folder).map_err(|error| ClientError::io(folder, error))?;
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".partial");
    let temporary = PathBuf::from(temporary);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        std::fs::rename(&temporary, path)
    };
    write().map_err(|error| ClientError::io(path, error))
}

/// The photo type of `bytes` (read from `source`), or the typed refusal.
pub fn check_photo_bytes(source: &Path, bytes: &[u8]) -> ClientResult<ImageKind> {
    photo_kind(bytes).map_err(|refused| match refused {
        NotAPhoto::HeicNeedsConversion { brand } => ClientError::PhotoHeicNeedsConversion {
            path: source.to_owned(),
            brand,
        },
        other => ClientError::PhotoNotAnImage {
            path: source.to_owned(),
            reason: other.to_string(),
        },
    })
}

/// Copy `bytes` to `photos_dir/<sha256>` (write to a temp name, fsync, rename), unless an
/// identical copy is already there. Content addressing makes this idempotent, and an orphan
/// copy left by a failed transaction is harmless.
pub fn store_photo(photos_dir: &Path, photo: &CheckedPhoto) -> ClientResult<ImportedPhoto> {
    let bytes = photo.bytes.as_slice();
    let sha256 = hex::encode(Sha256::digest(bytes));
    let local_path = photos_dir.join(&sha256);
    let already_there = std::fs::metadata(&local_path)
        .map(|metadata| metadata.len() == bytes.len() as u64)
        .unwrap_or(false);
    if !already_there {
        write_file_durably(&local_path, bytes)?;
    }
    Ok(ImportedPhoto {
        sha256,
        size_bytes: bytes.len() as u64,
        mime_type: photo.kind.mime().to_owned(),
        local_path,
        modified_at: photo.modified_at,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_named_by_the_sha256_of_the_original_bytes() {
        let dir = tempfile::TempDir::new().unwrap();
        let source = dir.path().join("camera.jpg");
        let bytes = b"\xFF\xD8\xFF\xE0 fake jpeg body";
        std::fs::write(&source, bytes).unwrap();
        let photo = read_photo(&source).unwrap();
        let imported = store_photo(&dir.path().join("photos"), &photo).unwrap();
        assert_eq!(imported.sha256, hex::encode(Sha256::digest(bytes)));
        assert_eq!(imported.mime_type, "image/jpeg");
        assert_eq!(std::fs::read(&imported.local_path).unwrap(), bytes);
        // The camera file may go: the copy is the evidence.
        std::fs::remove_file(&source).unwrap();
        assert_eq!(std::fs::read(&imported.local_path).unwrap(), bytes);
        // Storing the same bytes again is a no-op with the same result.
        assert_eq!(
            store_photo(&dir.path().join("photos"), &photo).unwrap(),
            imported
        );
    }

    #[test]
    fn files_that_are_not_photos_are_refused_with_their_own_errors() {
        let dir = tempfile::TempDir::new().unwrap();
        let text = dir.path().join("notes.jpg");
        std::fs::write(&text, "这不是照片").unwrap();
        assert!(matches!(
            read_photo(&text),
            Err(ClientError::PhotoNotAnImage { path, .. }) if path == text
        ));
        let heic = dir.path().join("camera.heic");
        std::fs::write(&heic, b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic").unwrap();
        assert!(matches!(
            read_photo(&heic),
            Err(ClientError::PhotoHeicNeedsConversion { brand, .. }) if brand == "heic"
        ));
        let empty = dir.path().join("empty.jpg");
        std::fs::write(&empty, b"").unwrap();
        assert!(matches!(
            read_photo(&empty),
            Err(ClientError::PhotoNotAnImage { .. })
        ));
    }
}
