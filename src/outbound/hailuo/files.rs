//! Files over OSS (protocol §7): for each attachment, temporary STS credentials from
//! `request_policy`, an upload to Alibaba Cloud OSS (OpenDAL's OSS service signs it, V1 with
//! the security token), a `policy_callback` that turns it into a file id, and the chat's
//! `form` listing the files before the text.

use std::sync::Once;

use reqwest::Method;
use serde::Deserialize;
use serde_json::{Value, json};

use super::HailuoClient;
use super::request::Caller;
use crate::domain::chat::Attachment;
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

fn oss_failure(error: &opendal::Error) -> ProviderError {
    ProviderError::Unavailable {
        message: format!("uploading an attachment to OSS failed: {}", error.kind()),
    }
}

impl HailuoClient {
    /// Uploads every attachment concurrently; the files come back in the order given.
    ///
    /// # Errors
    /// The first failure: the upstream refusing the policy or the callback is
    /// [`ProviderError::Refused`], OSS failing is [`ProviderError::Unavailable`].
    pub async fn upload_attachments(
        &self,
        account: &Account,
        attachments: &[Attachment],
    ) -> Result<Vec<UploadedFile>, ProviderError> {
        futures::future::try_join_all(attachments.iter().map(|attachment| self.upload(account, attachment))).await
    }

    /// Uploads one attachment: policy, OSS, callback.
    async fn upload(&self, account: &Account, attachment: &Attachment) -> Result<UploadedFile, ProviderError> {
        let call = self.call(Method::GET, REQUEST_POLICY_PATH, Caller::Device(&account.device));
        let policy = self
            .call_json(call, &account.token, None)
            .await
            .map_err(|failure| failure.into_refused())?;
        let policy: OssPolicy = serde_json::from_value(policy).map_err(|error| ProviderError::BadResponse {
            message: format!("request_policy answered an unexpected payload: {error}"),
        })?;
        self.put_object(&policy, attachment).await?;

        let size = attachment.bytes.len().to_string();
        let body = json!({
            "fileName": attachment.file_name,
            "originFileName": attachment.file_name,
            "dir": policy.dir,
            "endpoint": policy.endpoint,
            "bucketName": policy.bucket_name,
            "size": size,
            "mimeType": attachment.mime,
        });
        let call = self.call(Method::POST, POLICY_CALLBACK_PATH, Caller::Device(&account.device));
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
        tracing::debug!(file = %attachment.file_name, %file_id, account = %account.token, "uploaded an attachment");
        Ok(UploadedFile {
            file_name: attachment.file_name.clone(),
            file_id,
            is_image: attachment.is_image(),
        })
    }

    /// `PUT <dir>/<file name>` into the policy's bucket with its temporary credentials.
    async fn put_object(&self, policy: &OssPolicy, attachment: &Attachment) -> Result<(), ProviderError> {
        static TRANSPORT: Once = Once::new();
        TRANSPORT.call_once(opendal::install_default);
        let (endpoint, addressing) = oss_endpoint(&policy.endpoint);
        let builder = opendal::services::Oss::default()
            .bucket(&policy.bucket_name)
            .endpoint(&endpoint)
            .addressing_style(addressing)
            .access_key_id(&policy.access_key_id)
            .access_key_secret(&policy.access_key_secret)
            .security_token(&policy.security_token);
        let operator = opendal::Operator::new(builder).map_err(|error| oss_failure(&error))?;
        let key = format!("{}/{}", policy.dir.trim_end_matches('/'), attachment.file_name);
        operator
            .write_with(&key, attachment.bytes.clone())
            .content_type(&attachment.mime)
            .await
            .map_err(|error| {
                tracing::warn!(%error, "OSS upload failed");
                oss_failure(&error)
            })?;
        Ok(())
    }
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
