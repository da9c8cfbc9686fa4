//! What an attachment is and what it is called: its MIME type (declared, guessed from the
//! extension of the client's file name or of the URL, or sniffed from its bytes), and its
//! name: the client's file name made safe, or `<uuid>.<ext>`.

use std::collections::HashSet;

use url::Url;

use crate::domain::chat::Attachment;

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
    name_extension(url.path_segments()?.next_back()?)
}

/// The extension of a file name (`Report.PDF` → `pdf`), when it looks like one: 1 to 10 ASCII
/// letters and digits after a non-empty stem.
pub fn name_extension(name: &str) -> Option<String> {
    let (stem, extension) = name.rsplit_once('.')?;
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

/// The longest client file name kept, in characters, its extension included.
const MAX_NAME_CHARS: usize = 100;

/// A client's file name made safe to upload under: its last path segment, each control
/// character and each of `\/:*?"<>|` replaced by `_`, spaces and dots trimmed from both
/// ends, cut to [`MAX_NAME_CHARS`] characters (the stem shortened, the extension kept);
/// `None` when nothing is left.
pub fn safe_file_name(name: &str) -> Option<String> {
    let segment = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = segment
        .chars()
        .map(|c| {
            if c.is_control() || matches!(c, ':' | '*' | '?' | '"' | '<' | '>' | '|') {
                '_'
            } else {
                c
            }
        })
        .collect();
    let trimmed = cleaned.trim_matches(|c: char| c == '.' || c.is_whitespace());
    if trimmed.is_empty() {
        return None;
    }
    if trimmed.chars().count() <= MAX_NAME_CHARS {
        return Some(trimmed.to_owned());
    }
    let (stem, extension) = split_extension(trimmed);
    let room = MAX_NAME_CHARS - extension.map_or(0, |extension| extension.len() + 1);
    let stem: String = stem.chars().take(room).collect();
    let stem = stem.trim_end_matches(|c: char| c == '.' || c.is_whitespace());
    Some(match extension {
        Some(extension) => format!("{stem}.{extension}"),
        None => stem.to_owned(),
    })
}

/// A file name's stem and, when it has one that looks like one, its extension (as written).
fn split_extension(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('.') {
        Some((stem, extension)) if name_extension(name).is_some() => (stem, Some(extension)),
        _ => (name, None),
    }
}

/// `name` with an extension that fits `mime`: its own when that fits (or when the type has
/// no usual extension), else the type's appended (`notes` → `notes.pdf`, `scan.txt` of a PDF
/// → `scan.txt.pdf`), so that the upstream reads the file as what it is.
pub fn with_fitting_extension(name: String, mime: &str) -> String {
    let own = name_extension(&name);
    if let Some(extension) = &own
        && mime_guess::from_ext(extension).iter_raw().any(|guess| guess == mime)
    {
        return name;
    }
    match extension_for_mime(mime) {
        Some(extension) => format!("{name}.{extension}"),
        None => name,
    }
}

/// The name of an attachment: the client's `name` made safe and given a fitting extension,
/// or, without a usable one, a fresh `<uuid>.<ext>` (the extension from the URL's when it
/// fits the type).
pub fn attachment_name(name: Option<&str>, url_extension: Option<&str>, mime: &str) -> String {
    match name.and_then(safe_file_name) {
        Some(name) => with_fitting_extension(name, mime),
        None => file_name(url_extension, mime),
    }
}

/// Tells apart the attachments of one message that would be uploaded under the same name:
/// the second `report.pdf` becomes `report (2).pdf`, the third `report (3).pdf`, and so on.
pub fn tell_apart(attachments: &mut [Attachment]) {
    let mut taken: HashSet<String> = HashSet::new();
    for attachment in attachments.iter_mut() {
        if taken.insert(attachment.file_name.clone()) {
            continue;
        }
        let (stem, extension) = split_extension(&attachment.file_name);
        let extension = extension.map(|extension| format!(".{extension}")).unwrap_or_default();
        let renamed = (2..)
            .map(|n| format!("{stem} ({n}){extension}"))
            .find(|candidate| !taken.contains(candidate))
            .unwrap_or_default();
        taken.insert(renamed.clone());
        attachment.file_name = renamed;
    }
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

    #[test]
    fn a_client_file_name_is_made_a_bare_safe_name() {
        assert_eq!(safe_file_name("report.pdf").as_deref(), Some("report.pdf"));
        assert_eq!(safe_file_name("季度报告 v2.pdf").as_deref(), Some("季度报告 v2.pdf"));
        assert_eq!(safe_file_name("../../etc/passwd").as_deref(), Some("passwd"));
        assert_eq!(safe_file_name("C:\\Users\\me\\a.docx").as_deref(), Some("a.docx"));
        assert_eq!(safe_file_name("a\nb?:*.txt").as_deref(), Some("a_b___.txt"));
        assert_eq!(safe_file_name(" .hidden. ").as_deref(), Some("hidden"));
        assert_eq!(safe_file_name("dir/"), None);
        assert_eq!(safe_file_name(" ... "), None);
        let long = format!("{}.pdf", "长".repeat(300));
        let cut = safe_file_name(&long).unwrap();
        assert_eq!(cut.chars().count(), MAX_NAME_CHARS);
        assert!(cut.ends_with("长.pdf"), "{cut}");
    }

    #[test]
    fn a_client_file_name_gets_an_extension_that_fits_its_type() {
        assert_eq!(
            with_fitting_extension("report.pdf".into(), "application/pdf"),
            "report.pdf"
        );
        assert_eq!(
            with_fitting_extension("Report.PDF".into(), "application/pdf"),
            "Report.PDF"
        );
        assert_eq!(with_fitting_extension("notes".into(), "application/pdf"), "notes.pdf");
        assert_eq!(with_fitting_extension("scan.txt".into(), "image/png"), "scan.txt.png");
        assert_eq!(with_fitting_extension("blob.xyz".into(), OCTET_STREAM), "blob.xyz");
        assert_eq!(attachment_name(Some("a/b/c.png"), None, "image/png"), "c.png");
        let unnamed = attachment_name(Some("///"), Some("pdf"), "application/pdf");
        assert!(unnamed.ends_with(".pdf") && unnamed.len() == 40, "{unnamed}");
    }

    #[test]
    fn attachments_named_alike_are_told_apart() {
        let named = |name: &str| Attachment::in_memory(name.into(), "text/plain".into(), bytes::Bytes::new());
        let mut attachments = vec![
            named("a.txt"),
            named("a.txt"),
            named("b"),
            named("a.txt"),
            named("b"),
            named("a (2).txt"),
        ];
        tell_apart(&mut attachments);
        let names: Vec<&str> = attachments.iter().map(|a| a.file_name.as_str()).collect();
        assert_eq!(
            names,
            ["a.txt", "a (2).txt", "b", "a (3).txt", "b (2)", "a (2) (2).txt"]
        );
    }
}
