//! Which files are photos: the type of a photo told from its first bytes (magic numbers),
//! never from its name. The server (`server/src/media/photo.rs`, before it walks the
//! container) and the phone (at record time, before anything is saved) apply these same
//! rules, so a file the phone accepts is never refused by the server for its type, and a
//! HEIC photo is caught on the phone while the cadre can still convert it.
//!
//! Accepted: JPEG, PNG and WebP. Refused, each with a stable code: an empty file, HEIC/HEIF
//! (and AVIF, the same container), markup (SVG/XML/HTML), other known formats (GIF, PDF, ZIP,
//! MP4, ...), and anything else. Pure: bytes in, a verdict out.

/// The image formats fieldsync accepts as photos.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ImageKind {
    Jpeg,
    Png,
    Webp,
}

impl ImageKind {
    /// The media type to declare, store and serve.
    pub fn mime(self) -> &'static str {
        match self {
            ImageKind::Jpeg => "image/jpeg",
            ImageKind::Png => "image/png",
            ImageKind::Webp => "image/webp",
        }
    }
}

/// Why the first bytes of a file are not an accepted photo type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotAPhoto {
    #[error("文件为空 (empty file)")]
    Empty,
    /// HEIC/HEIF (iPhones and many Android phones by default): the app converts it to JPEG.
    #[error(
        "不支持HEIC/HEIF照片（{brand}）：请在手机设置中选择'兼容性最佳'或转换为JPEG后上传 \
         (HEIC/HEIF photos are not accepted: set the camera to 'Most Compatible' or convert to JPEG)"
    )]
    HeicNeedsConversion { brand: String },
    #[error("文件是SVG/XML/HTML文本，不是照片 (markup such as SVG/XML/HTML is not a photo)")]
    Markup,
    #[error("不支持的文件格式：{format}，请上传JPEG (unsupported format {format}; upload JPEG)")]
    UnsupportedFormat { format: &'static str },
    #[error("文件不是照片 (not an image)")]
    NotAnImage,
}

impl NotAPhoto {
    /// Stable machine-readable code (the server's `PhotoRejected` codes).
    pub fn code(&self) -> &'static str {
        match self {
            NotAPhoto::Empty => "empty",
            NotAPhoto::HeicNeedsConversion { .. } => "heic_needs_conversion",
            NotAPhoto::Markup => "markup_not_image",
            NotAPhoto::UnsupportedFormat { .. } => "unsupported_format",
            NotAPhoto::NotAnImage => "not_an_image",
        }
    }
}

/// Bytes of a file's start that [`photo_kind`] may look at; reading this many is enough.
pub const SNIFF_PREFIX_BYTES: usize = 256;

/// ISO BMFF brands of HEIF-family images (HEIC, HEIF, AVIF).
pub const HEIF_BRANDS: &[&[u8; 4]] = &[
    b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"hevm", b"hevs", b"mif1", b"mif2",
    b"msf1", b"avif", b"avis",
];

/// The photo type of a file from its first bytes (at least [`SNIFF_PREFIX_BYTES`] of them,
/// or the whole file when shorter), or why it is not a photo.
pub fn photo_kind(bytes: &[u8]) -> Result<ImageKind, NotAPhoto> {
    if bytes.is_empty() {
        return Err(NotAPhoto::Empty);
    }
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        return Ok(ImageKind::Jpeg);
    }
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        return Ok(ImageKind::Png);
    }
    if bytes.len() >= 12 && &bytes[0..4] == b"RIFF" && &bytes[8..12] == b"WEBP" {
        return Ok(ImageKind::Webp);
    }
    Err(classify_other(bytes))
}

/// Name what a refused file is, for a helpful message.
fn classify_other(bytes: &[u8]) -> NotAPhoto {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        // ISO BMFF: the major brand, then compatible brands up to the box size.
        let box_len = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
        let end = box_len.clamp(12, SNIFF_PREFIX_BYTES).min(bytes.len());
        let heif = std::iter::once(&bytes[8..12])
            .chain(bytes.get(16..end).unwrap_or(&[]).chunks_exact(4))
            .find(|brand| HEIF_BRANDS.iter().any(|known| &known[..] == *brand));
        return match heif {
            Some(_) => NotAPhoto::HeicNeedsConversion {
                brand: String::from_utf8_lossy(&bytes[8..12]).into_owned(),
            },
            None => NotAPhoto::UnsupportedFormat {
                format: "MP4/QuickTime",
            },
        };
    }
    if let Some(format) = signature_name(bytes) {
        return NotAPhoto::UnsupportedFormat { format };
    }
    // Markup: skip a UTF-8 BOM and whitespace; SVG, XML and HTML all open with '<'.
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let first = text.iter().find(|b| !b.is_ascii_whitespace());
    if first == Some(&b'<') {
        return NotAPhoto::Markup;
    }
    NotAPhoto::NotAnImage
}

