//! Files over OSS (protocol §7): for each attachment, temporary STS credentials from
//! `request_policy`, a `PUT` of its content into Alibaba Cloud OSS (the V1 header signature
//! with the security token) streamed as it downloads, a `policy_callback` that turns it into
//! a file id once every file is stored, and the chat's `form` listing the files before the text.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures::StreamExt;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_LENGTH, CONTENT_TYPE, DATE};
use serde::Deserialize;
use serde_json::{Value, json};
use sha1::Sha1;
use url::Url;

use super::HailuoClient;
use super::request::Caller;
use crate::domain::chat::{Attachment, AttachmentContent};
use crate::domain::ports::{Account, ProviderError};

/// Temporary upload credentials.
pub const REQUEST_POLICY_PATH: &str = "/v1/api/files/request_policy";
/// Confirms an upload and issues its file id.
pub const POLICY_CALLBACK_PATH: &str = "/v1/api/files/policy_callback";

/// `formType` of an image.
const IMAGE_FORM_TYPE: u8 = 2;
/// `formType` of a document.
const DOCUMENT_FORM_TYPE: u8 = 6;
/// `formType` of the text entry.
const TEXT_FORM_TYPE: u8 = 1;
/// The header carrying the STS security token, which the signature covers.
const SECURITY_TOKEN: &str = "x-oss-security-token";
/// What an object key keeps unescaped in a URL path: RFC 3986's unreserved characters and `/`.
const OBJECT_KEY: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~')
    .remove(b'/');
/// How much of an OSS error answer is read for its `<Code>`.
const MAX_ERROR_BYTES: usize = 8 << 10;

/// The payload of `request_policy`: temporary STS credentials for one OSS directory.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OssPolicy {
    /// STS access key id.
    pub access_key_id: String,
    /// STS access key secret.
    pub access_key_secret: String,
    /// The bucket.
    pub bucket_name: String,
    /// The directory (key prefix) the credentials may write.
    pub dir: String,
    /// The OSS endpoint: a bare host, or a URL.
    pub endpoint: String,
    /// The STS security token.
    pub security_token: String,
}

/// An attachment the upstream knows by its file id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UploadedFile {
    /// The name it was uploaded under.
    pub file_name: String,
    /// The upstream's file id.
    pub file_id: String,
    /// Whether it is an image (else a document).
    pub is_image: bool,
}

/// Where and how to reach an OSS endpoint: per §7, a bare host is `https` with virtual-hosted
/// addressing; a URL keeps its scheme; an IP address or `localhost` uses path-style addressing.
pub fn oss_endpoint(endpoint: &str) -> (String, &'static str) {
    let endpoint = endpoint.trim().trim_end_matches('/');
    let url = if endpoint.contains("://") {
        endpoint.to_owned()
    } else {
        format!("https://{endpoint}")
    };
    let host = url
        .split_once("://")
        .map_or("", |(_, rest)| rest)
        .split('/')
        .next()
        .unwrap_or_default();
    let bare_host = if let Some(bracketed) = host.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or_default()
    } else {
        host.rsplit_once(':').map_or(host, |(name, port)| {
            if port.bytes().all(|b| b.is_ascii_digit()) {
                name
            } else {
                host
            }
        })
    };
    let path_style = bare_host.eq_ignore_ascii_case("localhost") || bare_host.parse::<std::net::IpAddr>().is_ok();
    (url, if path_style { "path" } else { "virtual" })
}

/// The `form` field of a chat message: one entry per file, in order, then the text.
pub fn chat_form(files: &[UploadedFile], msg_content: &str) -> String {
    let mut entries: Vec<Value> = files
        .iter()
        .map(|file| {
            let form_type = if file.is_image {
                IMAGE_FORM_TYPE
            } else {
                DOCUMENT_FORM_TYPE
            };
            json!({"name": "", "formType": form_type, "content": file.file_name, "fileID": file.file_id})
        })
        .collect();
    entries.push(json!({"name": "", "formType": TEXT_FORM_TYPE, "content": msg_content}));
    Value::Array(entries).to_string()
}

