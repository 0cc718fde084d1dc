//! Photo thumbnails for the console. Photos are untrusted uploads, so the work is done by
//! [`crate::media::photo::thumbnail`]: the type is sniffed from the bytes, dimensions and
//! JPEG scan counts are checked from the headers before any pixel is decoded, JPEGs are
//! decoded at 1/2, 1/4 or 1/8 scale straight from the DCT and finished with a SIMD resizer,
//! and the EXIF orientation is applied. The output is a freshly encoded JPEG, which also
//! drops the original's EXIF (DESIGN §5: the console shows re-encoded copies; originals stay
//! byte-exact as evidence). CPU-heavy: call it from `spawn_blocking`.

use crate::media::photo::{self, PhotoRejected};

/// Why a thumbnail could not be made.
#[derive(Debug, thiserror::Error)]
pub enum ThumbnailError {
    #[error("照片格式无法识别或已损坏 (cannot decode the photo: {0})")]
    Undecodable(String),
    #[error("照片尺寸或内存超出限制 (photo exceeds decoding limits: {0})")]
    TooLarge(String),
    #[error("cannot encode the thumbnail: {0}")]
    Encode(String),
}

impl From<PhotoRejected> for ThumbnailError {
    fn from(rejected: PhotoRejected) -> Self {
        match rejected {
            PhotoRejected::EncodeFailed(reason) => ThumbnailError::Encode(reason),
            limit if limit.is_limit() => ThumbnailError::TooLarge(limit.to_string()),
            other => ThumbnailError::Undecodable(other.to_string()),
        }
    }
}

/// Check `bytes` (JPEG, PNG or WebP), turn it upright per its EXIF orientation, shrink it to
/// fit [`photo::THUMBNAIL_LONGEST_SIDE`] (320 px) and encode it as JPEG.
pub fn make_thumbnail(bytes: &[u8]) -> Result<Vec<u8>, ThumbnailError> {
    Ok(photo::thumbnail(bytes)?)
}

#[cfg(test)]
mod tests {
    use std::io::Cursor;

    use super::*;

    fn png_of(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbaImage::from_pixel(width, height, image::Rgba([200, 30, 30, 128]));
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png)
            .unwrap();
        bytes
    }

    #[test]
    fn large_photos_shrink_to_the_longest_side_and_become_jpeg() {
        let thumbnail = make_thumbnail(&png_of(1000, 500)).unwrap();
        let decoded = image::load_from_memory(&thumbnail).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (320, 160));
        assert_eq!(
            image::guess_format(&thumbnail).unwrap(),
            image::ImageFormat::Jpeg
        );
    }

    #[test]
    fn small_photos_are_not_enlarged() {
        let decoded = image::load_from_memory(&make_thumbnail(&png_of(40, 30)).unwrap()).unwrap();
        assert_eq!((decoded.width(), decoded.height()), (40, 30));
    }

    #[test]
    fn garbage_is_refused_not_panicked_on() {
        assert!(matches!(
            make_thumbnail(b"not an image at all"),
            Err(ThumbnailError::Undecodable(_))
        ));
        assert!(matches!(
            make_thumbnail(&[]),
            Err(ThumbnailError::Undecodable(_))
        ));
    }

    #[test]
    fn bombs_are_too_large() {
        let bomb = photo::synthetic::png_bomb(50_000, 50_000);
        assert!(matches!(
            make_thumbnail(&bomb),
            Err(ThumbnailError::TooLarge(_))
        ));
    }
}