/// The name of a well-known file format whose signature starts `bytes`.
pub fn signature_name(bytes: &[u8]) -> Option<&'static str> {
    const SIGNATURES: &[(&[u8], &str)] = &[
        (b"PK\x03\x04", "ZIP"),
        (b"PK\x05\x06", "ZIP"),
        (b"GIF87a", "GIF"),
        (b"GIF89a", "GIF"),
        (b"BM", "BMP"),
        (b"II*\0", "TIFF"),
        (b"MM\0*", "TIFF"),
        (b"%PDF", "PDF"),
        (b"Rar!", "RAR"),
        (b"7z\xBC\xAF", "7z"),
        (b"\x1F\x8B", "gzip"),
        (b"\x7FELF", "ELF"),
        (b"MZ", "Windows executable"),
        (b"\xFF\xD8\xFF", "JPEG"),
        (b"\x89PNG", "PNG"),
    ];
    SIGNATURES
        .iter()
        .find(|(magic, _)| bytes.starts_with(magic))
        .map(|(_, name)| *name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ISO-BMFF `ftyp` box as HEIC/HEIF files start.
    fn heif_header(major: &[u8; 4], compatible: &[&[u8; 4]]) -> Vec<u8> {
        let mut bytes = Vec::new();
        let len = 16 + 4 * compatible.len();
        bytes.extend_from_slice(&u32::try_from(len).unwrap_or(0).to_be_bytes());
        bytes.extend_from_slice(b"ftyp");
        bytes.extend_from_slice(major);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        for brand in compatible {
            bytes.extend_from_slice(*brand);
        }
        bytes
    }

    #[test]
    fn jpeg_png_and_webp_are_photos_by_their_magic_bytes() {
        assert_eq!(photo_kind(b"\xFF\xD8\xFF\xE0 jfif"), Ok(ImageKind::Jpeg));
        assert_eq!(photo_kind(b"\x89PNG\r\n\x1a\n...."), Ok(ImageKind::Png));
        assert_eq!(photo_kind(b"RIFF\0\0\0\0WEBPVP8 "), Ok(ImageKind::Webp));
        assert_eq!(ImageKind::Webp.mime(), "image/webp");
    }

    #[test]
    fn heic_is_named_by_its_major_or_a_compatible_brand() {
        let major = photo_kind(&heif_header(b"heic", &[b"mif1"])).unwrap_err();
        assert_eq!(major.code(), "heic_needs_conversion");
        // An MP4-like major brand with HEIF among the compatible brands.
        let compatible = photo_kind(&heif_header(b"isom", &[b"msf1"])).unwrap_err();
        assert_eq!(compatible.code(), "heic_needs_conversion");
        let video = photo_kind(&heif_header(b"isom", &[b"mp42"])).unwrap_err();
        assert_eq!(video.code(), "unsupported_format");
    }

    #[test]
    fn text_markup_and_other_formats_are_not_photos() {
        assert_eq!(photo_kind(b""), Err(NotAPhoto::Empty));
        assert_eq!(
            photo_kind("这不是照片".as_bytes()),
            Err(NotAPhoto::NotAnImage)
        );
        assert_eq!(
            photo_kind(b"\xEF\xBB\xBF  <svg xmlns=''/>"),
            Err(NotAPhoto::Markup)
        );
        assert_eq!(
            photo_kind(b"GIF89a\x01\x00"),
            Err(NotAPhoto::UnsupportedFormat { format: "GIF" })
        );
        assert_eq!(
            photo_kind(b"%PDF-1.7"),
            Err(NotAPhoto::UnsupportedFormat { format: "PDF" })
        );
        assert!(NotAPhoto::NotAnImage.to_string().contains("not an image"));
    }
}