/// The V1 `StringToSign` of a `PUT`: no `Content-MD5`, the type, the date, the one
/// `x-oss-*` header (the security token), and the resource `/<bucket>/<key>` unescaped.
pub fn put_string_to_sign(mime: &str, date: &str, security_token: &str, bucket: &str, key: &str) -> String {
    format!(
        "PUT\n\n{mime}\n{date}\n{SECURITY_TOKEN}:{}\n/{bucket}/{key}",
        security_token.trim()
    )
}

/// `base64(HMAC-SHA1(secret, string_to_sign))`.
pub fn oss_signature(secret: &str, string_to_sign: &str) -> Option<String> {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(string_to_sign.as_bytes());
    Some(BASE64.encode(mac.finalize().into_bytes()))
}

/// The URL of object `key` in `bucket` at the policy's `endpoint`, addressed as
/// [`oss_endpoint`] says; `None` when the endpoint is no URL.
pub fn object_url(endpoint: &str, bucket: &str, key: &str) -> Option<Url> {
    let (base, addressing) = oss_endpoint(endpoint);
    let mut url = Url::parse(&base).ok()?;
    let key = utf8_percent_encode(key, OBJECT_KEY);
    if addressing == "virtual" {
        let host = format!("{bucket}.{}", url.host_str()?);
        url.set_host(Some(&host)).ok()?;
        url.set_path(&format!("/{key}"));
    } else {
        url.set_path(&format!("/{bucket}/{key}"));
    }
    Some(url)
}

fn oss_failure(detail: &str) -> ProviderError {
    ProviderError::Unavailable {
        message: format!("uploading an attachment to OSS failed: {detail}"),
    }
}

/// A file stored in OSS, not yet confirmed.
struct StoredFile {
    policy: OssPolicy,
    file_name: String,
    mime: String,
    size: u64,
}

impl HailuoClient {
    /// Uploads every attachment concurrently; the files come back in the order given. Every
    /// file is stored before any is confirmed: when one fails on its way (its download broke
    /// off or passed a limit), the others are cut off too, and no file id is issued.
    ///
    /// # Errors
    /// The first failure: the upstream refusing the policy or the callback is
    /// [`ProviderError::Refused`], OSS failing is [`ProviderError::Unavailable`], an
    /// attachment's own content failing is [`ProviderError::Attachment`].
    pub async fn upload_attachments(
        &self,
        account: &Account,
        attachments: Vec<Attachment>,
    ) -> Result<Vec<UploadedFile>, ProviderError> {
        let stored = futures::future::try_join_all(
            attachments
                .into_iter()
                .map(|attachment| self.store(account, attachment)),
        )
        .await?;
        futures::future::try_join_all(stored.iter().map(|file| self.confirm(account, file))).await
    }

    /// Stores one attachment: policy, then OSS.
    async fn store(&self, account: &Account, attachment: Attachment) -> Result<StoredFile, ProviderError> {
        let call = self.call(
            Method::GET,
            REQUEST_POLICY_PATH,
            Caller::Device(&account.device),
            &account.token,
        );
        let policy = self
            .call_json(call, &account.token, None)
            .await
            .map_err(|failure| failure.into_refused())?;
        let policy: OssPolicy = serde_json::from_value(policy).map_err(|error| ProviderError::BadResponse {
            message: format!("request_policy answered an unexpected payload: {error}"),
        })?;
        let Attachment {
            file_name,
            mime,
            length,
            content,
        } = attachment;
        let size = self.put_object(&policy, &file_name, &mime, length, content).await?;
        Ok(StoredFile {
            policy,
            file_name,
            mime,
            size,
        })
    }

