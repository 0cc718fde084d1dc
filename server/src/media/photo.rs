//! Photo safety and derivatives: pure functions over the bytes of an uploaded photo.
//!
//! Photos are evidence (DESIGN §5) and they are untrusted uploads. This module:
//! - tells the type from magic bytes, never from a name ([`sniff`]), and refuses HEIC/HEIF,
//!   markup (SVG/XML/HTML), other formats and polyglots (data hidden after the image);
//! - reads dimensions from the headers alone and enforces [`Limits`] *before* any pixel
//!   buffer exists ([`inspect`]), so decompression bombs cost microseconds and kilobytes;
//! - extracts the EXIF facts that evidence flags need ([`read_exif`]);
//! - computes a 64-bit perceptual hash for near-duplicate detection ([`perceptual_hash`]);
//! - renders what the console shows: an upright, metadata-free JPEG display copy
//!   ([`render_display`]) and a thumbnail ([`thumbnail`]).
//!
//! The module is named `photo`, not `image`, so that `crate::media::image` never shadows the
//! `image` crate. Nothing here touches the store; everything is CPU-bound, so callers run it
//! in `spawn_blocking`.
//!
//! JPEGs are decoded with `jpeg-decoder`'s scaled DCT (1/2, 1/4 or 1/8 straight out of the
//! entropy decoder), so a 12 MP photo becomes a ~500×375 buffer without ever existing at full
//! size; `fast_image_resize` (SIMD convolution) does the last step. PNG and WebP have no
//! scaled decoding and go through the `image` crate under strict limits.

use std::io::Cursor;
use std::panic::{AssertUnwindSafe, catch_unwind};

use ::image::{DynamicImage, ImageFormat, ImageReader, RgbImage};
use fieldsync_model::photo_type::{self, NotAPhoto, signature_name};
use time::{Date, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// Longest side of a console thumbnail, in pixels.
pub const THUMBNAIL_LONGEST_SIDE: u32 = 320;
/// JPEG quality of thumbnails: small files, still legible faces and walls.
pub const THUMBNAIL_JPEG_QUALITY: u8 = 80;
/// JPEG quality of display copies.
pub const DISPLAY_JPEG_QUALITY: u8 = 85;
/// Bytes after a JPEG's last EOI that are tolerated without being all padding (some camera
/// firmware leaves a few stray bytes). Anything longer must be 0x00/0xFF padding.
pub const JPEG_TRAILING_ALLOWANCE: usize = 64;
/// How many further JPEGs (MPF secondary images: depth maps, Ultra HDR gain maps) may follow
/// the primary image. Each is walked marker by marker, never decoded.
const MAX_APPENDED_JPEGS: usize = 4;

/// The image formats fieldsync accepts; the type rules are shared with the phone
/// (`fieldsync_model::photo_type`).
pub use fieldsync_model::photo_type::ImageKind;

/// The `image` crate's name of an accepted format.
fn image_format(kind: ImageKind) -> ImageFormat {
    match kind {
        ImageKind::Jpeg => ImageFormat::Jpeg,
        ImageKind::Png => ImageFormat::Png,
        ImageKind::Webp => ImageFormat::WebP,
    }
}

/// Why a photo was refused. Every variant has a stable [`code`](PhotoRejected::code) for
/// APIs and logs; the messages are for people (Chinese first, English after).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhotoRejected {
    #[error("文件为空 (empty file)")]
    Empty,
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
    #[error(
        "照片末尾附带了其他数据（{trailing_bytes}字节{}），已拒绝 \
         (data after the end of the image: {trailing_bytes} bytes{}; possible polyglot)",
        found.map(|f| format!("，{f}")).unwrap_or_default(),
        found.map(|f| format!(", looks like {f}")).unwrap_or_default()
    )]
    TrailingData {
        kind: ImageKind,
        trailing_bytes: u64,
        found: Option<&'static str>,
    },
    #[error("照片文件结构损坏 (malformed {kind:?}: {reason})")]
    Malformed {
        kind: ImageKind,
        reason: &'static str,
    },
    #[error(
        "照片尺寸{width}×{height}超出限制{max_width}×{max_height} \
         (dimensions {width}x{height} exceed {max_width}x{max_height})"
    )]
    DimensionsTooLarge {
        width: u32,
        height: u32,
        max_width: u32,
        max_height: u32,
    },
    #[error("照片像素过多（{pixels}，上限{max}） (too many pixels: {pixels} > {max})")]
    TooManyPixels { pixels: u64, max: u64 },
    #[error("渐进式JPEG扫描次数过多（超过{max}） (deeply progressive JPEG: more than {max} scans)")]
    TooManyScans { max: u32 },
    #[error("照片无法解码 (cannot decode the photo: {0})")]
    Undecodable(String),
    #[error("照片解码超出内存限制 (decoding exceeds the memory limit: {0})")]
    DecodeLimit(String),
    #[error("cannot encode the derived JPEG: {0}")]
    EncodeFailed(String),
}

impl PhotoRejected {
    /// Stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            PhotoRejected::Empty => "empty",
            PhotoRejected::HeicNeedsConversion { .. } => "heic_needs_conversion",
            PhotoRejected::Markup => "markup_not_image",
            PhotoRejected::UnsupportedFormat { .. } => "unsupported_format",
            PhotoRejected::NotAnImage => "not_an_image",
            PhotoRejected::TrailingData { .. } => "trailing_data",
            PhotoRejected::Malformed { .. } => "malformed",
            PhotoRejected::DimensionsTooLarge { .. } => "dimensions_too_large",
            PhotoRejected::TooManyPixels { .. } => "too_many_pixels",
            PhotoRejected::TooManyScans { .. } => "too_many_scans",
            PhotoRejected::Undecodable(_) => "undecodable",
            PhotoRejected::DecodeLimit(_) => "decode_limit",
            PhotoRejected::EncodeFailed(_) => "encode_failed",
        }
    }

    /// True when the photo was refused for its size or cost (bombs), not for its type.
    pub fn is_limit(&self) -> bool {
        matches!(
            self,
            PhotoRejected::DimensionsTooLarge { .. }
                | PhotoRejected::TooManyPixels { .. }
                | PhotoRejected::TooManyScans { .. }
                | PhotoRejected::DecodeLimit(_)
        )
    }
}

/// Limits checked from headers before any pixel is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest width in pixels; a 200 MP sensor is about 16000 px wide, phones stay below
    /// 12000.
    pub max_width: u32,
    pub max_height: u32,
    /// Largest width × height.
    pub max_pixels: u64,
    /// Largest number of JPEG scans (SOS markers). Real progressive JPEGs have about 10;
    /// each scan may cost a full pass over the coefficients, so hundreds are a CPU bomb.
    pub max_jpeg_scans: u32,
    /// Memory budget handed to the decoders (a second line of defence).
    pub max_decode_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_width: 12_000,
            max_height: 12_000,
            max_pixels: 64_000_000,
            max_jpeg_scans: 64,
            max_decode_bytes: 512 * 1024 * 1024,
        }
    }
}

/// What the headers say, checked against [`Limits`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Inspected {
    pub kind: ImageKind,
    /// Stored (not EXIF-rotated) width and height.
    pub width: u32,
    pub height: u32,
    /// JPEG only: progressive coding, and the number of scans.
    pub progressive: bool,
    pub scans: u32,
}

/// Tell the type from the bytes and refuse what is not a plain JPEG, PNG or WebP
/// (HEIC, markup, other formats, data appended after the image).
pub fn sniff(bytes: &[u8]) -> Result<ImageKind, PhotoRejected> {
    let layout = walk(bytes, None)?;
    Ok(layout.kind)
}

/// [`sniff`], then read the dimensions (and JPEG scan count) from the headers and enforce
/// `limits`. No pixel is decoded and nothing proportional to the image size is allocated.
pub fn inspect(bytes: &[u8], limits: &Limits) -> Result<Inspected, PhotoRejected> {
    let layout = walk(bytes, Some(limits))?;
    Ok(layout.inspected())
}

// ---------------------------------------------------------------------------------------
// Container walking
// ---------------------------------------------------------------------------------------

#[derive(Debug)]
struct Layout {
    kind: ImageKind,
    width: u32,
    height: u32,
    progressive: bool,
    scans: u32,
    /// JPEG: the TIFF data of the first APP1 "Exif" segment.
    exif: Option<Vec<u8>>,
}

impl Layout {
    fn inspected(&self) -> Inspected {
        Inspected {
            kind: self.kind,
            width: self.width,
            height: self.height,
            progressive: self.progressive,
            scans: self.scans,
        }
    }
}

fn walk(bytes: &[u8], limits: Option<&Limits>) -> Result<Layout, PhotoRejected> {
    // The type from the magic bytes, by the rules the phone applies too.
    match photo_type::photo_kind(bytes)? {
        ImageKind::Jpeg => walk_jpeg(bytes, limits),
        ImageKind::Png => walk_png(bytes, limits),
        ImageKind::Webp => walk_webp(bytes, limits),
    }
}

impl From<NotAPhoto> for PhotoRejected {
    fn from(not_a_photo: NotAPhoto) -> Self {
        match not_a_photo {
            NotAPhoto::Empty => PhotoRejected::Empty,
            NotAPhoto::HeicNeedsConversion { brand } => {
                PhotoRejected::HeicNeedsConversion { brand }
            }
            NotAPhoto::Markup => PhotoRejected::Markup,
            NotAPhoto::UnsupportedFormat { format } => PhotoRejected::UnsupportedFormat { format },
            NotAPhoto::NotAnImage => PhotoRejected::NotAnImage,
        }
    }
}

/// Judge what follows the end of an image: a second signature is named; markup too.
fn describe_trailing(trailing: &[u8]) -> Option<&'static str> {
    if trailing
        .windows(4)
        .any(|w| w == b"PK\x03\x04" || w == b"PK\x05\x06")
    {
        return Some("ZIP");
    }
    if trailing.len() >= 8 && &trailing[4..8] == b"ftyp" {
        return Some("MP4");
    }
    if let Some(name) = signature_name(trailing) {
        return Some(name);
    }
    let lower: Vec<u8> = trailing
        .iter()
        .take(4096)
        .map(u8::to_ascii_lowercase)
        .collect();
    let has = |needle: &[u8]| lower.windows(needle.len()).any(|w| w == needle);
    if has(b"<script") || has(b"<?php") || has(b"<html") || has(b"<svg") {
        return Some("script/markup");
    }
    None
}

fn check_dimensions(width: u32, height: u32, limits: &Limits) -> Result<(), PhotoRejected> {
    if width > limits.max_width || height > limits.max_height {
        return Err(PhotoRejected::DimensionsTooLarge {
            width,
            height,
            max_width: limits.max_width,
            max_height: limits.max_height,
        });
    }
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limits.max_pixels {
        return Err(PhotoRejected::TooManyPixels {
            pixels,
            max: limits.max_pixels,
        });
    }
    Ok(())
}

