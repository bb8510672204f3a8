//! What the bytes of an upload really are: the declared type must match
//! them, and nothing that a browser could run (HTML, SVG, XML, scripts) is
//! kept, whatever it claims to be.
//!
//! Files are also served as downloads with `nosniff`, so this is the second
//! line; it is here so that an agent who opens a "photo" never opens a page.

/// Types refused whatever the configuration allows: a browser renders or
/// runs them.
const ACTIVE_TYPES: &[&str] = &[
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "text/xml",
    "application/xml",
    "text/javascript",
    "application/javascript",
    "application/x-javascript",
    "application/ecmascript",
    "text/ecmascript",
    "application/x-shockwave-flash",
    "application/java-archive",
    "application/x-msdownload",
    "application/x-sh",
    "application/hta",
];

/// Why the bytes were refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Sniffed {
    /// The type itself is never taken.
    #[error("files of type {0} are not accepted")]
    ActiveType(String),
    /// The bytes are HTML, SVG, XML or a script, whatever was declared.
    #[error("the file holds markup or script a browser would run")]
    ActiveContent,
    /// The bytes are another type than declared.
    #[error("the file's content is not {0}")]
    Mismatch(String),
}

/// A MIME type in lowercase without parameters (`image/png`).
pub fn essence(mime: &str) -> String {
    mime.split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase()
}

/// Whether a declared type is refused before any byte arrives.
pub fn is_active_type(mime: &str) -> bool {
    let mime = essence(mime);
    ACTIVE_TYPES.contains(&mime.as_str()) || mime.ends_with("+xml")
}

/// The type the bytes prove, for the formats that have a signature.
fn signature(bytes: &[u8]) -> Option<&'static str> {
    let starts = |prefix: &[u8]| bytes.starts_with(prefix);
    if starts(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if starts(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if starts(b"GIF87a") || starts(b"GIF89a") {
        Some("image/gif")
    } else if starts(b"RIFF") && bytes.get(8..12) == Some(b"WEBP") {
        Some("image/webp")
    } else if starts(b"%PDF-") {
        Some("application/pdf")
    } else if bytes.get(4..8) == Some(b"ftyp") {
        Some("video/mp4")
    } else if starts(b"PK\x03\x04") {
        Some("application/zip")
    } else {
        None
    }
}

/// Types whose declaration must be proven by a signature.
const SIGNED_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "application/pdf",
];

/// Checks `bytes` against the declared `mime`, answering the type to store
/// (the declared one, in its plain form).
pub fn check(mime: &str, bytes: &[u8]) -> Result<String, Sniffed> {
    let declared = essence(mime);
    if is_active_type(&declared) {
        return Err(Sniffed::ActiveType(declared));
    }
    if looks_active(bytes) {
        return Err(Sniffed::ActiveContent);
    }
    let found = signature(bytes);
    if SIGNED_TYPES.contains(&declared.as_str()) {
        return if found == Some(declared.as_str()) {
            Ok(declared)
        } else {
            Err(Sniffed::Mismatch(declared))
        };
    }
    // A file that proves to be an image or a PDF must say so: a PNG
    // declared as text is a type confusion, not a text file.
    if let Some(found) = found
        && SIGNED_TYPES.contains(&found)
    {
        return Err(Sniffed::Mismatch(declared));
    }
    if declared.starts_with("text/") {
        let text = std::str::from_utf8(bytes).map_err(|_| Sniffed::Mismatch(declared.clone()))?;
        if text.contains('\0') {
            return Err(Sniffed::Mismatch(declared));
        }
    }
    Ok(declared)
}

/// HTML, SVG, XML or a script near the start of the bytes, after a byte
/// order mark and white space, the way browsers sniff.
fn looks_active(bytes: &[u8]) -> bool {
    let head = bytes.get(..1024).unwrap_or(bytes);
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(head);
    let start = head
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(head.len());
    let head = head.get(start..).unwrap_or_default().to_ascii_lowercase();
    const MARKERS: &[&[u8]] = &[
        b"<!doctype",
        b"<html",
        b"<head",
        b"<body",
        b"<script",
        b"<svg",
        b"<?xml",
        b"<iframe",
        b"<object",
        b"<embed",
        b"<!--",
        b"<style",
        b"<meta",
        b"<a ",
        b"<img",
        b"<div",
        b"<table",
        b"<title",
        b"<xml",
    ];
    if MARKERS.iter().any(|m| head.starts_with(m)) {
        return true;
    }
    // Markup further in counts when the file would be read as text.
    let text = String::from_utf8_lossy(&head);
    ["<script", "<svg", "<html", "<iframe"]
        .iter()
        .any(|m| text.contains(m))
}