    /// Confirms a stored file: the callback that issues its file id.
    async fn confirm(&self, account: &Account, file: &StoredFile) -> Result<UploadedFile, ProviderError> {
        let body = json!({
            "fileName": file.file_name,
            "originFileName": file.file_name,
            "dir": file.policy.dir,
            "endpoint": file.policy.endpoint,
            "bucketName": file.policy.bucket_name,
            "size": file.size.to_string(),
            "mimeType": file.mime,
        });
        let call = self.call(
            Method::POST,
            POLICY_CALLBACK_PATH,
            Caller::Device(&account.device),
            &account.token,
        );
        let confirmed = self
            .call_json(call, &account.token, Some(&body))
            .await
            .map_err(|failure| failure.into_refused())?;
        let file_id = match confirmed.get("fileID") {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => {
                return Err(ProviderError::BadResponse {
                    message: "policy_callback answered no fileID".to_owned(),
                });
            }
        };
        tracing::debug!(file = %file.file_name, %file_id, account = %account.token, "uploaded an attachment");
        Ok(UploadedFile {
            file_name: file.file_name.clone(),
            file_id,
            is_image: file.mime.starts_with("image/"),
        })
    }

    /// `PUT <dir>/<file name>` into the policy's bucket with its temporary credentials, the
    /// content streamed as it arrives: with its `Content-Length` when known, else chunked
    /// (which OSS accepts in its place). The bytes sent.
    async fn put_object(
        &self,
        policy: &OssPolicy,
        file_name: &str,
        mime: &str,
        length: Option<u64>,
        content: AttachmentContent,
    ) -> Result<u64, ProviderError> {
        let key = format!("{}/{}", policy.dir.trim_end_matches('/'), file_name);
        let url =
            object_url(&policy.endpoint, &policy.bucket_name, &key).ok_or_else(|| ProviderError::BadResponse {
                message: format!(
                    "request_policy named the endpoint {:?}, which is no URL",
                    policy.endpoint
                ),
            })?;
        let date = httpdate::fmt_http_date(SystemTime::now());
        let string_to_sign = put_string_to_sign(mime, &date, &policy.security_token, &policy.bucket_name, &key);
        let signature = oss_signature(&policy.access_key_secret, &string_to_sign)
            .ok_or_else(|| oss_failure("the access key secret cannot sign"))?;

        // The content's own failure is kept aside: it ends the upload, and it is the
        // client's, not the upstream's.
        let sent = Arc::new(AtomicU64::new(0));
        let failure = Arc::new(OnceLock::new());
        let body = {
            let (sent, failure) = (Arc::clone(&sent), Arc::clone(&failure));
            content.map(move |piece| {
                match &piece {
                    Ok(bytes) => {
                        sent.fetch_add(u64::try_from(bytes.len()).unwrap_or(u64::MAX), Ordering::Relaxed);
                    }
                    Err(error) => {
                        let _ = failure.set(error.clone());
                    }
                }
                piece
            })
        };
        let mut request = self
            .inner
            .oss
            .put(url)
            .header(DATE, &date)
            .header(CONTENT_TYPE, mime)
            .header(SECURITY_TOKEN, &policy.security_token)
            .header(AUTHORIZATION, format!("OSS {}:{signature}", policy.access_key_id));
        if let Some(length) = length {
            request = request.header(CONTENT_LENGTH, length);
        }
        let outcome = request.body(reqwest::Body::wrap_stream(body)).send().await;
        if let Some(error) = failure.get() {
            return Err(ProviderError::Attachment(error.clone()));
        }
        let mut response = outcome.map_err(|error| {
            let error = match super::request::transport_error(error) {
                ProviderError::Unavailable { message } => oss_failure(&message),
                other => other,
            };
            tracing::warn!(%error, "OSS upload failed");
            error
        })?;
        let status = response.status();
        if !status.is_success() {
            let mut answer = Vec::new();
            while answer.len() < MAX_ERROR_BYTES
                && let Ok(Some(piece)) = response.chunk().await
            {
                answer.extend_from_slice(&piece);
            }
            let code = error_code(&String::from_utf8_lossy(&answer)).unwrap_or_default();
            tracing::warn!(%status, %code, "OSS refused an upload");
            return Err(oss_failure(&format!("{status} {code}")));
        }
        Ok(sent.load(Ordering::Relaxed))
    }
}