fn be16(bytes: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes(bytes.get(at..at + 2)?.try_into().ok()?))
}

fn be32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn le32(bytes: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?))
}

fn le24(bytes: &[u8], at: usize) -> Option<u32> {
    let b = bytes.get(at..at + 3)?;
    Some(u32::from(b[0]) | u32::from(b[1]) << 8 | u32::from(b[2]) << 16)
}

/// Facts of one JPEG stream, read from SOI through EOI.
struct JpegStream {
    width: u32,
    height: u32,
    progressive: bool,
    scans: u32,
    /// The TIFF data of the first APP1 "Exif" segment (at most 64 KiB).
    exif: Option<Vec<u8>>,
}

/// Why a walk over a [`ByteSource`] stopped: the photo was refused, or (files only) reading
/// failed, which is the server's problem, never the photo's.
#[derive(Debug)]
enum WalkError {
    Rejected(PhotoRejected),
    Io(std::io::Error),
}

impl From<PhotoRejected> for WalkError {
    fn from(rejected: PhotoRejected) -> Self {
        Self::Rejected(rejected)
    }
}

impl From<std::io::Error> for WalkError {
    fn from(error: std::io::Error) -> Self {
        Self::Io(error)
    }
}

/// Bytes of look-ahead a [`ByteSource`] keeps: enough for any marker or segment header, and
/// a large enough read size that walking a file costs few system calls.
const SOURCE_WINDOW: usize = 64 * 1024;

/// A forward-only reader with a small look-ahead window. The JPEG walker runs over it, so
/// the same code checks a photo held in memory and a photo streamed from its file, and a
/// 12 MP file is validated with 64 KiB of memory instead of a copy of the file.
struct ByteSource<R> {
    reader: R,
    window: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
}

impl<R: std::io::Read> ByteSource<R> {
    fn new(reader: R) -> Self {
        Self {
            reader,
            window: vec![0; SOURCE_WINDOW].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
        }
    }

    fn buffered(&self) -> &[u8] {
        &self.window[self.start..self.end]
    }

    /// Make at least `want` (≤ the window) bytes available unless the input ends first.
    fn fill(&mut self, want: usize) -> std::io::Result<()> {
        debug_assert!(want <= self.window.len());
        while self.end - self.start < want && !self.eof {
            if self.end == self.window.len() {
                self.window.copy_within(self.start..self.end, 0);
                self.end -= self.start;
                self.start = 0;
            }
            match self.reader.read(&mut self.window[self.end..]) {
                Ok(0) => self.eof = true,
                Ok(read) => self.end += read,
                Err(error) if error.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    fn peek(&mut self, at: usize) -> std::io::Result<Option<u8>> {
        self.fill(at + 1)?;
        Ok(self.buffered().get(at).copied())
    }

    fn starts_with(&mut self, magic: &[u8]) -> std::io::Result<bool> {
        self.fill(magic.len())?;
        Ok(self.buffered().starts_with(magic))
    }

    /// Step over `count` bytes that [`Self::peek`] already made available.
    fn advance(&mut self, count: usize) {
        debug_assert!(count <= self.end - self.start);
        self.start += count.min(self.end - self.start);
    }

    /// Skip `count` bytes; false when the input ends first.
    fn skip(&mut self, mut count: u64) -> std::io::Result<bool> {
        while count > 0 {
            self.fill(1)?;
            let available = self.end - self.start;
            if available == 0 {
                return Ok(false);
            }
            let step = usize::try_from(count).unwrap_or(usize::MAX).min(available);
            self.start += step;
            count -= step as u64;
        }
        Ok(true)
    }

    /// The next `count` (≤ the window) bytes, or `None` when the input ends first.
    fn take(&mut self, count: usize) -> std::io::Result<Option<Vec<u8>>> {
        self.fill(count)?;
        if self.end - self.start < count {
            return Ok(None);
        }
        let taken = self.window[self.start..self.start + count].to_vec();
        self.start += count;
        Ok(Some(taken))
    }

    /// Move to the next 0xFF byte; false when the input ends first.
    fn skip_to_ff(&mut self) -> std::io::Result<bool> {
        loop {
            self.fill(1)?;
            if self.start == self.end {
                return Ok(false);
            }
            // memchr: entropy-coded data is most of a photo, and 0xFF is one byte in ~256.
            match memchr::memchr(0xFF, self.buffered()) {
                Some(offset) => {
                    self.start += offset;
                    return Ok(true);
                }
                None => self.start = self.end,
            }
        }
    }

    /// Read everything that is left: its length, its first `keep` bytes (to name what it
    /// is) and whether all of it is 0x00/0xFF padding.
    fn rest(&mut self, keep: usize) -> std::io::Result<(u64, Vec<u8>, bool)> {
        let (mut length, mut kept, mut padding_only) = (0u64, Vec::new(), true);
        loop {
            self.fill(1)?;
            let chunk = self.buffered();
            if chunk.is_empty() {
                return Ok((length, kept, padding_only));
            }
            length += chunk.len() as u64;
            padding_only &= chunk.iter().all(|&b| b == 0x00 || b == 0xFF);
            let room = keep.saturating_sub(kept.len()).min(chunk.len());
            kept.extend_from_slice(&chunk[..room]);
            self.start = self.end;
        }
    }
}

/// Most bytes after the image that are kept to say what they are (a ZIP, a script …).
const TRAILING_SAMPLE: usize = 1024 * 1024;

fn walk_jpeg(bytes: &[u8], limits: Option<&Limits>) -> Result<Layout, PhotoRejected> {
    match walk_jpeg_source(&mut ByteSource::new(bytes), limits) {
        Ok(layout) => Ok(layout),
        Err(WalkError::Rejected(rejected)) => Err(rejected),
        // Reading a slice cannot fail.
        Err(WalkError::Io(_)) => Err(PhotoRejected::Malformed {
            kind: ImageKind::Jpeg,
            reason: "unreadable",
        }),
    }
}

fn walk_jpeg_source<R: std::io::Read>(
    source: &mut ByteSource<R>,
    limits: Option<&Limits>,
) -> Result<Layout, WalkError> {
    let primary = walk_jpeg_stream(source, limits)?;
    // After the primary image: MPF secondary JPEGs (gain maps, depth maps) are walked the
    // same way; then only padding may follow.
    let mut appended = 0;
    while appended < MAX_APPENDED_JPEGS && source.starts_with(&[0xFF, 0xD8, 0xFF])? {
        walk_jpeg_stream(source, None)?;
        appended += 1;
    }
    let (trailing_bytes, sample, padding_only) = source.rest(TRAILING_SAMPLE)?;
    let found = describe_trailing(&sample);
    if trailing_bytes > 0
        && (found.is_some() || !(padding_only || trailing_bytes <= JPEG_TRAILING_ALLOWANCE as u64))
    {
        return Err(PhotoRejected::TrailingData {
            kind: ImageKind::Jpeg,
            trailing_bytes,
            found,
        }
        .into());
    }
    Ok(Layout {
        kind: ImageKind::Jpeg,
        width: primary.width,
        height: primary.height,
        progressive: primary.progressive,
        scans: primary.scans,
        exif: primary.exif,
    })
}

/// Walk one JPEG stream from its SOI through its EOI, marker by marker, without decoding.
fn walk_jpeg_stream<R: std::io::Read>(
    source: &mut ByteSource<R>,
    limits: Option<&Limits>,
) -> Result<JpegStream, WalkError> {
    let malformed = |reason| {
        WalkError::Rejected(PhotoRejected::Malformed {
            kind: ImageKind::Jpeg,
            reason,
        })
    };
    if !source.skip(2)? {
        // SOI, checked by the caller
        return Err(malformed("truncated: no EOI"));
    }
    let mut frame: Option<(u32, u32, bool)> = None;
    let mut scans = 0u32;
    let mut exif = None;
    loop {
        // A marker: 0xFF, optional 0xFF fill bytes, then the marker code.
        if source.peek(0)? != Some(0xFF) {
            return Err(malformed("expected a marker"));
        }
        while source.peek(0)? == Some(0xFF) {
            source.advance(1);
        }
        let Some(marker) = source.peek(0)? else {
            return Err(malformed("truncated: no EOI"));
        };
        source.advance(1);
        match marker {
            0xD9 => {
                if scans == 0 {
                    return Err(malformed("no image data before EOI"));
                }
                let (width, height, progressive) = frame.ok_or(malformed("no frame header"))?;
                return Ok(JpegStream {
                    width,
                    height,
                    progressive,
                    scans,
                    exif,
                });
            }
            0xD8 => return Err(malformed("nested SOI")),
            0x01 | 0xD0..=0xD7 => continue, // standalone markers
            0x00 => return Err(malformed("stuffed zero outside a scan")),
            _ => {}
        }
        let length = match (source.peek(0)?, source.peek(1)?) {
            (Some(high), Some(low)) => usize::from(u16::from_be_bytes([high, low])),
            _ => return Err(malformed("truncated segment")),
        };
        if length < 2 {
            return Err(malformed("segment length out of range"));
        }
        let is_frame = matches!(marker, 0xC0..=0xCF if !matches!(marker, 0xC4 | 0xC8 | 0xCC));
        let is_exif = marker == 0xE1 && exif.is_none();
        if is_frame || is_exif {
            let Some(segment) = source.take(length)? else {
                return Err(malformed("segment length out of range"));
            };
            let segment = &segment[2..];
            if is_frame {
                // SOF0..SOF15 except DHT (C4), JPG (C8) and DAC (CC).
                if frame.is_some() {
                    return Err(malformed("more than one frame header"));
                }
                if segment.len() < 6 {
                    return Err(malformed("short frame header"));
                }
                let height = u32::from(be16(segment, 1).unwrap_or(0));
                let width = u32::from(be16(segment, 3).unwrap_or(0));
                if width == 0 || height == 0 {
                    return Err(malformed("zero width or height (DNL is not supported)"));
                }
                if let Some(limits) = limits {
                    check_dimensions(width, height, limits)?;
                }
                let progressive = matches!(marker, 0xC2 | 0xC6 | 0xCA | 0xCE);
                frame = Some((width, height, progressive));
            } else if let Some(tiff) = segment.strip_prefix(b"Exif\0\0") {
                exif = Some(tiff.to_vec());
            }
        } else if !source.skip(length as u64)? {
            return Err(malformed("segment length out of range"));
        }
        if marker == 0xDA {
            if frame.is_none() {
                return Err(malformed("scan before frame header"));
            }
            scans += 1;
            if let Some(limits) = limits
                && scans > limits.max_jpeg_scans
            {
                return Err(PhotoRejected::TooManyScans {
                    max: limits.max_jpeg_scans,
                }
                .into());
            }
            // Entropy-coded data runs until a 0xFF that is not a stuffed zero or a restart.
            loop {
                if !source.skip_to_ff()? {
                    return Err(malformed("truncated: no EOI"));
                }
                match source.peek(1)? {
                    Some(0x00 | 0xD0..=0xD7) => source.advance(2),
                    Some(_) => break,
                    None => return Err(malformed("truncated: no EOI")),
                }
            }
        }
    }
}

fn walk_png(bytes: &[u8], limits: Option<&Limits>) -> Result<Layout, PhotoRejected> {
    let malformed = |reason| PhotoRejected::Malformed {
        kind: ImageKind::Png,
        reason,
    };
    let mut position = 8;
    let mut size = None;
    loop {
        let length = be32(bytes, position).ok_or(malformed("truncated: no IEND"))? as usize;
        let kind = bytes
            .get(position + 4..position + 8)
            .ok_or(malformed("truncated chunk"))?;
        let end = (position + 12)
            .checked_add(length)
            .filter(|&end| end <= bytes.len() && length <= 0x7FFF_FFFF)
            .ok_or(malformed("chunk length out of range"))?;
        let data = &bytes[position + 8..position + 8 + length];
        if size.is_none() {
            if kind != b"IHDR" || length != 13 {
                return Err(malformed("first chunk is not IHDR"));
            }
            let width = be32(data, 0).unwrap_or(0);
            let height = be32(data, 4).unwrap_or(0);
            if width == 0 || height == 0 {
                return Err(malformed("zero width or height"));
            }
            if let Some(limits) = limits {
                check_dimensions(width, height, limits)?;
            }
            size = Some((width, height));
        }
        position = end;
        if kind == b"IEND" {
            break;
        }
    }
    let trailing = &bytes[position..];
    if !trailing.is_empty() {
        return Err(PhotoRejected::TrailingData {
            kind: ImageKind::Png,
            trailing_bytes: trailing.len() as u64,
            found: describe_trailing(trailing),
        });
    }
    let (width, height) = size.ok_or(malformed("no IHDR"))?;
    Ok(Layout {
        kind: ImageKind::Png,
        width,
        height,
        progressive: false,
        scans: 0,
        exif: None,
    })
}

fn walk_webp(bytes: &[u8], limits: Option<&Limits>) -> Result<Layout, PhotoRejected> {
    let malformed = |reason| PhotoRejected::Malformed {
        kind: ImageKind::Webp,
        reason,
    };
    let riff_end = le32(bytes, 4)
        .and_then(|size| (size as usize).checked_add(8))
        .filter(|&end| end <= bytes.len() && end >= 12)
        .ok_or(malformed("RIFF size out of range"))?;
    let trailing = &bytes[riff_end..];
    // RIFF pads to even sizes; a writer that forgot to count its pad byte leaves one.
    if trailing.len() > 1 || trailing.iter().any(|&b| b != 0) {
        return Err(PhotoRejected::TrailingData {
            kind: ImageKind::Webp,
            trailing_bytes: trailing.len() as u64,
            found: describe_trailing(trailing),
        });
    }
    let chunk = bytes
        .get(12..20)
        .ok_or(malformed("no chunk after the header"))?;
    let data = &bytes[20..riff_end];
    let (width, height) = match &chunk[0..4] {
        b"VP8X" => {
            let width = le24(data, 4).ok_or(malformed("short VP8X"))? + 1;
            let height = le24(data, 7).ok_or(malformed("short VP8X"))? + 1;
            (width, height)
        }
        b"VP8 " => {
            // Frame tag (3 bytes), start code 9d 01 2a, then 14-bit width and height.
            if data.get(3..6) != Some(&[0x9D, 0x01, 0x2A]) {
                return Err(malformed("bad VP8 start code"));
            }
            let width = u32::from(u16::from_le_bytes([data[6], data[7]]) & 0x3FFF);
            let height = u32::from(
                u16::from_le_bytes([*data.get(8).unwrap_or(&0), *data.get(9).unwrap_or(&0)])
                    & 0x3FFF,
            );
            (width, height)
        }
        b"VP8L" => {
            if data.first() != Some(&0x2F) {
                return Err(malformed("bad VP8L signature"));
            }
            let bits = le32(data, 1).ok_or(malformed("short VP8L"))?;
            ((bits & 0x3FFF) + 1, ((bits >> 14) & 0x3FFF) + 1)
        }
        _ => return Err(malformed("unknown first chunk")),
    };
    if width == 0 || height == 0 {
        return Err(malformed("zero width or height"));
    }
    if let Some(limits) = limits {
        check_dimensions(width, height, limits)?;
    }
    Ok(Layout {
        kind: ImageKind::Webp,
        width,
        height,
        progressive: false,
        scans: 0,
        exif: None,
    })
}

// ---------------------------------------------------------------------------------------
// EXIF
// ---------------------------------------------------------------------------------------

/// When the photo was taken, as the camera recorded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CaptureTime {
    /// DateTimeOriginal with OffsetTimeOriginal: an instant.
    Offset(OffsetDateTime),
    /// DateTimeOriginal alone: the camera's local wall-clock time, zone unknown.
    Local(PrimitiveDateTime),
}

/// A GPS position from EXIF, in decimal degrees (WGS-84 as cameras record it; south and west
/// negative).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ExifGps {
    pub latitude: f64,
    pub longitude: f64,
}

/// The EXIF facts that evidence checks use. Everything is optional: phones differ.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PhotoExif {
    pub captured: Option<CaptureTime>,
    pub gps: Option<ExifGps>,
    pub make: Option<String>,
    pub model: Option<String>,
    /// EXIF orientation 1..=8 (1 = upright).
    pub orientation: Option<u16>,
    /// GPSDateStamp + GPSTimeStamp: the satellite clock's UTC time of the fix, independent
    /// of the phone's clock.
    pub gps_time: Option<OffsetDateTime>,
    /// The EXIF block is there but part (or all) of it could not be read: a malformed
    /// entry, a pointer out of range, a loop. The fields above are every tag that did parse.
    /// Distinct from a photo without EXIF (`read_exif` gives `None`): an in-app camera photo
    /// whose EXIF is damaged was most likely re-saved by an editor.
    pub damaged: bool,
}

