//! Server-made previews of uploaded images: at most [`MAX_SIDE`] pixels a
//! side, the aspect ratio kept, encoded as PNG.
//!
//! The bytes are untrusted, so the decoder runs under limits: an image
//! declaring more than [`MAX_DIMENSION`] pixels a side, or needing more
//! than [`MAX_ALLOC`] bytes to decode, is refused before its pixels are
//! allocated (a decompression bomb costs its header). Decoding is CPU work:
//! it runs on the blocking pool, at most [`MAX_CONCURRENT`] at once per
//! node, so a burst of uploads queues rather than holding many decoded
//! images in memory. A file that does not decode simply has no preview.

use std::io::Cursor;

use bytes::Bytes;
use image::{DynamicImage, ImageFormat, ImageReader, Limits};

/// The longest side of a preview, in pixels.
pub const MAX_SIDE: u32 = 256;
/// The longest side of an image that gets a preview, in pixels.
pub const MAX_DIMENSION: u32 = 10_000;
/// The most a decode may allocate (the decoded image included).
pub const MAX_ALLOC: u64 = 64 * 1024 * 1024;
/// Decodes one node runs at once.
pub const MAX_CONCURRENT: usize = 2;
/// The type previews are served as.
pub const CONTENT_TYPE: &str = "image/png";

/// The decoder for a verified type, when previews are made of it.
pub fn format_of(mime: &str) -> Option<ImageFormat> {
    match mime {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::WebP),
        _ => None,
    }
}

/// Why no preview was made.
#[derive(Debug, thiserror::Error)]
pub enum NoThumbnail {
    #[error("not an image type previews are made of")]
    NotAnImage,
    #[error("the image does not decode within the limits: {0}")]
    Decode(#[from] image::ImageError),
    #[error("the preview would not be smaller than the file")]
    NotSmaller,
    #[error("the decoder failed: {0}")]
    Failed(String),
}

/// A PNG preview of `bytes`, an image of verified type `mime`. Animated
/// images give their first frame. Blocking: call from the blocking pool.
pub fn make(mime: &str, bytes: &[u8]) -> Result<Vec<u8>, NoThumbnail> {
    let format = format_of(mime).ok_or(NoThumbnail::NotAnImage)?;
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_DIMENSION);
    limits.max_image_height = Some(MAX_DIMENSION);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let image = reader.decode()?;
    let image = if image.width() > MAX_SIDE || image.height() > MAX_SIDE {
        image.thumbnail(MAX_SIDE, MAX_SIDE)
    } else {
        image
    };
    // Eight bits a channel, alpha only when the image has it: the smallest
    // PNG for a preview.
    let image = if image.color().has_alpha() {
        DynamicImage::ImageRgba8(image.to_rgba8())
    } else {
        DynamicImage::ImageRgb8(image.to_rgb8())
    };
    let mut png = Vec::new();
    image.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)?;
    if png.len() >= bytes.len() {
        return Err(NoThumbnail::NotSmaller);
    }
    Ok(png)
}

/// [`make`] on the blocking pool.
pub async fn make_blocking(mime: String, bytes: Bytes) -> Result<Vec<u8>, NoThumbnail> {
    match tokio::task::spawn_blocking(move || make(&mime, &bytes)).await {
        Ok(made) => made,
        // A panic in a decoder is that file's problem, not the upload's.
        Err(e) => Err(NoThumbnail::Failed(e.to_string())),
    }
}
