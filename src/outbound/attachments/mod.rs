//! The attachment fetcher: downloads the `http(s)` URLs clients attach to chat messages,
//! guarded against reaching private networks, and decodes their `data:` URLs (protocol §7 step 1).

mod data_url;
mod guard;
mod naming;

#[cfg(test)]
mod tests;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use reqwest::StatusCode;
use reqwest::dns::Resolve;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use url::Url;

use crate::config::FileSettings;
use crate::domain::chat::{Attachment, AttachmentError};
use crate::domain::ports::AttachmentSource;

pub use data_url::{DataUrl, DataUrlError, decode_data_url};
pub use guard::{
    AddressClass, AddressPolicy, GuardRefusal, GuardedResolver, MAX_REDIRECTS, SystemResolver, classify_address,
    redirect_policy,
};
pub use naming::{choose_mime, extension_for_mime, file_extension, file_name, mime_essence, url_extension};

/// What the fetcher calls itself.
const USER_AGENT: &str = concat!("hailuo-free-api/", env!("CARGO_PKG_VERSION"), " (attachment fetcher)");
/// The longest connect phase, however long a download may take.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a URL an error message quotes.
const QUOTED_URL_CHARS: usize = 64;
/// The most memory reserved up front from a declared `Content-Length`.
const MAX_PREALLOCATION: usize = 8 << 20;

/// Fetches attachments: downloads remote URLs (`HEAD`, then a size-capped `GET`) through
/// a client that only connects to addresses its [`AddressPolicy`] allows, and decodes data URLs.
#[derive(Clone, Debug)]
pub struct AttachmentFetcher {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_bytes: u64,
    timeout: Duration,
}

impl AttachmentFetcher {
    /// A fetcher with the system resolver and the policy `settings.allow_private_networks` asks for.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS initialisation).
    pub fn new(settings: &FileSettings) -> Result<Self, reqwest::Error> {
        Self::with_parts(
            settings,
            AddressPolicy::from_settings(settings),
            Arc::new(SystemResolver),
        )
    }

    /// A fetcher with an explicit policy (which wins over `settings.allow_private_networks`)
    /// and resolver, for tests: the resolver is guarded by the policy.
    ///
    /// # Errors
    /// When the HTTP client cannot be built (TLS initialisation).
    pub fn with_parts(
        settings: &FileSettings,
        policy: AddressPolicy,
        resolver: Arc<dyn Resolve>,
    ) -> Result<Self, reqwest::Error> {
        let policy = Arc::new(policy);
        let timeout = settings.download_timeout();
        let client = reqwest::Client::builder()
            .user_agent(USER_AGENT)
            // Client URLs must not reach through the operator's proxy, nor be rewritten by it.
            .no_proxy()
            // The bytes as served: no transparent decompression.
            .no_gzip()
            .no_brotli()
            .no_deflate()
            .no_zstd()
            .redirect(redirect_policy(Arc::clone(&policy)))
            .dns_resolver(Arc::new(GuardedResolver::new(resolver, Arc::clone(&policy))))
            .connect_timeout(timeout.min(MAX_CONNECT_TIMEOUT))
            .timeout(timeout)
            .build()?;
        Ok(Self {
            client,
            policy,
            max_bytes: settings.max_bytes,
            timeout,
        })
    }