/// Read the EXIF block of a JPEG, PNG or WebP. A photo without EXIF gives `None`. A damaged
/// block keeps every tag that parses and is marked [`PhotoExif::damaged`] (one bad entry
/// must not take the capture time and GPS with it). The reader never panics the caller (a
/// panic inside the parser is caught) and its work is linear in the size of the EXIF block.
pub fn read_exif(bytes: &[u8]) -> Option<PhotoExif> {
    let layout = walk(bytes, None).ok()?;
    exif_of(bytes, &layout)
}

fn exif_of(bytes: &[u8], layout: &Layout) -> Option<PhotoExif> {
    let parsed = catch_unwind(AssertUnwindSafe(|| {
        let mut reader = exif::Reader::new();
        // Skip a malformed entry or sub-IFD instead of giving up on the whole block: the
        // answer is then `PartialResult` with everything that parsed.
        reader.continue_on_error(true);
        match &layout.exif {
            Some(tiff) => reader.read_raw(tiff.clone()),
            None if layout.kind == ImageKind::Jpeg => Err(exif::Error::NotFound("JPEG")),
            None => reader.read_from_container(&mut Cursor::new(bytes)),
        }
    }));
    let (exif, damaged) = match parsed {
        Ok(Ok(exif)) => (exif, false),
        Ok(Err(exif::Error::PartialResult(partial))) => (partial.into_inner().0, true),
        // A JPEG's Exif segment is there but not even its header reads (or the parser
        // panicked): damaged, with nothing salvaged.
        Ok(Err(_)) | Err(_) if layout.exif.is_some() => {
            return Some(PhotoExif {
                damaged: true,
                ..PhotoExif::default()
            });
        }
        // PNG/WebP: the container reader cannot tell "no EXIF chunk" from a chunk it could
        // not find, so anything else is no EXIF, as before.
        Ok(Err(_)) | Err(_) => return None,
    };
    Some(PhotoExif {
        damaged,
        captured: capture_time(&exif),
        gps: gps(&exif),
        make: ascii(&exif, exif::Tag::Make),
        model: ascii(&exif, exif::Tag::Model),
        orientation: exif
            .get_field(exif::Tag::Orientation, exif::In::PRIMARY)
            .and_then(|field| field.value.get_uint(0))
            .and_then(|value| u16::try_from(value).ok())
            .filter(|value| (1..=8).contains(value)),
        gps_time: gps_time(&exif),
    })
}

fn gps_time(exif: &exif::Exif) -> Option<OffsetDateTime> {
    let date = ascii_bytes(exif, exif::Tag::GPSDateStamp)?;
    let text = std::str::from_utf8(date.get(..10)?).ok()?;
    let number = |range: std::ops::Range<usize>| text.get(range)?.parse::<u16>().ok();
    let date = Date::from_calendar_date(
        i32::from(number(0..4)?),
        Month::try_from(u8::try_from(number(5..7)?).ok()?).ok()?,
        u8::try_from(number(8..10)?).ok()?,
    )
    .ok()?;
    let exif::Value::Rational(parts) = &exif
        .get_field(exif::Tag::GPSTimeStamp, exif::In::PRIMARY)?
        .value
    else {
        return None;
    };
    let part = |i: usize| {
        parts
            .get(i)
            .filter(|r| r.denom != 0)
            .map(|r| r.to_f64())
            .filter(|v| v.is_finite() && *v >= 0.0)
    };
    let seconds = part(0)? * 3600.0 + part(1)? * 60.0 + part(2)?;
    if seconds >= 86_400.0 {
        return None;
    }
    let whole = seconds.floor();
    let time = Time::from_hms(
        (whole / 3600.0) as u8,
        ((whole % 3600.0) / 60.0) as u8,
        (whole % 60.0) as u8,
    )
    .ok()?;
    Some(PrimitiveDateTime::new(date, time).assume_utc())
}

fn ascii_bytes(exif: &exif::Exif, tag: exif::Tag) -> Option<&[u8]> {
    match &exif.get_field(tag, exif::In::PRIMARY)?.value {
        exif::Value::Ascii(values) => values.first().map(Vec::as_slice),
        _ => None,
    }
}

fn ascii(exif: &exif::Exif, tag: exif::Tag) -> Option<String> {
    let text = String::from_utf8_lossy(ascii_bytes(exif, tag)?);
    let text = text.trim_matches(|c: char| c == '\0' || c.is_whitespace());
    (!text.is_empty()).then(|| text.to_owned())
}

fn capture_time(exif: &exif::Exif) -> Option<CaptureTime> {
    let mut stamp =
        exif::DateTime::from_ascii(ascii_bytes(exif, exif::Tag::DateTimeOriginal)?).ok()?;
    let date = Date::from_calendar_date(
        i32::from(stamp.year),
        Month::try_from(stamp.month).ok()?,
        stamp.day,
    )
    .ok()?;
    let local = PrimitiveDateTime::new(
        date,
        Time::from_hms(stamp.hour, stamp.minute, stamp.second).ok()?,
    );
    let offset = ascii_bytes(exif, exif::Tag::OffsetTimeOriginal)
        .and_then(|text| stamp.parse_offset(text).ok())
        .and(stamp.offset)
        .and_then(|minutes| UtcOffset::from_whole_seconds(i32::from(minutes) * 60).ok());
    Some(match offset {
        Some(offset) => CaptureTime::Offset(local.assume_offset(offset)),
        None => CaptureTime::Local(local),
    })
}

