//! What an attachment is and what it is called: its MIME type (declared, guessed from the
//! URL's extension, or sniffed from its bytes) and its `<uuid>.<ext>` file name.

use url::Url;

/// The MIME type of bytes nothing tells more about.
pub const OCTET_STREAM: &str = "application/octet-stream";

/// Extensions for the common types, where `mime_guess` would pick an odd one first
/// (`text/plain` → `asm`, `image/jpeg` → `jfif`).
const PREFERRED_EXTENSIONS: &[(&str, &str)] = &[
    ("image/png", "png"),
    ("image/jpeg", "jpg"),
    ("image/gif", "gif"),
    ("image/webp", "webp"),
    ("image/bmp", "bmp"),
    ("image/svg+xml", "svg"),
    ("image/tiff", "tif"),
    ("image/heic", "heic"),
    ("application/pdf", "pdf"),
    ("application/msword", "doc"),
    (
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "docx",
    ),
    ("application/vnd.ms-excel", "xls"),
    (
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "xlsx",
    ),
    ("application/vnd.ms-powerpoint", "ppt"),
    (
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
        "pptx",
    ),
    ("application/json", "json"),
    ("application/zip", "zip"),
    ("application/epub+zip", "epub"),
    ("text/plain", "txt"),
    ("text/markdown", "md"),
    ("text/csv", "csv"),
    ("text/html", "html"),
    ("text/xml", "xml"),
    ("application/xml", "xml"),
    ("audio/mpeg", "mp3"),
    ("video/mp4", "mp4"),
];

/// The essence of a `Content-Type` or data URL media type: lowercase `type/subtype` without
/// parameters; `None` when empty, malformed, or the uninformative `application/octet-stream`.
pub fn mime_essence(content_type: &str) -> Option<String> {
    let essence = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/')?;
    let is_token = |part: &str| {
        !part.is_empty()
            && part
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&byte))
    };
    let informative = essence != OCTET_STREAM && essence != "binary/octet-stream";
    (is_token(kind) && is_token(subtype) && informative).then_some(essence)
}

/// The extension of the URL path's last segment (`report.PDF` → `pdf`), when it looks like one.
pub fn url_extension(url: &Url) -> Option<String> {
    let segment = url.path_segments()?.next_back()?;
    let (stem, extension) = segment.rsplit_once('.')?;
    let plausible = !stem.is_empty()
        && (1..=10).contains(&extension.len())
        && extension.bytes().all(|byte| byte.is_ascii_alphanumeric());
    plausible.then(|| extension.to_ascii_lowercase())
}

/// The MIME type `mime_guess` gives an extension.
pub fn mime_for_extension(extension: &str) -> Option<String> {
    mime_guess::from_ext(extension).first_raw().map(str::to_owned)
}

/// The MIME type the bytes' magic numbers tell.
pub fn sniff_mime(bytes: &[u8]) -> Option<String> {
    infer::get(bytes).map(|kind| kind.mime_type().to_owned())
}

/// Picks the MIME type of a download: the declared type (already through [`mime_essence`]),
/// else the URL extension's, else the bytes' magic, else `application/octet-stream`.
pub fn choose_mime(declared: Option<String>, url_extension: Option<&str>, bytes: &[u8]) -> String {
    declared
        .or_else(|| url_extension.and_then(mime_for_extension))
        .or_else(|| sniff_mime(bytes))
        .unwrap_or_else(|| OCTET_STREAM.to_owned())
}

/// The usual extension of a MIME type.
pub fn extension_for_mime(mime: &str) -> Option<String> {
    if mime == OCTET_STREAM {
        return None;
    }
    if let Some((_, extension)) = PREFERRED_EXTENSIONS.iter().find(|(known, _)| *known == mime) {
        return Some((*extension).to_owned());
    }
    mime_guess::get_mime_extensions_str(mime)
        .and_then(|extensions| extensions.first())
        .map(|extension| (*extension).to_owned())
}

/// The extension to name a file of `mime` fetched from a URL with `url_extension`: the URL's
/// when it fits the type (or nothing better is known), else the type's usual one, else `bin`.
pub fn file_extension(url_extension: Option<&str>, mime: &str) -> String {
    if let Some(extension) = url_extension {
        let fits = mime_guess::from_ext(extension).iter_raw().any(|guess| guess == mime);
        if fits {
            return extension.to_owned();
        }
    }
    extension_for_mime(mime)
        .or_else(|| url_extension.map(str::to_owned))
        .unwrap_or_else(|| "bin".to_owned())
}

/// A fresh `<uuid v4>.<ext>` name.
pub fn file_name(url_extension: Option<&str>, mime: &str) -> String {
    format!("{}.{}", uuid::Uuid::new_v4(), file_extension(url_extension, mime))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn content_types_lose_parameters_and_case_and_octet_stream_says_nothing() {
        assert_eq!(mime_essence("Text/HTML; charset=UTF-8").as_deref(), Some("text/html"));
        assert_eq!(mime_essence("image/png").as_deref(), Some("image/png"));
        assert_eq!(mime_essence("application/octet-stream"), None);
        assert_eq!(mime_essence(""), None);
        assert_eq!(mime_essence("png"), None);
        assert_eq!(mime_essence("image/"), None);
    }

    #[test]
    fn the_url_extension_is_the_last_segments() {
        let extension = |url: &str| url_extension(&Url::parse(url).unwrap());
        assert_eq!(extension("https://x.test/a/Report.PDF?x=1").as_deref(), Some("pdf"));
        assert_eq!(extension("https://x.test/a.tar.gz").as_deref(), Some("gz"));
        assert_eq!(extension("https://x.test/a.b/file"), None);
        assert_eq!(extension("https://x.test/"), None);
        assert_eq!(extension("https://x.test/.hidden"), None);
        assert_eq!(extension("https://x.test/a.x%20y"), None);
    }

    #[test]
    fn the_mime_type_comes_from_the_declaration_then_the_extension_then_the_magic() {
        assert_eq!(choose_mime(Some("image/gif".into()), Some("png"), PNG), "image/gif");
        assert_eq!(choose_mime(None, Some("pdf"), PNG), "application/pdf");
        assert_eq!(choose_mime(None, Some("unknownext"), PNG), "image/png");
        assert_eq!(choose_mime(None, None, PNG), "image/png");
        assert_eq!(choose_mime(None, None, b"%PDF-1.7\n"), "application/pdf");
        assert_eq!(choose_mime(None, None, b"just words"), OCTET_STREAM);
    }

    #[test]
    fn file_names_take_the_url_extension_when_it_fits_else_the_types() {
        assert_eq!(file_extension(Some("jpeg"), "image/jpeg"), "jpeg");
        assert_eq!(file_extension(Some("pdf"), "application/pdf"), "pdf");
        assert_eq!(file_extension(Some("php"), "application/pdf"), "pdf");
        assert_eq!(file_extension(None, "image/jpeg"), "jpg");
        assert_eq!(file_extension(None, "text/plain"), "txt");
        assert_eq!(
            file_extension(
                None,
                "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
            ),
            "docx"
        );
        assert_eq!(file_extension(Some("xyz"), OCTET_STREAM), "xyz");
        assert_eq!(file_extension(None, OCTET_STREAM), "bin");
        assert_eq!(file_extension(None, "application/x-unheard-of"), "bin");
    }

    #[test]
    fn a_file_name_is_a_uuid_with_the_extension() {
        let name = file_name(None, "image/png");
        let (stem, extension) = name.split_once('.').unwrap();
        assert_eq!(extension, "png");
        assert_eq!(uuid::Uuid::parse_str(stem).unwrap().get_version_num(), 4);
    }
}
