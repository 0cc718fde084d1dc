//! Photo thumbnails for the console. Photos are untrusted uploads, so decoding runs with
//! size and memory limits, off the async workers, and a few at a time. The output is a
//! freshly encoded JPEG, which also drops the original's EXIF (DESIGN §5: the console shows
//! re-encoded copies; originals stay byte-exact as evidence).

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageReader, Limits};

/// Longest side of a thumbnail, in pixels.
pub const THUMBNAIL_LONGEST_SIDE: u32 = 320;
/// Largest width or height a photo may declare; a 200 MP sensor is about 16000 px, phones
/// are far below 12000.
const MAX_DIMENSION: u32 = 12_000;
/// Decoder memory budget; a 12000×12000 RGBA image would need 576 MB, so the budget also
/// rejects the extreme corner of the dimension limit.
const MAX_DECODE_BYTES: u64 = 512 * 1024 * 1024;
/// JPEG quality of thumbnails: small files, still legible faces and walls.
const THUMBNAIL_JPEG_QUALITY: u8 = 80;

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

fn decode_error(error: image::ImageError) -> ThumbnailError {
    match error {
        image::ImageError::Limits(limit) => ThumbnailError::TooLarge(limit.to_string()),
        other => ThumbnailError::Undecodable(other.to_string()),
    }
}

/// Decode `bytes` (JPEG, PNG or WebP) under limits, turn it upright per its EXIF
/// orientation, shrink it to fit [`THUMBNAIL_LONGEST_SIDE`] and encode it as JPEG.
/// CPU-heavy: call it from `spawn_blocking`.
pub fn make_thumbnail(bytes: &[u8]) -> Result<Vec<u8>, ThumbnailError> {
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_DECODE_BYTES);

    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|error| ThumbnailError::Undecodable(error.to_string()))?;
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(decode_error)?;
    // Phones store portrait shots as rotated landscape pixels plus an EXIF tag; without
    // honouring it the reviewer would see people lying on their side.
    let orientation = decoder.orientation().map_err(decode_error)?;
    let mut image = DynamicImage::from_decoder(decoder).map_err(decode_error)?;
    image.apply_orientation(orientation);

    let fitted =
        if image.width() > THUMBNAIL_LONGEST_SIDE || image.height() > THUMBNAIL_LONGEST_SIDE {
            image.resize(
                THUMBNAIL_LONGEST_SIDE,
                THUMBNAIL_LONGEST_SIDE,
                image::imageops::FilterType::Triangle,
            )
        } else {
            image
        };
    // JPEG has no alpha channel; flatten to RGB8 whatever the source was.
    let rgb = fitted.to_rgb8();
    let mut output = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut output, THUMBNAIL_JPEG_QUALITY)
        .encode_image(&rgb)
        .map_err(|error| ThumbnailError::Encode(error.to_string()))?;
    Ok(output)
}

#[cfg(test)]
mod tests {
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
}