fn gps(exif: &exif::Exif) -> Option<ExifGps> {
    fn degrees(exif: &exif::Exif, tag: exif::Tag) -> Option<f64> {
        match &exif.get_field(tag, exif::In::PRIMARY)?.value {
            exif::Value::Rational(parts) if !parts.is_empty() => {
                let part = |i: usize| {
                    parts
                        .get(i)
                        .filter(|r| r.denom != 0)
                        .map_or(0.0, |r| r.to_f64())
                };
                if parts[0].denom == 0 {
                    return None;
                }
                Some(part(0) + part(1) / 60.0 + part(2) / 3600.0)
            }
            _ => None,
        }
    }
    let latitude = degrees(exif, exif::Tag::GPSLatitude)?;
    let longitude = degrees(exif, exif::Tag::GPSLongitude)?;
    let sign = |tag, negative: u8| match ascii_bytes(exif, tag)?.first()? {
        b if b.eq_ignore_ascii_case(&negative) => Some(-1.0),
        _ => Some(1.0),
    };
    let latitude = latitude * sign(exif::Tag::GPSLatitudeRef, b'S')?;
    let longitude = longitude * sign(exif::Tag::GPSLongitudeRef, b'W')?;
    let valid = latitude.is_finite()
        && longitude.is_finite()
        && latitude.abs() <= 90.0
        && longitude.abs() <= 180.0;
    valid.then_some(ExifGps {
        latitude,
        longitude,
    })
}

// ---------------------------------------------------------------------------------------
// Decoding and derivatives
// ---------------------------------------------------------------------------------------

/// An RGB8 buffer.
struct Rgb {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
}

/// Decode at the smallest size whose longest side is still ≥ `target` (JPEG scaled DCT), or
/// at full size for PNG/WebP. Runs [`inspect`] first.
fn decode_for(bytes: &[u8], limits: &Limits, target: u32) -> Result<(Layout, Rgb), PhotoRejected> {
    let layout = walk(bytes, Some(limits))?;
    let decoded = catch_unwind(AssertUnwindSafe(|| match layout.kind {
        ImageKind::Jpeg => decode_jpeg_scaled(bytes, limits, target)
            .or_else(|_| decode_with_image_crate(Cursor::new(bytes), layout.kind, limits)),
        kind => decode_with_image_crate(Cursor::new(bytes), kind, limits),
    }))
    .unwrap_or_else(|_| Err(PhotoRejected::Undecodable("decoder panicked".to_owned())))?;
    Ok((layout, decoded))
}

/// What [`decode_file_for`] found: the layout, the pixels and the EXIF facts.
type DecodedFile = (Layout, Rgb, Option<PhotoExif>);

/// [`decode_for`] and the EXIF facts for a photo in a file. A JPEG is never held in memory:
/// it is walked through a 64 KiB window (the same checks as [`inspect`], trailing data
/// included) and then decoded from a buffered reader, so one thumbnail costs the scaled
/// pixel buffers, not the file. PNG and WebP (rare from phones) are read whole.
/// The outer error is the server failing to read its own file; the inner one a refusal.
fn decode_file_for(
    path: &std::path::Path,
    limits: &Limits,
    target: u32,
) -> std::io::Result<Result<DecodedFile, PhotoRejected>> {
    use std::io::{BufReader, Seek, SeekFrom};
    let mut file = std::fs::File::open(path)?;
    let mut source = ByteSource::new(&file);
    if !source.starts_with(&[0xFF, 0xD8, 0xFF])? {
        let bytes = std::fs::read(path)?;
        return Ok(decode_for(&bytes, limits, target).map(|(layout, decoded)| {
            let exif = exif_of(&bytes, &layout);
            (layout, decoded, exif)
        }));
    }
    let layout = match walk_jpeg_source(&mut source, Some(limits)) {
        Ok(layout) => layout,
        Err(WalkError::Rejected(rejected)) => return Ok(Err(rejected)),
        Err(WalkError::Io(error)) => return Err(error),
    };
    drop(source);
    file.seek(SeekFrom::Start(0))?;
    let scaled = catch_unwind(AssertUnwindSafe(|| {
        decode_jpeg_scaled(ByteAtATimeReader(BufReader::new(&file)), limits, target)
    }))
    .unwrap_or_else(|_| Err(PhotoRejected::Undecodable("decoder panicked".to_owned())));
    let decoded = match scaled {
        Ok(decoded) => Ok(decoded),
        Err(_) => {
            file.seek(SeekFrom::Start(0))?;
            catch_unwind(AssertUnwindSafe(|| {
                decode_with_image_crate(BufReader::new(&file), ImageKind::Jpeg, limits)
            }))
            .unwrap_or_else(|_| Err(PhotoRejected::Undecodable("decoder panicked".to_owned())))
        }
    };
    // A JPEG's EXIF block was copied out by the walk; the bytes are not needed.
    Ok(decoded.map(|decoded| {
        let exif = exif_of(&[], &layout);
        (layout, decoded, exif)
    }))
}

/// A buffered reader whose one-byte `read_exact` is a plain load. jpeg-decoder's Huffman
/// decoder pulls the entropy-coded data a byte at a time through `read_exact`, and
/// `BufReader`'s general `read_exact` (a `memcpy` call per byte) was about a quarter of a
/// 12 MP thumbnail's instructions under callgrind. Slices already special-case one byte.
struct ByteAtATimeReader<R>(std::io::BufReader<R>);

impl<R: std::io::Read> std::io::Read for ByteAtATimeReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buffer)
    }

    fn read_exact(&mut self, buffer: &mut [u8]) -> std::io::Result<()> {
        use std::io::BufRead;
        if let [byte] = buffer
            && let Some(&next) = self.0.buffer().first()
        {
            *byte = next;
            self.0.consume(1);
            return Ok(());
        }
        self.0.read_exact(buffer)
    }
}

fn decode_jpeg_scaled(
    input: impl std::io::Read,
    limits: &Limits,
    target: u32,
) -> Result<Rgb, PhotoRejected> {
    let mut decoder = jpeg_decoder::Decoder::new(input);
    decoder.set_max_decoding_buffer_size(
        usize::try_from(limits.max_decode_bytes).unwrap_or(usize::MAX),
    );
    let target = u16::try_from(target).unwrap_or(u16::MAX);
    decoder
        .scale(target, target)
        .map_err(|error| PhotoRejected::Undecodable(error.to_string()))?;
    let pixels = decoder
        .decode()
        .map_err(|error| PhotoRejected::Undecodable(error.to_string()))?;
    let info = decoder
        .info()
        .ok_or_else(|| PhotoRejected::Undecodable("no frame".to_owned()))?;
    let (width, height) = (u32::from(info.width), u32::from(info.height));
    let pixels = match info.pixel_format {
        jpeg_decoder::PixelFormat::RGB24 => pixels,
        jpeg_decoder::PixelFormat::L8 => pixels.iter().flat_map(|&l| [l, l, l]).collect(),
        // CMYK and 16-bit lossless JPEGs are rare: let the general path handle them.
        _ => {
            return Err(PhotoRejected::Undecodable(
                "unusual JPEG colour format".to_owned(),
            ));
        }
    };
    if pixels.len() != width as usize * height as usize * 3 {
        return Err(PhotoRejected::Undecodable("short pixel buffer".to_owned()));
    }
    Ok(Rgb {
        width,
        height,
        pixels,
    })
}

fn decode_with_image_crate(
    input: impl std::io::BufRead + std::io::Seek,
    kind: ImageKind,
    limits: &Limits,
) -> Result<Rgb, PhotoRejected> {
    let mut decode_limits = ::image::Limits::default();
    decode_limits.max_image_width = Some(limits.max_width);
    decode_limits.max_image_height = Some(limits.max_height);
    decode_limits.max_alloc = Some(limits.max_decode_bytes);
    let mut reader = ImageReader::with_format(input, image_format(kind));
    reader.limits(decode_limits);
    let map = |error: ::image::ImageError| match error {
        ::image::ImageError::Limits(limit) => PhotoRejected::DecodeLimit(limit.to_string()),
        other => PhotoRejected::Undecodable(other.to_string()),
    };
    let decoder = reader.into_decoder().map_err(map)?;
    let image = DynamicImage::from_decoder(decoder).map_err(map)?;
    let rgb = match image {
        DynamicImage::ImageRgb8(rgb) => rgb,
        other => other.to_rgb8(),
    };
    Ok(Rgb {
        width: rgb.width(),
        height: rgb.height(),
        pixels: rgb.into_raw(),
    })
}

/// Fit `width`×`height` into a `max_side` square, keeping the aspect ratio; never enlarge.
fn fitted(width: u32, height: u32, max_side: u32) -> (u32, u32) {
    let longest = width.max(height);
    if longest <= max_side {
        return (width, height);
    }
    let scale = |side: u32| {
        ((u64::from(side) * u64::from(max_side) + u64::from(longest) / 2) / u64::from(longest))
            .max(1) as u32
    };
    (scale(width), scale(height))
}

fn resize(image: Rgb, max_side: u32) -> Result<Rgb, PhotoRejected> {
    let (width, height) = fitted(image.width, image.height, max_side);
    // Two single-direction passes, vertical first, in place of one two-direction call:
    // `fast_image_resize` would run the same two passes (vertical first for 8-bit pixels)
    // through a scratch image of source width × target height while the source and the
    // target both exist. Dropping the source between the passes removes one image from the
    // peak (about 230 KB of a 12 MP photo's 1/8-scale thumbnail path), with identical pixels.
    let source_width = image.width;
    let tall = convolve(image, source_width, height)?;
    convolve(tall, width, height)
}

/// Resample to `width`×`height` with Lanczos3; a no-op when the size is unchanged.
fn convolve(image: Rgb, width: u32, height: u32) -> Result<Rgb, PhotoRejected> {
    use fast_image_resize as fir;
    if (width, height) == (image.width, image.height) {
        return Ok(image);
    }
    let failed = |error: &dyn std::fmt::Display| PhotoRejected::Undecodable(error.to_string());
    let source = fir::images::Image::from_vec_u8(
        image.width,
        image.height,
        image.pixels,
        fir::PixelType::U8x3,
    )
    .map_err(|error| failed(&error))?;
    let mut target = fir::images::Image::new(width, height, fir::PixelType::U8x3);
    fir::Resizer::new()
        .resize(
            &source,
            &mut target,
            &fir::ResizeOptions::new()
                .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3)),
        )
        .map_err(|error| failed(&error))?;
    Ok(Rgb {
        width,
        height,
        pixels: target.into_vec(),
    })
}

