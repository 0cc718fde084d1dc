//! Taking a photo into the app: read the original bytes, hash them (SHA-256 of the ORIGINAL,
//! before any compression, DESIGN §4), recognise the image type and keep a byte-exact copy
//! under `photos/<sha256>` in the data dir. The copy is what gets uploaded, so deleting or
//! editing the gallery file later cannot change the evidence.

use std::io::Write;
use std::path::{Path, PathBuf};

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

/// Read `source` completely. Nothing is written, so a missing or unreadable photo fails
/// before any database change.
pub fn read_photo(source: &Path) -> ClientResult<(Vec<u8>, Option<OffsetDateTime>)> {
    let bytes = std::fs::read(source).map_err(|error| ClientError::io(source, error))?;
    if bytes.is_empty() {
        return Err(ClientError::Invalid {
            field: "photo".into(),
            message: format!("{} is empty", source.display()),
        });
    }
    if bytes.len() as u64 > MAX_PHOTO_BYTES {
        return Err(ClientError::Invalid {
            field: "photo".into(),
            message: format!(
                "{} is {} bytes; the limit is {MAX_PHOTO_BYTES}",
                source.display(),
                bytes.len()
            ),
        });
    }
    let modified_at = std::fs::metadata(source)
        .and_then(|metadata| metadata.modified())
        .ok()
        .map(OffsetDateTime::from);
    Ok((bytes, modified_at))
}

/// Copy `bytes` to `photos_dir/<sha256>` (write to a temp name, fsync, rename), unless an
/// identical copy is already there. Content addressing makes this idempotent, and an orphan
/// copy left by a failed transaction is harmless.
pub fn store_photo(
    photos_dir: &Path,
    bytes: &[u8],
    modified_at: Option<OffsetDateTime>,
) -> ClientResult<ImportedPhoto> {
    let sha256 = hex::encode(Sha256::digest(bytes));
    let local_path = photos_dir.join(&sha256);
    let already_there = std::fs::metadata(&local_path)
        .map(|metadata| metadata.len() == bytes.len() as u64)
        .unwrap_or(false);
    if !already_there {
        std::fs::create_dir_all(photos_dir).map_err(|error| ClientError::io(photos_dir, error))?;
        let temporary = photos_dir.join(format!("{sha256}.partial"));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&temporary)?;
            file.write_all(bytes)?;
            file.sync_all()?;
            std::fs::rename(&temporary, &local_path)
        };
        write().map_err(|error| ClientError::io(&local_path, error))?;
    }
    Ok(ImportedPhoto {
        sha256,
        size_bytes: bytes.len() as u64,
        mime_type: sniff_mime_type(bytes).to_owned(),
        local_path,
        modified_at,
    })
}

/// The image type from the file's magic bytes; the file name can lie.
pub fn sniff_mime_type(bytes: &[u8]) -> &'static str {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        "image/jpeg"
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        "image/png"
    } else if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        "image/webp"
    } else if bytes.len() >= 12
        && &bytes[4..8] == b"ftyp"
        && matches!(&bytes[8..12], b"heic" | b"heix" | b"mif1" | b"msf1")
    {
        "image/heic"
    } else {
        "application/octet-stream"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_is_named_by_the_sha256_of_the_original_bytes() {
        let dir = tempfile::TempDir::new().unwrap();
        let bytes = b"\xFF\xD8\xFF\xE0 fake jpeg body";
        let imported = store_photo(&dir.path().join("photos"), bytes, None).unwrap();
        assert_eq!(imported.sha256, hex::encode(Sha256::digest(bytes)));
        assert_eq!(imported.mime_type, "image/jpeg");
        assert_eq!(std::fs::read(&imported.local_path).unwrap(), bytes);
        // Storing the same bytes again is a no-op with the same result.
        assert_eq!(
            store_photo(&dir.path().join("photos"), bytes, None).unwrap(),
            imported
        );
    }

    #[test]
    fn image_types_are_recognised_by_magic_bytes() {
        assert_eq!(sniff_mime_type(b"\x89PNG\r\n\x1a\n...."), "image/png");
        assert_eq!(sniff_mime_type(b"RIFF\0\0\0\0WEBPVP8 "), "image/webp");
        assert_eq!(sniff_mime_type(b"hello"), "application/octet-stream");
    }
}