/// The `<Code>` of an OSS error answer.
fn error_code(answer: &str) -> Option<String> {
    let (_, rest) = answer.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    Some(code.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bare_host_is_https_with_virtual_hosted_addressing() {
        assert_eq!(
            oss_endpoint("oss-cn-wulanchabu.aliyuncs.com"),
            ("https://oss-cn-wulanchabu.aliyuncs.com".to_owned(), "virtual")
        );
    }

    #[test]
    fn a_url_keeps_its_scheme_and_an_address_uses_path_style() {
        assert_eq!(
            oss_endpoint("http://127.0.0.1:9000/"),
            ("http://127.0.0.1:9000".to_owned(), "path")
        );
        assert_eq!(
            oss_endpoint("http://localhost:9000"),
            ("http://localhost:9000".to_owned(), "path")
        );
        assert_eq!(oss_endpoint("[::1]:9000"), ("https://[::1]:9000".to_owned(), "path"));
        assert_eq!(
            oss_endpoint("http://oss.example.com"),
            ("http://oss.example.com".to_owned(), "virtual")
        );
    }

    #[test]
    fn the_signature_matches_alibabas_documented_example() {
        // Alibaba's V1 example (also its SDKs' test vector).
        let string_to_sign = "PUT\nODBGOERFMDMzQTczRUY3NUE3NzA5QzdFNUYzMDQxNEM=\ntext/html\nThu, 17 Nov 2005 18:49:58 GMT\n\
                              x-oss-magic:abracadabra\nx-oss-meta-author:foo@bar.com\n/oss-example/nelson";
        assert_eq!(
            oss_signature("OtxrzxIsfpFjA7SwPzILwy8Bw21TLhquhboDYROV", string_to_sign).as_deref(),
            Some("26NBxoKdsyly4EDv6inkoDft/yA=")
        );
    }

    #[test]
    fn a_put_signs_its_type_date_security_token_and_unescaped_resource() {
        assert_eq!(
            put_string_to_sign(
                "image/png",
                "Thu, 17 Nov 2005 18:49:58 GMT",
                "STS.token ",
                "bucket",
                "dir/海 1.png"
            ),
            "PUT\n\nimage/png\nThu, 17 Nov 2005 18:49:58 GMT\nx-oss-security-token:STS.token\n/bucket/dir/海 1.png"
        );
    }

    #[test]
    fn objects_are_addressed_virtual_hosted_or_by_path_with_their_key_escaped() {
        let url = |endpoint| object_url(endpoint, "bucket", "dir/a b/海.png").map(|url| url.to_string());
        assert_eq!(
            url("oss-cn-wulanchabu.aliyuncs.com").as_deref(),
            Some("https://bucket.oss-cn-wulanchabu.aliyuncs.com/dir/a%20b/%E6%B5%B7.png")
        );
        assert_eq!(
            url("http://127.0.0.1:9000/").as_deref(),
            Some("http://127.0.0.1:9000/bucket/dir/a%20b/%E6%B5%B7.png")
        );
        assert_eq!(
            object_url("http://localhost:9000", "bucket", "d/x?y#z.png")
                .map(|url| url.to_string())
                .as_deref(),
            Some("http://localhost:9000/bucket/d/x%3Fy%23z.png")
        );
        assert_eq!(url("http://[::1"), None);
    }

    #[test]
    fn an_oss_error_answer_gives_its_code() {
        let answer = "<?xml version=\"1.0\"?>\n<Error>\n  <Code>AccessDenied</Code>\n  <Message>no</Message>\n</Error>";
        assert_eq!(error_code(answer).as_deref(), Some("AccessDenied"));
        assert_eq!(error_code("not xml"), None);
    }

    #[test]
    fn the_form_lists_files_in_order_then_the_text() {
        let files = [
            UploadedFile {
                file_name: "a.png".into(),
                file_id: "11".into(),
                is_image: true,
            },
            UploadedFile {
                file_name: "b.pdf".into(),
                file_id: "22".into(),
                is_image: false,
            },
        ];
        let form: Value = serde_json::from_str(&chat_form(&files, "user:看图\nassistant:")).unwrap_or_default();
        assert_eq!(
            form,
            json!([
                {"name": "", "formType": 2, "content": "a.png", "fileID": "11"},
                {"name": "", "formType": 6, "content": "b.pdf", "fileID": "22"},
                {"name": "", "formType": 1, "content": "user:看图\nassistant:"}
            ])
        );
    }
}