/// Turn the pixels upright per the EXIF orientation (applied after resizing: cheaper).
fn upright(image: Rgb, orientation: Option<u16>) -> Rgb {
    let orientation = orientation
        .and_then(|value| u8::try_from(value).ok())
        .and_then(::image::metadata::Orientation::from_exif)
        .unwrap_or(::image::metadata::Orientation::NoTransforms);
    if orientation == ::image::metadata::Orientation::NoTransforms {
        return image;
    }
    let Some(buffer) = RgbImage::from_raw(image.width, image.height, image.pixels) else {
        unreachable!("buffer length checked when decoded")
    };
    let mut dynamic = DynamicImage::ImageRgb8(buffer);
    dynamic.apply_orientation(orientation);
    let rgb = dynamic.into_rgb8();
    Rgb {
        width: rgb.width(),
        height: rgb.height(),
        pixels: rgb.into_raw(),
    }
}

fn encode_jpeg(image: &Rgb, quality: u8) -> Result<Vec<u8>, PhotoRejected> {
    let mut output = Vec::with_capacity(image.pixels.len() / 8);
    let width =
        u16::try_from(image.width).map_err(|_| PhotoRejected::EncodeFailed("width".into()))?;
    let height =
        u16::try_from(image.height).map_err(|_| PhotoRejected::EncodeFailed("height".into()))?;
    jpeg_encoder::Encoder::new(&mut output, quality)
        .encode(&image.pixels, width, height, jpeg_encoder::ColorType::Rgb)
        .map_err(|error| PhotoRejected::EncodeFailed(error.to_string()))?;
    Ok(output)
}

/// Decode, fit into `max_side`, turn upright; the shared path of the derivatives.
fn upright_fitted(bytes: &[u8], limits: &Limits, max_side: u32) -> Result<Rgb, PhotoRejected> {
    let (layout, decoded) = decode_for(bytes, limits, max_side)?;
    let orientation = exif_of(bytes, &layout).and_then(|exif| exif.orientation);
    Ok(upright(resize(decoded, max_side)?, orientation))
}

/// The console's display copy: a fresh JPEG no larger than `max_side` on its longest side,
/// with the EXIF orientation applied and no metadata at all (the encoder writes none, so GPS,
/// serial numbers and anything appended are gone). Runs [`inspect`] with default limits.
pub fn render_display(bytes: &[u8], max_side: u32) -> Result<Vec<u8>, PhotoRejected> {
    render_display_with(bytes, max_side, &Limits::default())
}

/// [`render_display`] with explicit limits.
pub fn render_display_with(
    bytes: &[u8],
    max_side: u32,
    limits: &Limits,
) -> Result<Vec<u8>, PhotoRejected> {
    let max_side = max_side.max(1);
    encode_jpeg(
        &upright_fitted(bytes, limits, max_side)?,
        DISPLAY_JPEG_QUALITY,
    )
}

/// The console thumbnail: like [`render_display`] with the longest side
/// [`THUMBNAIL_LONGEST_SIDE`] and quality [`THUMBNAIL_JPEG_QUALITY`].
pub fn thumbnail(bytes: &[u8]) -> Result<Vec<u8>, PhotoRejected> {
    encode_jpeg(
        &upright_fitted(bytes, &Limits::default(), THUMBNAIL_LONGEST_SIDE)?,
        THUMBNAIL_JPEG_QUALITY,
    )
}

/// [`thumbnail`] of the photo in a file, without holding the file in memory (see
/// [`decode_file_for`]). The outer error is a failure to read the file.
pub fn thumbnail_file(path: &std::path::Path) -> std::io::Result<Result<Vec<u8>, PhotoRejected>> {
    Ok(
        decode_file_for(path, &Limits::default(), THUMBNAIL_LONGEST_SIDE)?.and_then(
            |(_, decoded, exif)| {
                let orientation = exif.and_then(|exif| exif.orientation);
                let small = upright(resize(decoded, THUMBNAIL_LONGEST_SIDE)?, orientation);
                encode_jpeg(&small, THUMBNAIL_JPEG_QUALITY)
            },
        ),
    )
}

// ---------------------------------------------------------------------------------------
// Perceptual hash
// ---------------------------------------------------------------------------------------

/// A 64-bit perceptual hash: the classic DCT pHash (8×8 lowest frequencies of a 16×16 grey
/// copy of the upright image, each bit = coefficient above the median), computed by the
/// `image_hasher` crate. On the test photos, re-encoded or resized copies are 0–4 bits
/// apart and different photos 26 or more; image_hasher's mean-threshold DCT variant
/// separated them far worse (5 bits between two different photos), hence the median.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PerceptualHash(pub u64);

impl PerceptualHash {
    /// Number of differing bits.
    pub fn distance(self, other: PerceptualHash) -> u32 {
        (self.0 ^ other.0).count_ones()
    }

    /// The hash as 16 hex digits, for storage.
    pub fn to_hex(self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Side the image is brought to before hashing: the hash looks at the lowest 8×8 DCT
/// frequencies of a 16×16 image, so a scaled JPEG decode this small loses nothing.
const HASH_DECODE_SIDE: u32 = 64;

/// The perceptual hash of a photo (runs [`inspect`] with `limits` first).
pub fn perceptual_hash(bytes: &[u8], limits: &Limits) -> Result<PerceptualHash, PhotoRejected> {
    Ok(hash_rgb(upright_fitted(bytes, limits, HASH_DECODE_SIDE)?))
}

fn hash_rgb(image: Rgb) -> PerceptualHash {
    let Some(buffer) = RgbImage::from_raw(image.width, image.height, image.pixels) else {
        unreachable!("buffer length checked when decoded")
    };
    let hasher = image_hasher::HasherConfig::with_bytes_type::<[u8; 8]>()
        .hash_size(8, 8)
        .hash_alg(image_hasher::HashAlg::Median)
        .preproc_dct()
        .to_hasher();
    let hash = hasher.hash_image(&DynamicImage::ImageRgb8(buffer));
    PerceptualHash(u64::from_be_bytes(hash.into_inner()))
}

// ---------------------------------------------------------------------------------------
// Everything at once
// ---------------------------------------------------------------------------------------

/// Every derivative of an accepted photo, from one decode: what upload completion stores.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub inspected: Inspected,
    pub exif: Option<PhotoExif>,
    pub phash: PerceptualHash,
    /// Upright, metadata-free JPEG with the longest side ≤ the requested display side.
    pub display_jpeg: Vec<u8>,
    /// Upright, metadata-free JPEG with the longest side ≤ [`THUMBNAIL_LONGEST_SIDE`].
    pub thumbnail_jpeg: Vec<u8>,
}

/// Inspect, read EXIF, decode once at display size and derive the display copy, the
/// thumbnail and the perceptual hash from that one decode.
pub fn prepare(
    bytes: &[u8],
    limits: &Limits,
    display_max_side: u32,
) -> Result<Prepared, PhotoRejected> {
    let display_max_side = display_max_side.max(THUMBNAIL_LONGEST_SIDE);
    let (layout, decoded) = decode_for(bytes, limits, display_max_side)?;
    let exif = exif_of(bytes, &layout);
    derive(&layout, decoded, exif, display_max_side)
}

/// [`prepare`] for a photo in a file, streamed rather than read whole (see
/// [`decode_file_for`]): what upload completion runs on the staged file. The outer error is
/// a failure to read the file, the inner one a refusal of the photo.
pub fn prepare_file(
    path: &std::path::Path,
    limits: &Limits,
    display_max_side: u32,
) -> std::io::Result<Result<Prepared, PhotoRejected>> {
    let display_max_side = display_max_side.max(THUMBNAIL_LONGEST_SIDE);
    Ok(decode_file_for(path, limits, display_max_side)?
        .and_then(|(layout, decoded, exif)| derive(&layout, decoded, exif, display_max_side)))
}

/// The display copy, thumbnail and perceptual hash from one decode.
fn derive(
    layout: &Layout,
    decoded: Rgb,
    exif: Option<PhotoExif>,
    display_max_side: u32,
) -> Result<Prepared, PhotoRejected> {
    let orientation = exif.as_ref().and_then(|exif| exif.orientation);
    let display = upright(resize(decoded, display_max_side)?, orientation);
    let display_jpeg = encode_jpeg(&display, DISPLAY_JPEG_QUALITY)?;
    let small = resize(display, THUMBNAIL_LONGEST_SIDE)?;
    let thumbnail_jpeg = encode_jpeg(&small, THUMBNAIL_JPEG_QUALITY)?;
    let phash = hash_rgb(resize(small, HASH_DECODE_SIDE)?);
    Ok(Prepared {
        inspected: layout.inspected(),
        exif,
        phash,
        display_jpeg,
        thumbnail_jpeg,
    })
}

// ---------------------------------------------------------------------------------------
// Synthetic hostile files
// ---------------------------------------------------------------------------------------

/// Tiny generated hostile files for tests and benchmarks (nothing large is committed).
pub mod synthetic {
    /// CRC-32 (ISO-HDLC) for PNG chunks.
    fn crc32(parts: &[&[u8]]) -> u32 {
        let mut crc = 0xFFFF_FFFFu32;
        for byte in parts.iter().flat_map(|part| part.iter()) {
            crc ^= u32::from(*byte);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }

    fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
        out.extend_from_slice(&(data.len() as u32).to_be_bytes());
        out.extend_from_slice(kind);
        out.extend_from_slice(data);
        out.extend_from_slice(&crc32(&[kind, data]).to_be_bytes());
    }

    /// A 1-bit greyscale PNG claiming `width`×`height` (Fifield-style pixel flood) with a
    /// small, valid zlib IDAT; a decoder that trusted the header would allocate
    /// width×height bytes or more (2.5 GB for 50,000×50,000 as 8-bit grey).
    pub fn png_bomb(width: u32, height: u32) -> Vec<u8> {
        let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
        let mut ihdr = Vec::new();
        ihdr.extend_from_slice(&width.to_be_bytes());
        ihdr.extend_from_slice(&height.to_be_bytes());
        ihdr.extend_from_slice(&[1, 0, 0, 0, 0]); // 1-bit grey, deflate, no interlace
        png_chunk(&mut out, b"IHDR", &ihdr);
        // zlib header, one final stored block with 4 zero bytes, Adler-32 of them.
        let idat = [
            0x78, 0x01, 0x01, 0x04, 0x00, 0xFB, 0xFF, 0, 0, 0, 0, 0x00, 0x04, 0x00, 0x01,
        ];
        png_chunk(&mut out, b"IDAT", &idat);
        png_chunk(&mut out, b"IEND", &[]);
        out
    }

    fn segment(out: &mut Vec<u8>, marker: u8, data: &[u8]) {
        out.extend_from_slice(&[0xFF, marker]);
        out.extend_from_slice(&((data.len() + 2) as u16).to_be_bytes());
        out.extend_from_slice(data);
    }

