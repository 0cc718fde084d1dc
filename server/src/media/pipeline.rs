//! The photo pipeline of an upload's completion (DESIGN §5), whichever edge carried the
//! bytes and whichever backend keeps them: verify size and SHA-256, run
//! [`photo::prepare_file`] on the staged bytes *before* the blob exists (one decode gives the
//! display copy, the thumbnail and the pHash), publish the blob, then keep both derived
//! copies. A refused photo (SVG, polyglot, HEIC, bomb, …) leaves nothing behind.
//! [`crate::media::uploads::complete`] then stores the metadata and, last, the blob row
//! that makes the photo visible.

use std::path::Path;

use crate::media::blobs::{BlobError, BlobStore, Derived, LocalBlobStore};
use crate::media::photo::{self, Limits, PhotoRejected, Prepared};
use crate::store::PhotoMeta;

/// Longest side of the display copy the console shows, in pixels: enough to read a door
/// plate or a face on a laptop screen, a fraction of a 12 MP original.
pub const DISPLAY_LONGEST_SIDE: u32 = 1600;

/// The gate every staged photo passes before it may become a blob.
fn prepare(path: &Path) -> std::io::Result<Result<Prepared, PhotoRejected>> {
    photo::prepare_file(path, &Limits::default(), DISPLAY_LONGEST_SIDE)
}

/// Vet a fully staged upload and store it with its derived copies. `Ok(Err(_))` is a
/// refused photo (nothing is stored); a size or hash mismatch is
/// [`BlobError::SizeMismatch`] / [`BlobError::HashMismatch`].
pub async fn vet_and_store(
    blobs: &BlobStore,
    upload_id: &str,
    sha256: &str,
    size: u64,
) -> Result<Result<Prepared, PhotoRejected>, BlobError> {
    match blobs {
        BlobStore::LocalFolder(folder) => {
            let folder = folder.clone();
            let (upload_id, sha256) = (upload_id.to_owned(), sha256.to_owned());
            tokio::task::spawn_blocking(move || {
                vet_and_store_photo(&folder, &upload_id, &sha256, size)
            })
            .await
            .map_err(|error| BlobError::Io(std::io::Error::other(error.to_string())))?
        }
        BlobStore::S3(_) => {
            let vetted = blobs
                .commit_vetted(upload_id, sha256, size, prepare)
                .await?;
            if let Ok(prepared) = &vetted {
                blobs
                    .write_derived(sha256, Derived::Thumbnail, prepared.thumbnail_jpeg.clone())
                    .await?;
                blobs
                    .write_derived(sha256, Derived::Display, prepared.display_jpeg.clone())
                    .await?;
            }
            Ok(vetted)
        }
    }
}

/// [`vet_and_store`] on the local folder, blocking: the thumbnail benchmark
/// (`server/benches/thumbnails.rs`) calls it so that it times exactly what production runs.
pub fn vet_and_store_photo(
    blobs: &LocalBlobStore,
    upload_id: &str,
    sha256: &str,
    size: u64,
) -> Result<Result<Prepared, PhotoRejected>, BlobError> {
    let vetted = blobs.commit_vetted(upload_id, sha256, size, prepare)?;
    if let Ok(prepared) = &vetted {
        blobs.write_derived(sha256, Derived::Thumbnail, &prepared.thumbnail_jpeg)?;
        blobs.write_derived(sha256, Derived::Display, &prepared.display_jpeg)?;
    }
    Ok(vetted)
}

/// The stored form of what [`photo::prepare_file`] found.
pub fn photo_meta(prepared: &Prepared) -> PhotoMeta {
    let exif = prepared.exif.clone().unwrap_or_default();
    PhotoMeta {
        mime_type: prepared.inspected.kind.mime().to_owned(),
        width: prepared.inspected.width,
        height: prepared.inspected.height,
        exif_time: exif.captured,
        exif_gps: exif.gps.map(|gps| (gps.latitude, gps.longitude)),
        gps_time: exif.gps_time,
        make: exif.make,
        model: exif.model,
        orientation: exif.orientation,
        phash: prepared.phash.0,
        exif_damaged: exif.damaged,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHOTOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/photos");

    /// Stage `bytes` as PutChunk would (256 KiB chunks) and return the upload id and SHA-256.
    fn staged(blobs: &LocalBlobStore, bytes: &[u8]) -> (String, String) {
        use sha2::Digest;
        let upload_id = uuid::Uuid::now_v7().to_string();
        let mut offset = 0;
        for chunk in bytes.chunks(256 * 1024) {
            offset = blobs.append_chunk(&upload_id, offset, chunk).unwrap();
        }
        (upload_id, hex::encode(sha2::Sha256::digest(bytes)))
    }

    fn size_of(jpeg: &[u8]) -> (u32, u32) {
        let inspected = photo::inspect(jpeg, &Limits::default()).unwrap();
        (inspected.width, inspected.height)
    }

    #[test]
    fn completion_stores_the_blob_and_upright_display_and_thumbnail_copies() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobStore::open(dir.path()).unwrap();
        // (file, upright display size, upright thumbnail size): an 8 MP phone photo is brought
        // down to 1600 px, and a stored 450×600 photo with orientation 6 comes out landscape
        // and is never enlarged.
        for (name, display, thumbnail) in [
            ("mobile_jolla.jpg", (1600, 1200), (320, 240)),
            ("orientation_landscape_6.jpg", (600, 450), (320, 240)),
        ] {
            let bytes = std::fs::read(format!("{PHOTOS}/{name}")).unwrap();
            let (upload_id, sha256) = staged(&blobs, &bytes);
            let prepared = vet_and_store_photo(&blobs, &upload_id, &sha256, bytes.len() as u64)
                .unwrap()
                .unwrap_or_else(|refused| panic!("{name}: {refused}"));
            assert!(blobs.contains(&sha256), "{name}");
            assert_eq!(
                blobs.read(&sha256).unwrap(),
                bytes,
                "{name}: byte-exact original"
            );
            let stored_display = blobs
                .read_derived(&sha256, Derived::Display)
                .unwrap()
                .unwrap();
            let stored_thumbnail = blobs
                .read_derived(&sha256, Derived::Thumbnail)
                .unwrap()
                .unwrap();
            assert_eq!(stored_display, prepared.display_jpeg, "{name}");
            assert_eq!(stored_thumbnail, prepared.thumbnail_jpeg, "{name}");
            assert_eq!(size_of(&stored_display), display, "{name}");
            assert_eq!(size_of(&stored_thumbnail), thumbnail, "{name}");
        }
    }

    #[test]
    fn a_refused_photo_leaves_no_blob_and_no_copies() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = LocalBlobStore::open(dir.path()).unwrap();
        let svg = b"<svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
        let (upload_id, sha256) = staged(&blobs, svg);
        let refused = vet_and_store_photo(&blobs, &upload_id, &sha256, svg.len() as u64).unwrap();
        assert!(refused.is_err());
        assert!(!blobs.contains(&sha256));
        assert_eq!(blobs.read_derived(&sha256, Derived::Display).unwrap(), None);
        assert_eq!(
            blobs.staged_len(&upload_id).unwrap(),
            0,
            "staging file discarded"
        );
    }
}