/// `Image` for the image types a client can preview, else `File`: the
/// `mediaType` of the SDK's attachment content.
pub fn media_type(mime: &str) -> &'static str {
    if matches!(
        essence(mime).as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp"
    ) {
        "Image"
    } else {
        "File"
    }
}

/// Whether `mime` is one of a mode's `fileTypes` (`image/png`, or a family
/// such as `image/*`, or `*/*`).
pub fn type_allowed(mime: &str, file_types: &[String]) -> bool {
    let mime = essence(mime);
    let family = mime.split('/').next().unwrap_or_default();
    file_types.iter().any(|allowed| {
        let allowed = essence(allowed);
        allowed == mime
            || allowed == "*/*"
            || allowed
                .strip_suffix("/*")
                .is_some_and(|prefix| prefix == family)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn declared_types_must_match_their_signatures() {
        assert_eq!(check("image/png", PNG).unwrap(), "image/png");
        assert_eq!(check("IMAGE/PNG; x=y", PNG).unwrap(), "image/png");
        assert_eq!(
            check("image/jpeg", b"\xff\xd8\xff\xe0").unwrap(),
            "image/jpeg"
        );
        assert_eq!(check("image/gif", b"GIF89a....").unwrap(), "image/gif");
        assert_eq!(
            check("image/webp", b"RIFF\0\0\0\0WEBPVP8 ").unwrap(),
            "image/webp"
        );
        assert_eq!(
            check("application/pdf", b"%PDF-1.7\n").unwrap(),
            "application/pdf"
        );
        assert_eq!(check("text/plain", b"hello\n").unwrap(), "text/plain");
        assert_eq!(
            check("image/png", b"\xff\xd8\xff\xe0"),
            Err(Sniffed::Mismatch("image/png".into()))
        );
        assert!(matches!(
            check("application/pdf", b"hello"),
            Err(Sniffed::Mismatch(_))
        ));
        assert!(matches!(
            check("text/plain", PNG),
            Err(Sniffed::Mismatch(_))
        ));
        assert!(matches!(
            check("text/plain", b"a\0b"),
            Err(Sniffed::Mismatch(_))
        ));
        assert!(matches!(
            check("text/csv", b"\xff\xfe"),
            Err(Sniffed::Mismatch(_))
        ));
    }

    #[test]
    fn markup_and_scripts_are_refused_whatever_they_claim() {
        for (mime, bytes) in [
            ("image/png", &b"<html><script>alert(1)</script>"[..]),
            ("text/plain", b"  \n<!DOCTYPE html><p>hi"),
            ("text/plain", b"\xef\xbb\xbf<svg onload=alert(1)>"),
            ("application/octet-stream", b"<?xml version=\"1.0\"?><svg/>"),
            ("text/plain", b"hello <script>x</script>"),
        ] {
            assert_eq!(check(mime, bytes), Err(Sniffed::ActiveContent), "{mime}");
        }
        for mime in [
            "text/html",
            "image/svg+xml",
            "application/xhtml+xml",
            "application/rss+xml",
        ] {
            assert!(
                matches!(check(mime, b"x"), Err(Sniffed::ActiveType(_))),
                "{mime}"
            );
            assert!(is_active_type(mime));
        }
    }

    #[test]
    fn modes_match_types_and_families() {
        let types = vec!["image/*".to_owned(), "application/pdf".to_owned()];
        assert!(type_allowed("image/png", &types));
        assert!(type_allowed("application/pdf", &types));
        assert!(!type_allowed("text/plain", &types));
        assert!(!type_allowed("imagex/png", &types));
        assert!(type_allowed("video/mp4", &["*/*".to_owned()]));
        assert_eq!(media_type("image/jpeg"), "Image");
        assert_eq!(media_type("application/pdf"), "File");
    }
}