    fn jpeg_tables(out: &mut Vec<u8>) {
        let mut dqt = vec![0u8];
        dqt.extend(std::iter::repeat_n(1u8, 64));
        segment(out, 0xDB, &dqt);
        // One DC and one AC table, each with a single 1-bit code for symbol 0.
        let mut dht = Vec::new();
        for class in [0x00u8, 0x10] {
            dht.push(class);
            dht.push(1);
            dht.extend(std::iter::repeat_n(0u8, 15));
            dht.push(0);
        }
        segment(out, 0xC4, &dht);
    }

    fn sof(out: &mut Vec<u8>, marker: u8, width: u16, height: u16) {
        let mut sof = vec![8];
        sof.extend_from_slice(&height.to_be_bytes());
        sof.extend_from_slice(&width.to_be_bytes());
        sof.extend_from_slice(&[1, 1, 0x11, 0]); // one grey component
        segment(out, marker, &sof);
    }

    /// A baseline JPEG whose frame header claims `width`×`height` (a few hundred bytes).
    pub fn jpeg_header_bomb(width: u16, height: u16) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        jpeg_tables(&mut out);
        sof(&mut out, 0xC0, width, height);
        segment(&mut out, 0xDA, &[1, 1, 0x00, 0, 63, 0]);
        out.extend_from_slice(&[0x00; 16]);
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    /// A progressive JPEG of modest size with `scans` scans, each a separate pass over all
    /// coefficients for a decoder (the "deeply progressive" CPU bomb).
    pub fn progressive_bomb(scans: u32) -> Vec<u8> {
        let mut out = vec![0xFF, 0xD8];
        jpeg_tables(&mut out);
        sof(&mut out, 0xC2, 4096, 4096);
        for _ in 0..scans {
            // DC-first scan of component 1 (Ss = Se = 0, Ah = Al = 0), one byte of data.
            segment(&mut out, 0xDA, &[1, 1, 0x00, 0, 0, 0]);
            out.push(0x00);
        }
        out.extend_from_slice(&[0xFF, 0xD9]);
        out
    }

    /// An APP1 "Exif" payload (without marker and length) holding only IFD0 Orientation.
    pub fn exif_orientation(orientation: u16) -> Vec<u8> {
        let mut app1 = b"Exif\0\0MM\0*\0\0\0\x08".to_vec();
        app1.extend_from_slice(&1u16.to_be_bytes());
        app1.extend_from_slice(&[0x01, 0x12, 0, 3, 0, 0, 0, 1]);
        app1.extend_from_slice(&orientation.to_be_bytes());
        app1.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        app1
    }

    /// `jpeg` with an APP1 segment carrying `payload` inserted right after SOI.
    pub fn with_app1(jpeg: &[u8], payload: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        segment(&mut out, 0xE1, payload);
        out.extend_from_slice(&jpeg[2..]);
        out
    }

    /// `jpeg` with one IFD0 entry of its EXIF block broken: the entry for `tag` claims a
    /// count whose value would run far past the block (as a careless editor's re-save
    /// leaves it), every other byte unchanged. `None` when the JPEG has no Exif segment or
    /// IFD0 has no such tag. Deterministic, so tests derive the broken file from a real one.
    pub fn break_exif_entry(jpeg: &[u8], tag: u16) -> Option<Vec<u8>> {
        let mut out = jpeg.to_vec();
        let mut at = 2;
        let tiff = loop {
            let marker = *out.get(at + 1)?;
            let length = usize::from(u16::from_be_bytes([*out.get(at + 2)?, *out.get(at + 3)?]));
            if out.get(at)? != &0xFF || marker == 0xDA || length < 2 {
                return None;
            }
            let payload = out.get(at + 4..at + 2 + length)?;
            if marker == 0xE1 && payload.starts_with(b"Exif\0\0") {
                break at + 4 + 6;
            }
            at += 2 + length;
        };
        let little = out.get(tiff..tiff + 2)? == b"II";
        let u16_at = |bytes: &[u8], at: usize| -> Option<u16> {
            let pair = [*bytes.get(at)?, *bytes.get(at + 1)?];
            Some(if little {
                u16::from_le_bytes(pair)
            } else {
                u16::from_be_bytes(pair)
            })
        };
        let quad: [u8; 4] = out.get(tiff + 4..tiff + 8)?.try_into().ok()?;
        let ifd0 = tiff
            + if little {
                u32::from_le_bytes(quad)
            } else {
                u32::from_be_bytes(quad)
            } as usize;
        let count = u16_at(&out, ifd0)?;
        for index in 0..usize::from(count) {
            let entry = ifd0 + 2 + 12 * index;
            if u16_at(&out, entry)? == tag {
                let huge: u32 = 0xFFFF_FF00;
                let bytes = if little {
                    huge.to_le_bytes()
                } else {
                    huge.to_be_bytes()
                };
                out.get_mut(entry + 4..entry + 8)?.copy_from_slice(&bytes);
                return Some(out);
            }
        }
        None
    }

    /// A minimal ISO-BMFF `ftyp` box as HEIC/HEIF files start.
    pub fn heif_header(major_brand: &[u8; 4]) -> Vec<u8> {
        let mut out = Vec::new();
        out.extend_from_slice(&24u32.to_be_bytes());
        out.extend_from_slice(b"ftyp");
        out.extend_from_slice(major_brand);
        out.extend_from_slice(&0u32.to_be_bytes());
        out.extend_from_slice(b"mif1");
        out.extend_from_slice(b"miaf");
        out.extend_from_slice(&[0, 0, 0, 8, b'm', b'e', b't', b'a']);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PHOTOS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../testdata/photos");

    fn photo(name: &str) -> Vec<u8> {
        std::fs::read(format!("{PHOTOS}/{name}")).unwrap_or_else(|e| panic!("{name}: {e}"))
    }

    fn dims(jpeg: &[u8]) -> (u32, u32) {
        let decoded = ::image::load_from_memory(jpeg).unwrap();
        (decoded.width(), decoded.height())
    }

    fn png_of(width: u32, height: u32) -> Vec<u8> {
        let image = ::image::RgbImage::from_fn(width, height, |x, y| {
            ::image::Rgb([(x * 7) as u8, (y * 3) as u8, 90])
        });
        let mut bytes = Vec::new();
        DynamicImage::ImageRgb8(image)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    fn webp_of(width: u32, height: u32) -> Vec<u8> {
        let image = ::image::RgbaImage::from_pixel(width, height, ::image::Rgba([1, 2, 3, 255]));
        let mut bytes = Vec::new();
        DynamicImage::ImageRgba8(image)
            .write_to(&mut Cursor::new(&mut bytes), ImageFormat::WebP)
            .unwrap();
        bytes
    }

    fn reencode(bytes: &[u8], quality: u8, scale: Option<u32>) -> Vec<u8> {
        let mut image = ::image::load_from_memory(bytes).unwrap();
        if let Some(side) = scale {
            image = image.resize(side, side, ::image::imageops::FilterType::Triangle);
        }
        let mut out = Vec::new();
        ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, quality)
            .encode_image(&image.to_rgb8())
            .unwrap();
        out
    }

    #[test]
    fn sniff_accepts_jpeg_png_webp_by_content() {
        assert_eq!(sniff(&photo("gps_DSCN0010.jpg")), Ok(ImageKind::Jpeg));
        assert_eq!(sniff(&photo("mobile_jolla.jpg")), Ok(ImageKind::Jpeg));
        assert_eq!(sniff(&png_of(10, 10)), Ok(ImageKind::Png));
        assert_eq!(sniff(&webp_of(10, 10)), Ok(ImageKind::Webp));
    }

    #[test]
    fn heic_is_refused_with_a_conversion_hint() {
        for brand in [b"heic", b"heix", b"mif1", b"msf1", b"hevc"] {
            let error = sniff(&synthetic::heif_header(brand)).unwrap_err();
            assert_eq!(error.code(), "heic_needs_conversion", "{brand:?}");
            let message = error.to_string();
            assert!(message.contains("兼容性最佳") && message.contains("convert to JPEG"));
        }
        // A plain MP4 is not an image at all.
        let mut mp4 = synthetic::heif_header(b"isom");
        mp4[16..24].copy_from_slice(b"iso2mp41");
        assert_eq!(sniff(&mp4).unwrap_err().code(), "unsupported_format");
    }

    #[test]
    fn markup_and_other_formats_are_refused() {
        let svg = b"\xEF\xBB\xBF  <?xml version=\"1.0\"?><svg xmlns=\"http://www.w3.org/2000/svg\"><script>alert(1)</script></svg>";
        assert_eq!(sniff(svg), Err(PhotoRejected::Markup));
        assert_eq!(
            sniff(b"<!DOCTYPE html><html></html>"),
            Err(PhotoRejected::Markup)
        );
        assert_eq!(
            sniff(b"GIF89a\x01\x00\x01\x00").unwrap_err().code(),
            "unsupported_format"
        );
        assert_eq!(
            sniff(b"PK\x03\x04rest").unwrap_err().code(),
            "unsupported_format"
        );
        assert_eq!(sniff(b"%PDF-1.7").unwrap_err().code(), "unsupported_format");
        assert_eq!(sniff(b"hello world"), Err(PhotoRejected::NotAnImage));
        assert_eq!(sniff(b""), Err(PhotoRejected::Empty));
    }

    #[test]
    fn a_jpeg_with_a_zip_appended_is_a_polyglot() {
        let mut polyglot = photo("Canon_40D.jpg");
        polyglot.extend_from_slice(b"PK\x03\x04\x14\x00\x00\x00\x08\x00payload.js");
        polyglot.extend_from_slice(&[0u8; 200]);
        let error = sniff(&polyglot).unwrap_err();
        assert_eq!(error.code(), "trailing_data");
        assert!(matches!(
            error,
            PhotoRejected::TrailingData {
                found: Some("ZIP"),
                ..
            }
        ));
        // Even a short ZIP signature inside the padding allowance is refused.
        let mut short = photo("Canon_40D.jpg");
        short.extend_from_slice(b"PK\x05\x06");
        assert_eq!(sniff(&short).unwrap_err().code(), "trailing_data");
        // Anything non-padding beyond the allowance is refused.
        let mut junk = photo("Canon_40D.jpg");
        junk.extend(std::iter::repeat_n(b'a', JPEG_TRAILING_ALLOWANCE + 1));
        assert_eq!(sniff(&junk).unwrap_err().code(), "trailing_data");
    }

    /// Write `bytes` to a temporary file for the streaming (file) paths.
    fn file_of(bytes: &[u8]) -> tempfile::NamedTempFile {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut file, bytes).unwrap();
        file
    }