    /// The address policy in force.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    fn decode(&self, url: &str) -> Result<Attachment, AttachmentError> {
        let decoded = decode_data_url(url, self.max_bytes).map_err(|error| {
            let message = format!("attachment data URL {} is invalid: {error}", quote(url));
            match error {
                DataUrlError::TooLarge { .. } => AttachmentError::TooLarge(format!(
                    "attachment data URL {} is larger than the limit of {} bytes",
                    quote(url),
                    self.max_bytes
                )),
                _ => AttachmentError::Invalid(message),
            }
        })?;
        // RFC 2397 defaults to text/plain; magic numbers know better when present.
        let mime = decoded
            .mime
            .or_else(|| naming::sniff_mime(&decoded.bytes))
            .unwrap_or_else(|| {
                if std::str::from_utf8(&decoded.bytes).is_ok() {
                    "text/plain".to_owned()
                } else {
                    naming::OCTET_STREAM.to_owned()
                }
            });
        Ok(Attachment {
            file_name: file_name(None, &mime),
            mime,
            bytes: decoded.bytes.into(),
        })
    }

    /// Downloads `url`, HEAD and GET together within the download timeout.
    async fn download(&self, url: Url) -> Result<Attachment, AttachmentError> {
        let quoted = quote(url.as_str());
        tokio::time::timeout(self.timeout, self.download_unbounded(url))
            .await
            .unwrap_or_else(|_| {
                Err(AttachmentError::Invalid(format!(
                    "attachment URL {quoted} did not answer within {} s",
                    self.timeout.as_secs()
                )))
            })
    }

    async fn download_unbounded(&self, url: Url) -> Result<Attachment, AttachmentError> {
        let quoted = quote(url.as_str());
        self.policy
            .check_url(&url)
            .map_err(|refusal| refused(&quoted, &refusal))?;

        let head = self
            .client
            .head(url.clone())
            .send()
            .await
            .map_err(|error| self.transport_failure(&quoted, &error))?;
        // A HEAD that fails says little: servers without HEAD (405, 501) and presigned links
        // valid for GET only (403) still serve the GET, whose own status decides. A HEAD that
        // works lets an oversized file be refused before any byte is downloaded.
        if head.status().is_success() {
            self.check_declared_length(&quoted, head.headers())?;
        }

        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|error| self.transport_failure(&quoted, &error))?;
        let status = response.status();
        if status.as_u16() >= 400 {
            return Err(bad_status(&quoted, "GET", status));
        }
        let declared = self.check_declared_length(&quoted, response.headers())?;
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(mime_essence);
        let extension = url_extension(response.url()).or_else(|| url_extension(&url));

        let capacity = declared.map_or(0, |length| usize::try_from(length).unwrap_or(usize::MAX));
        let mut body = Vec::with_capacity(capacity.min(MAX_PREALLOCATION));
        while let Some(chunk) = response
            .chunk()
            .await
            .map_err(|error| self.transport_failure(&quoted, &error))?
        {
            let length = u64::try_from(body.len() + chunk.len()).unwrap_or(u64::MAX);
            if length > self.max_bytes {
                return Err(self.too_large(&quoted));
            }
            body.extend_from_slice(&chunk);
        }
        if body.is_empty() {
            return Err(AttachmentError::Invalid(format!("attachment URL {quoted} is empty")));
        }

        let mime = choose_mime(content_type, extension.as_deref(), &body);
        Ok(Attachment {
            file_name: file_name(extension.as_deref(), &mime),
            mime,
            bytes: body.into(),
        })
    }

    /// The declared `Content-Length`, refused when over the limit.
    fn check_declared_length(&self, quoted: &str, headers: &HeaderMap) -> Result<Option<u64>, AttachmentError> {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        match declared {
            Some(length) if length > self.max_bytes => Err(self.too_large(quoted)),
            _ => Ok(declared),
        }
    }

    fn too_large(&self, quoted: &str) -> AttachmentError {
        AttachmentError::TooLarge(format!(
            "attachment URL {quoted} is larger than the limit of {} bytes",
            self.max_bytes
        ))
    }

    fn transport_failure(&self, quoted: &str, error: &reqwest::Error) -> AttachmentError {
        if let Some(refusal) = find_refusal(error) {
            return refused(quoted, refusal);
        }
        if error.is_timeout() {
            return AttachmentError::Invalid(format!(
                "attachment URL {quoted} did not answer within {} s",
                self.timeout.as_secs()
            ));
        }
        AttachmentError::Invalid(format!(
            "attachment URL {quoted} could not be reached: {}",
            root_cause(error)
        ))
    }
}

#[async_trait]
impl AttachmentSource for AttachmentFetcher {
    async fn fetch(&self, url: &str) -> Result<Attachment, AttachmentError> {
        let url = url.trim();
        if data_url::is_data_url(url) {
            return self.decode(url);
        }
        let parsed = Url::parse(url).map_err(|error| {
            AttachmentError::Invalid(format!(
                "attachment URL {} is not a valid URL ({error}); use an http, https or data URL",
                quote(url)
            ))
        })?;
        match parsed.scheme() {
            "http" | "https" => self.download(parsed).await,
            scheme => Err(AttachmentError::Invalid(format!(
                "attachment URL {} has the unsupported scheme `{scheme}`; use an http, https or data URL",
                quote(url)
            ))),
        }
    }
}

fn refused(quoted: &str, refusal: &GuardRefusal) -> AttachmentError {
    match refusal {
        GuardRefusal::Address { .. } => {
            AttachmentError::Invalid(format!("attachment URL {quoted} is not allowed: {refusal}"))
        }
        GuardRefusal::Scheme { .. } | GuardRefusal::TooManyRedirects { .. } => {
            AttachmentError::Invalid(format!("attachment URL {quoted} is refused: {refusal}"))
        }
    }
}

fn bad_status(quoted: &str, method: &str, status: StatusCode) -> AttachmentError {
    AttachmentError::Invalid(format!(
        "attachment URL {quoted} answered {method} with status {status}"
    ))
}

/// The guard's refusal, wherever reqwest wrapped it.
fn find_refusal<'a>(error: &'a (dyn StdError + 'static)) -> Option<&'a GuardRefusal> {
    let mut current = Some(error);
    while let Some(error) = current {
        if let Some(refusal) = error.downcast_ref::<GuardRefusal>() {
            return Some(refusal);
        }
        current = error.source();
    }
    None
}

/// The innermost error's message (`Connection refused`, `failed to lookup address`, ...).
fn root_cause(error: &(dyn StdError + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}

/// `url` shortened for an error message (a data URL can be megabytes long), with any
/// password hidden.
fn quote(url: &str) -> String {
    let parsed = if data_url::is_data_url(url) {
        None
    } else {
        Url::parse(url).ok()
    };
    let shown = match parsed {
        Some(mut parsed) if parsed.password().is_some() => {
            let _ = parsed.set_password(Some("***"));
            parsed.to_string()
        }
        _ => url.to_owned(),
    };
    match shown.char_indices().nth(QUOTED_URL_CHARS) {
        Some((cut, _)) => format!("`{}…`", &shown[..cut]),
        None => format!("`{shown}`"),
    }
}