    #[test]
    fn streaming_a_file_gives_the_same_result_as_the_bytes_in_memory() {
        for name in [
            "Canon_40D.jpg",
            "gps_DSCN0010.jpg",
            "mobile_jolla.jpg",
            "orientation_landscape_6.jpg",
            "orientation_portrait_8.jpg",
            "invalid_image00971.jpg",
        ] {
            let bytes = photo(name);
            let file = file_of(&bytes);
            let in_memory = prepare(&bytes, &Limits::default(), 1280);
            let streamed = prepare_file(file.path(), &Limits::default(), 1280).unwrap();
            match (in_memory, streamed) {
                (Ok(expected), Ok(actual)) => {
                    assert_eq!(actual.inspected, expected.inspected, "{name}");
                    assert_eq!(actual.exif, expected.exif, "{name}");
                    assert_eq!(actual.phash, expected.phash, "{name}");
                    assert_eq!(actual.display_jpeg, expected.display_jpeg, "{name}");
                    assert_eq!(actual.thumbnail_jpeg, expected.thumbnail_jpeg, "{name}");
                }
                (Err(expected), Err(actual)) => {
                    assert_eq!(actual.code(), expected.code(), "{name}")
                }
                (expected, actual) => panic!("{name}: {expected:?} vs {actual:?}"),
            }
            assert_eq!(
                thumbnail_file(file.path()).unwrap().ok(),
                thumbnail(&bytes).ok(),
                "{name}"
            );
        }
        // PNG and WebP take the whole-file path and agree too.
        let png = png_of(40, 30);
        let streamed = prepare_file(file_of(&png).path(), &Limits::default(), 1280)
            .unwrap()
            .unwrap();
        assert_eq!(streamed.inspected.kind, ImageKind::Png);
        assert_eq!(
            (streamed.inspected.width, streamed.inspected.height),
            (40, 30)
        );
    }

    #[test]
    fn streaming_a_file_still_refuses_polyglots_bombs_and_truncation() {
        // A ZIP hidden after more padding than the sample kept to describe trailing data.
        let mut polyglot = photo("Canon_40D.jpg");
        polyglot.extend(std::iter::repeat_n(0u8, TRAILING_SAMPLE + 10));
        polyglot.extend_from_slice(b"PK\x03\x04payload");
        let refused = prepare_file(file_of(&polyglot).path(), &Limits::default(), 1280).unwrap();
        assert_eq!(refused.unwrap_err().code(), "trailing_data");
        assert_eq!(sniff(&polyglot).unwrap_err().code(), "trailing_data");

        let bomb = synthetic::jpeg_header_bomb(65_500, 65_500);
        let refused = thumbnail_file(file_of(&bomb).path()).unwrap();
        assert_eq!(refused.unwrap_err().code(), "dimensions_too_large");

        let deep = synthetic::progressive_bomb(500);
        let refused = thumbnail_file(file_of(&deep).path()).unwrap();
        assert_eq!(refused.unwrap_err().code(), "too_many_scans");

        let whole = photo("Canon_40D.jpg");
        let truncated = &whole[..whole.len() / 2];
        let refused = thumbnail_file(file_of(truncated).path()).unwrap();
        assert_eq!(refused.unwrap_err().code(), "malformed");

        let missing = std::path::Path::new("/nonexistent/fieldsync/photo.jpg");
        assert!(
            thumbnail_file(missing).is_err(),
            "a missing file is an I/O error, not a refusal"
        );
    }

    #[test]
    fn jpeg_padding_and_appended_mpf_images_are_tolerated() {
        let mut padded = photo("Canon_40D.jpg");
        padded.extend_from_slice(&[0u8; 4096]);
        assert_eq!(sniff(&padded), Ok(ImageKind::Jpeg));
        let mut few = photo("Canon_40D.jpg");
        few.extend_from_slice(b"\r\n");
        assert_eq!(sniff(&few), Ok(ImageKind::Jpeg));
        // A secondary JPEG (MPF gain map / depth map) after the primary one is walked, and
        // what follows it is judged like any trailer.
        let mut mpf = photo("gps_DSCN0010.jpg");
        mpf.extend_from_slice(&photo("Canon_40D.jpg"));
        assert_eq!(sniff(&mpf), Ok(ImageKind::Jpeg));
        mpf.extend_from_slice(b"PK\x03\x04 hidden archive");
        assert_eq!(sniff(&mpf).unwrap_err().code(), "trailing_data");
    }

    #[test]
    fn a_png_with_data_after_iend_is_a_polyglot() {
        let mut png = png_of(8, 8);
        assert_eq!(sniff(&png), Ok(ImageKind::Png));
        png.extend_from_slice(b"<script>alert(1)</script>");
        assert!(matches!(
            sniff(&png),
            Err(PhotoRejected::TrailingData {
                kind: ImageKind::Png,
                found: Some("script/markup"),
                ..
            })
        ));
        let mut webp = webp_of(8, 8);
        webp.extend_from_slice(b"PK\x03\x04");
        assert_eq!(sniff(&webp).unwrap_err().code(), "trailing_data");
    }

    #[test]
    fn truncated_files_are_malformed() {
        let jpeg = photo("gps_DSCN0010.jpg");
        assert_eq!(
            sniff(&jpeg[..jpeg.len() / 2]).unwrap_err().code(),
            "malformed"
        );
        let png = png_of(8, 8);
        assert_eq!(
            sniff(&png[..png.len() - 5]).unwrap_err().code(),
            "malformed"
        );
    }

    #[test]
    fn inspect_reads_dimensions_from_headers() {
        let limits = Limits::default();
        let jolla = inspect(&photo("mobile_jolla.jpg"), &limits).unwrap();
        assert_eq!(
            (jolla.kind, jolla.width, jolla.height),
            (ImageKind::Jpeg, 3264, 2448)
        );
        assert!(jolla.scans >= 1);
        let png = inspect(&png_of(33, 17), &limits).unwrap();
        assert_eq!((png.width, png.height), (33, 17));
        let webp = inspect(&webp_of(45, 21), &limits).unwrap();
        assert_eq!(
            (webp.kind, webp.width, webp.height),
            (ImageKind::Webp, 45, 21)
        );
    }

    #[test]
    fn bombs_are_refused_from_their_headers() {
        let limits = Limits::default();
        assert!(matches!(
            inspect(&synthetic::jpeg_header_bomb(65_500, 65_500), &limits),
            Err(PhotoRejected::DimensionsTooLarge {
                width: 65_500,
                height: 65_500,
                ..
            })
        ));
        assert!(matches!(
            inspect(&synthetic::png_bomb(50_000, 50_000), &limits),
            Err(PhotoRejected::DimensionsTooLarge { width: 50_000, .. })
        ));
        assert_eq!(
            inspect(&synthetic::progressive_bomb(5_000), &limits),
            Err(PhotoRejected::TooManyScans { max: 64 })
        );
        // 11000 × 11000 fits each side but not the pixel budget.
        assert!(matches!(
            inspect(&synthetic::jpeg_header_bomb(11_000, 11_000), &limits),
            Err(PhotoRejected::TooManyPixels { .. })
        ));
        // The synthetic files themselves are well formed: sniff alone accepts them.
        assert_eq!(
            sniff(&synthetic::png_bomb(50_000, 50_000)),
            Ok(ImageKind::Png)
        );
        assert_eq!(
            sniff(&synthetic::progressive_bomb(5_000)),
            Ok(ImageKind::Jpeg)
        );
        // And the derivatives refuse them the same way.
        assert!(
            thumbnail(&synthetic::jpeg_header_bomb(65_500, 65_500))
                .unwrap_err()
                .is_limit()
        );
        assert!(
            thumbnail(&synthetic::progressive_bomb(100))
                .unwrap_err()
                .is_limit()
        );
    }

    #[test]
    fn exif_of_a_gps_photo() {
        let exif = read_exif(&photo("gps_DSCN0010.jpg")).unwrap();
        let gps = exif.gps.unwrap();
        // 43° 28' 2.814" N, 11° 53' 6.456" E
        assert!((gps.latitude - 43.467_448).abs() < 1e-5, "{gps:?}");
        assert!((gps.longitude - 11.885_127).abs() < 1e-5, "{gps:?}");
        // The camera's wall clock (no OffsetTimeOriginal in 2008) and the GPS clock (UTC).
        // testdata/photos/README.md says "2008-11-01 21:15"; the file says otherwise.
        assert_eq!(
            exif.captured,
            Some(CaptureTime::Local(
                time::macros::datetime!(2008-10-22 16:28:39)
            ))
        );
        assert_eq!(
            exif.gps_time,
            Some(time::macros::datetime!(2008-10-23 14:27:07 UTC))
        );
        assert_eq!(exif.make.as_deref(), Some("NIKON"));
        assert_eq!(exif.model.as_deref(), Some("COOLPIX P6000"));
        assert_eq!(exif.orientation, Some(1));
    }

    #[test]
    fn exif_of_a_camera_without_gps() {
        let exif = read_exif(&photo("Canon_40D.jpg")).unwrap();
        assert_eq!(exif.gps, None);
        assert_eq!(exif.make.as_deref(), Some("Canon"));
        assert_eq!(exif.model.as_deref(), Some("Canon EOS 40D"));
        assert!(matches!(exif.captured, Some(CaptureTime::Local(_))));
        assert_eq!(
            read_exif(&photo("orientation_landscape_6.jpg"))
                .unwrap()
                .orientation,
            Some(6)
        );
        assert_eq!(
            read_exif(&photo("orientation_portrait_8.jpg"))
                .unwrap()
                .orientation,
            Some(8)
        );
    }

    #[test]
    fn offset_time_gives_an_instant() {
        // Build an APP1 Exif block: IFD0 -> ExifIFD with DateTimeOriginal and
        // OffsetTimeOriginal, then splice it after the SOI of a real JPEG.
        let mut tiff = b"MM\0*\0\0\0\x08".to_vec();
        // IFD0 at 8: one entry (ExifIFD pointer -> 26), next IFD 0.
        tiff.extend_from_slice(&1u16.to_be_bytes());
        tiff.extend_from_slice(&[0x87, 0x69, 0, 4, 0, 0, 0, 1, 0, 0, 0, 26]);
        tiff.extend_from_slice(&0u32.to_be_bytes());
        // Exif IFD at 26: two ASCII entries whose values follow at 56 and 76.
        tiff.extend_from_slice(&2u16.to_be_bytes());
        tiff.extend_from_slice(&[0x90, 0x03, 0, 2, 0, 0, 0, 20, 0, 0, 0, 56]);
        tiff.extend_from_slice(&[0x90, 0x11, 0, 2, 0, 0, 0, 7, 0, 0, 0, 76]);
        tiff.extend_from_slice(&0u32.to_be_bytes());
        assert_eq!(tiff.len(), 56);
        tiff.extend_from_slice(b"2024:03:05 09:30:00\0");
        tiff.extend_from_slice(b"+08:00\0");
        let mut app1 = b"Exif\0\0".to_vec();
        app1.extend_from_slice(&tiff);
        let jpeg = synthetic::with_app1(&reencode(&photo("Canon_40D.jpg"), 90, None), &app1);
        let exif = read_exif(&jpeg).unwrap();
        assert_eq!(
            exif.captured,
            Some(CaptureTime::Offset(
                time::macros::datetime!(2024-03-05 09:30:00 +08:00)
            ))
        );
    }

    #[test]
    fn broken_exif_is_no_exif_and_the_photo_still_works() {
        // The sample's APP1 is XMP with a damaged packet; there is no readable EXIF block.
        let bytes = photo("invalid_image00971.jpg");
        assert_eq!(read_exif(&bytes), None);
        assert_eq!(inspect(&bytes, &Limits::default()).unwrap().width, 636);
        assert_eq!(dims(&thumbnail(&bytes).unwrap()), (320, 114));
        perceptual_hash(&bytes, &Limits::default()).unwrap();

        // Synthetic damage: an IFD whose next-IFD pointer loops to itself, an entry whose
        // count runs far past the block, a truncated header. No hang, no panic, damaged EXIF
        // with whatever could be salvaged, and the photo still renders.
        let base = reencode(&photo("Canon_40D.jpg"), 90, None);
        let mut looping = b"Exif\0\0MM\0*\0\0\0\x08".to_vec();
        looping.extend_from_slice(&1u16.to_be_bytes());
        looping.extend_from_slice(&[0x01, 0x0F, 0, 2, 0xFF, 0xFF, 0xFF, 0xF0, 0, 0, 0, 8]);
        looping.extend_from_slice(&8u32.to_be_bytes());
        let truncated = b"Exif\0\0MM\0*\0\0\xFF\xFF".to_vec();
        for payload in [looping, truncated] {
            let jpeg = synthetic::with_app1(&base, &payload);
            let exif = read_exif(&jpeg).unwrap();
            assert!(exif.damaged && exif.make.is_none(), "{exif:?}");
            thumbnail(&jpeg).unwrap();
        }
    }

    #[test]
    fn one_broken_entry_keeps_every_tag_that_parses_and_marks_the_exif_damaged() {
        // A real GPS photo whose IFD0 Make entry now points far past the block.
        let original = photo("gps_DSCN0010.jpg");
        let broken = synthetic::break_exif_entry(&original, 0x010F).expect("Make in IFD0");
        assert_eq!(broken.len(), original.len());
        let differing = original.iter().zip(&broken).filter(|(a, b)| a != b).count();
        assert!((1..=4).contains(&differing), "{differing} bytes changed");
        // A strict reader loses the whole block over that one entry.
        let layout = walk(&broken, None).unwrap();
        assert!(
            exif::Reader::new()
                .read_raw(layout.exif.clone().unwrap())
                .is_err()
        );

        let intact = read_exif(&original).unwrap();
        assert!(!intact.damaged);
        let exif = read_exif(&broken).unwrap();
        assert!(exif.damaged);
        assert_eq!(exif.make, None, "the broken tag is gone");
        assert_eq!(exif.gps, intact.gps, "GPS still read");
        assert_eq!(exif.captured, intact.captured, "capture time still read");
        assert_eq!(exif.gps_time, intact.gps_time, "satellite time still read");
        assert_eq!(exif.model.as_deref(), Some("COOLPIX P6000"));
        assert_eq!(exif.orientation, Some(1));
        // The whole pipeline keeps it too, and the photo still renders.
        let prepared = prepare(&broken, &Limits::default(), 1280).unwrap();
        assert_eq!(prepared.exif, Some(exif));
        // Damage is not absence: a photo without any EXIF is still `None`.
        assert_eq!(read_exif(&reencode(&original, 90, None)), None);
        // A block whose first IFD lies outside it salvages nothing but is still damaged.
        let base = reencode(&photo("Canon_40D.jpg"), 90, None);
        let unreadable = synthetic::with_app1(&base, b"Exif\0\0MM\0*\0\0\xFF\xFF");
        let exif = read_exif(&unreadable).unwrap();
        assert!(exif.damaged);
        assert_eq!(
            exif,
            PhotoExif {
                damaged: true,
                ..PhotoExif::default()
            }
        );
        assert_eq!(synthetic::break_exif_entry(&base, 0x010F), None);
    }

    #[test]
    fn orientation_moves_the_pixels_not_just_the_size() {
        // A landscape scene with a red top-left corner, stored as a phone would for
        // orientation 6 (pixels turned a quarter counter-clockwise).
        let scene = ::image::RgbImage::from_fn(400, 200, |x, y| {
            if x < 100 && y < 50 {
                ::image::Rgb([250, 0, 0])
            } else {
                ::image::Rgb([0, 0, 250])
            }
        });
        let stored = ::image::imageops::rotate270(&scene);
        let mut jpeg = Vec::new();
        ::image::codecs::jpeg::JpegEncoder::new_with_quality(&mut jpeg, 95)
            .encode_image(&stored)
            .unwrap();
        let jpeg = synthetic::with_app1(&jpeg, &synthetic::exif_orientation(6));
        let shown = ::image::load_from_memory(&render_display(&jpeg, 4096).unwrap())
            .unwrap()
            .to_rgb8();
        assert_eq!(shown.dimensions(), (400, 200));
        let top_left = shown.get_pixel(20, 20);
        let bottom_right = shown.get_pixel(380, 180);
        assert!(top_left[0] > 200 && top_left[2] < 60, "{top_left:?}");
        assert!(
            bottom_right[2] > 200 && bottom_right[0] < 60,
            "{bottom_right:?}"
        );
    }

    #[test]
    fn orientation_6_and_8_come_out_upright() {
        for name in ["orientation_landscape_6.jpg", "orientation_portrait_8.jpg"] {
            let bytes = photo(name);
            let stored = inspect(&bytes, &Limits::default()).unwrap();
            // Orientations 6 and 8 are quarter turns: upright swaps width and height.
            let upright = (stored.height, stored.width);
            assert_eq!(
                dims(&render_display(&bytes, 4096).unwrap()),
                upright,
                "{name}"
            );
            let (width, height) = dims(&thumbnail(&bytes).unwrap());
            assert_eq!(width.max(height), 320, "{name}");
            assert_eq!(width > height, upright.0 > upright.1, "{name}");
        }
        // The names say how the upright photo looks: stored 450x600 with 6 is a landscape,
        // stored 600x450 with 8 is a portrait.
        let landscape = render_display(&photo("orientation_landscape_6.jpg"), 4096).unwrap();
        assert_eq!(dims(&landscape), (600, 450));
        let portrait = render_display(&photo("orientation_portrait_8.jpg"), 4096).unwrap();
        assert_eq!(dims(&portrait), (450, 600));
    }

    #[test]
    fn display_copies_carry_no_metadata() {
        let out = render_display(&photo("gps_DSCN0010.jpg"), 1024).unwrap();
        assert_eq!(dims(&out), (640, 480));
        assert_eq!(read_exif(&out), None);
        assert!(!out.windows(4).any(|w| w == b"Exif"));
        let small = render_display(&photo("mobile_jolla.jpg"), 1600).unwrap();
        assert_eq!(dims(&small), (1600, 1200));
    }

    #[test]
    fn resizing_in_two_passes_gives_the_pixels_of_one_fast_image_resize_call() {
        use fast_image_resize as fir;
        // A 1/8-scale 12 MP decode: 500×375, seeded noise so every tap matters.
        let (width, height) = (500u32, 375u32);
        let mut state = 0x2545_f491_4f6c_dd1d_u64;
        let pixels: Vec<u8> = (0..width * height * 3)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let source =
            fir::images::Image::from_vec_u8(width, height, pixels.clone(), fir::PixelType::U8x3)
                .unwrap();
        let mut one_call = fir::images::Image::new(320, 240, fir::PixelType::U8x3);
        fir::Resizer::new()
            .resize(
                &source,
                &mut one_call,
                &fir::ResizeOptions::new()
                    .resize_alg(fir::ResizeAlg::Convolution(fir::FilterType::Lanczos3)),
            )
            .unwrap();
        let two_passes = resize(
            Rgb {
                width,
                height,
                pixels,
            },
            320,
        )
        .unwrap();
        assert_eq!((two_passes.width, two_passes.height), (320, 240));
        assert!(two_passes.pixels == one_call.into_vec(), "pixels differ");
    }

    #[test]
    fn thumbnails_fit_320_for_every_format() {
        assert_eq!(
            dims(&thumbnail(&photo("mobile_jolla.jpg")).unwrap()),
            (320, 240)
        );
        assert_eq!(dims(&thumbnail(&png_of(1000, 500)).unwrap()), (320, 160));
        assert_eq!(dims(&thumbnail(&webp_of(700, 700)).unwrap()), (320, 320));
        assert_eq!(dims(&thumbnail(&png_of(40, 30)).unwrap()), (40, 30));
    }

    #[test]
    fn perceptual_hash_finds_near_duplicates() {
        let limits = Limits::default();
        let original = photo("gps_DSCN0010.jpg");
        let hash = perceptual_hash(&original, &limits).unwrap();
        for (label, copy) in [
            ("q30", reencode(&original, 30, None)),
            ("resized", reencode(&original, 85, Some(300))),
            ("resized q40", reencode(&original, 40, Some(200))),
        ] {
            let distance = hash.distance(perceptual_hash(&copy, &limits).unwrap());
            assert!(distance <= 6, "{label}: {distance}");
        }
        let others = [
            "mobile_jolla.jpg",
            "Canon_40D.jpg",
            "orientation_portrait_8.jpg",
        ];
        for other in others {
            let distance = hash.distance(perceptual_hash(&photo(other), &limits).unwrap());
            assert!(distance > 10, "{other}: {distance}");
        }
        // One decode gives the same hash as the standalone function.
        let prepared = prepare(&original, &limits, 1600).unwrap();
        assert!(prepared.phash.distance(hash) <= 2);
        assert_eq!(dims(&prepared.thumbnail_jpeg), (320, 240));
        assert_eq!(prepared.exif.unwrap().make.as_deref(), Some("NIKON"));
    }

    #[test]
    fn every_code_is_distinct() {
        let errors = [
            PhotoRejected::Empty,
            PhotoRejected::HeicNeedsConversion {
                brand: "heic".into(),
            },
            PhotoRejected::Markup,
            PhotoRejected::UnsupportedFormat { format: "GIF" },
            PhotoRejected::NotAnImage,
            PhotoRejected::TrailingData {
                kind: ImageKind::Jpeg,
                trailing_bytes: 1,
                found: None,
            },
            PhotoRejected::Malformed {
                kind: ImageKind::Png,
                reason: "x",
            },
            PhotoRejected::DimensionsTooLarge {
                width: 1,
                height: 1,
                max_width: 1,
                max_height: 1,
            },
            PhotoRejected::TooManyPixels { pixels: 1, max: 1 },
            PhotoRejected::TooManyScans { max: 1 },
            PhotoRejected::Undecodable(String::new()),
            PhotoRejected::DecodeLimit(String::new()),
            PhotoRejected::EncodeFailed(String::new()),
        ];
        let codes: std::collections::HashSet<_> = errors.iter().map(PhotoRejected::code).collect();
        assert_eq!(codes.len(), errors.len());
    }
}
