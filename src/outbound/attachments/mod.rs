//! The attachment fetcher: opens the `http(s)` URLs clients attach to chat messages, guarded
//! against reaching private networks, and decodes their `data:` URLs (protocol §7 step 1),
//! holding each request's attachments to their count and total; a download's body is read
//! by its upload, a piece at a time.

mod budget;
mod data_url;
mod guard;
mod naming;

#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::error::Error as StdError;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use futures::Stream;
use futures::stream::BoxStream;
use reqwest::StatusCode;
use reqwest::dns::Resolve;
use reqwest::header::{CONTENT_LENGTH, CONTENT_TYPE, HeaderMap};
use url::Url;

use crate::config::FileSettings;
use crate::domain::chat::{Attachment, AttachmentError, AttachmentRef};
use crate::domain::ports::AttachmentSource;

use budget::{Exceeded, RequestBudget};
pub use data_url::{DataUrl, DataUrlError, decode_data_url};
pub use guard::{
    AddressClass, AddressPolicy, GuardRefusal, GuardedResolver, MAX_REDIRECTS, SystemResolver, classify_address,
    redirect_policy,
};
pub use naming::{
    attachment_name, choose_mime, extension_for_mime, file_extension, file_name, mime_essence, name_extension,
    safe_file_name, url_extension,
};

/// What the fetcher calls itself.
const USER_AGENT: &str = concat!("hailuo-free-api/", env!("CARGO_PKG_VERSION"), " (attachment fetcher)");
/// The longest connect phase, however long a download may take.
const MAX_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of a URL an error message quotes.
const QUOTED_URL_CHARS: usize = 64;
/// How many of a download's first bytes are read while opening it, to sniff its type from.
const SNIFF_BYTES: usize = 8 << 10;

/// Fetches attachments: opens remote URLs (`HEAD`, then a `GET` whose body is read as it is
/// uploaded) through a client that only connects to addresses its [`AddressPolicy`] allows,
/// and decodes data URLs; each request's attachments within its count and total budget.
#[derive(Clone, Debug)]
pub struct AttachmentFetcher {
    client: reqwest::Client,
    policy: Arc<AddressPolicy>,
    max_bytes: u64,
    max_per_message: usize,
    max_total_bytes: u64,
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
        let timeout = settings.download_timeout;
        // No whole-request timeout: a body is read when its upload runs, which may be after
        // a wait for an account; the opening and the body have a deadline each instead.
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
            .build()?;
        Ok(Self {
            client,
            policy,
            max_bytes: settings.max_bytes,
            max_per_message: settings.max_per_message,
            max_total_bytes: settings.max_total_bytes,
            timeout,
        })
    }

    /// The address policy in force.
    pub fn policy(&self) -> &AddressPolicy {
        &self.policy
    }

    /// Opens one attachment within `budget`.
    async fn open_one(
        &self,
        attachment: AttachmentRef<'_>,
        budget: &Arc<RequestBudget>,
    ) -> Result<Attachment, AttachmentError> {
        let (url, name) = (attachment.url.trim(), attachment.name);
        if data_url::is_data_url(url) {
            return self.decode(url, name, budget);
        }
        let parsed = Url::parse(url).map_err(|error| {
            AttachmentError::Invalid(format!(
                "attachment URL {} is not a valid URL ({error}); use an http, https or data URL",
                quote(url)
            ))
        })?;
        match parsed.scheme() {
            "http" | "https" => self.download(parsed, name, budget).await,
            scheme => Err(AttachmentError::Invalid(format!(
                "attachment URL {} has the unsupported scheme `{scheme}`; use an http, https or data URL",
                quote(url)
            ))),
        }
    }

    fn decode(&self, url: &str, name: Option<&str>, budget: &RequestBudget) -> Result<Attachment, AttachmentError> {
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
        budget
            .receive(u64::try_from(decoded.bytes.len()).unwrap_or(u64::MAX))
            .map_err(|exceeded| past_total(&quote(url), exceeded))?;
        // RFC 2397 defaults to text/plain; the client's file name and magic numbers know
        // better when present.
        let mime = decoded
            .mime
            .or_else(|| {
                name.and_then(name_extension)
                    .and_then(|ext| naming::mime_for_extension(&ext))
            })
            .or_else(|| naming::sniff_mime(&decoded.bytes))
            .unwrap_or_else(|| {
                if std::str::from_utf8(&decoded.bytes).is_ok() {
                    "text/plain".to_owned()
                } else {
                    naming::OCTET_STREAM.to_owned()
                }
            });
        Ok(Attachment::in_memory(
            attachment_name(name, None, &mime),
            mime,
            decoded.bytes.into(),
        ))
    }

    /// Opens `url` (HEAD, then the GET's head and first bytes) within the download timeout.
    async fn download(
        &self,
        url: Url,
        name: Option<&str>,
        budget: &Arc<RequestBudget>,
    ) -> Result<Attachment, AttachmentError> {
        let quoted = quote(url.as_str());
        tokio::time::timeout(self.timeout, self.open_download(url, name, budget))
            .await
            .unwrap_or_else(|_| Err(timed_out(&quoted, self.timeout)))
    }

    async fn open_download(
        &self,
        url: Url,
        name: Option<&str>,
        budget: &Arc<RequestBudget>,
    ) -> Result<Attachment, AttachmentError> {
        let quoted = quote(url.as_str());
        self.policy
            .check_url(&url)
            .map_err(|refusal| refused(&quoted, &refusal))?;

        let head = self
            .client
            .head(url.clone())
            .send()
            .await
            .map_err(|error| transport_failure(&quoted, &error, self.timeout))?;
        // A HEAD that fails says little: servers without HEAD (405, 501) and presigned links
        // valid for GET only (403) still serve the GET, whose own status decides. A HEAD that
        // works lets an oversized file, or a request over its total, be refused before any
        // byte is downloaded.
        let mut declared_so_far = 0;
        if head.status().is_success()
            && let Some(length) = self.check_declared_length(&quoted, head.headers())?
        {
            budget
                .declare(length)
                .map_err(|exceeded| past_total(&quoted, exceeded))?;
            declared_so_far = length;
        }

        let mut response = self
            .client
            .get(url.clone())
            .send()
            .await
            .map_err(|error| transport_failure(&quoted, &error, self.timeout))?;
        let status = response.status();
        if status.as_u16() >= 400 {
            return Err(bad_status(&quoted, "GET", status));
        }
        let declared = self.check_declared_length(&quoted, response.headers())?;
        if let Some(length) = declared {
            budget
                .declare(length.saturating_sub(declared_so_far))
                .map_err(|exceeded| past_total(&quoted, exceeded))?;
        }
        let content_type = response
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(mime_essence);
        let url_extension = url_extension(response.url()).or_else(|| url_extension(&url));
        let extension = name.and_then(name_extension).or_else(|| url_extension.clone());
        // The length the body is framed by (its `Content-Length`, when that is what delimits
        // it), before any of it is read: the one its upload may declare in turn.
        let length = response.content_length();

        // The type may have to be sniffed from the first bytes: read those now, and keep them
        // for the upload, which reads the rest.
        let mut meter = Meter {
            quoted: quoted.clone(),
            max_bytes: self.max_bytes,
            received: 0,
            budget: Arc::clone(budget),
        };
        let mut first = Vec::new();
        let mut peeked = VecDeque::new();
        while first.len() < SNIFF_BYTES {
            let Some(piece) = response
                .chunk()
                .await
                .map_err(|error| transport_failure(&quoted, &error, self.timeout))?
            else {
                break;
            };
            meter.count(piece.len())?;
            first.extend_from_slice(&piece[..piece.len().min(SNIFF_BYTES - first.len())]);
            peeked.push_back(piece);
        }
        if first.is_empty() {
            return Err(AttachmentError::Invalid(format!("attachment URL {quoted} is empty")));
        }

        let mime = choose_mime(content_type, extension.as_deref(), &first);
        let content = DownloadBody {
            peeked,
            rest: Box::pin(response.bytes_stream()),
            meter,
            timeout: self.timeout,
            deadline: None,
            finished: false,
        };
        Ok(Attachment {
            file_name: attachment_name(name, url_extension.as_deref(), &mime),
            mime,
            length,
            content: Box::pin(content),
        })
    }

    /// The declared `Content-Length`, refused when over the limit.
    fn check_declared_length(&self, quoted: &str, headers: &HeaderMap) -> Result<Option<u64>, AttachmentError> {
        let declared = headers
            .get(CONTENT_LENGTH)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.trim().parse::<u64>().ok());
        match declared {
            Some(length) if length > self.max_bytes => Err(too_large(quoted, self.max_bytes)),
            _ => Ok(declared),
        }
    }
}

#[async_trait]
impl AttachmentSource for AttachmentFetcher {
    async fn open(&self, attachments: &[AttachmentRef<'_>]) -> Result<Vec<Attachment>, AttachmentError> {
        if attachments.len() > self.max_per_message {
            return Err(AttachmentError::Invalid(format!(
                "the last message attaches {} files; a message may carry at most {}",
                attachments.len(),
                self.max_per_message
            )));
        }
        let budget = Arc::new(RequestBudget::new(self.max_total_bytes));
        let mut opened =
            futures::future::try_join_all(attachments.iter().map(|attachment| self.open_one(*attachment, &budget)))
                .await?;
        naming::tell_apart(&mut opened);
        Ok(opened)
    }
}

/// Counts one download's bytes against its file's limit and its request's budget.
struct Meter {
    quoted: String,
    max_bytes: u64,
    received: u64,
    budget: Arc<RequestBudget>,
}

impl Meter {
    fn count(&mut self, length: usize) -> Result<(), AttachmentError> {
        let length = u64::try_from(length).unwrap_or(u64::MAX);
        self.received = self.received.saturating_add(length);
        if self.received > self.max_bytes {
            return Err(too_large(&self.quoted, self.max_bytes));
        }
        self.budget
            .receive(length)
            .map_err(|exceeded| past_total(&self.quoted, exceeded))
    }
}

/// A download's body as an attachment's content: the bytes read while opening it, then the
/// rest as it arrives, each piece counted by its [`Meter`]; it ends at its first error, and
/// fails once the download timeout has passed since it was first read.
struct DownloadBody {
    peeked: VecDeque<Bytes>,
    rest: BoxStream<'static, reqwest::Result<Bytes>>,
    meter: Meter,
    timeout: Duration,
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    finished: bool,
}

impl Stream for DownloadBody {
    type Item = Result<Bytes, AttachmentError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = &mut *self;
        if this.finished {
            return Poll::Ready(None);
        }
        if let Some(piece) = this.peeked.pop_front() {
            return Poll::Ready(Some(Ok(piece)));
        }
        let timeout = this.timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        if deadline.as_mut().poll(cx).is_ready() {
            this.finished = true;
            return Poll::Ready(Some(Err(timed_out(&this.meter.quoted, timeout))));
        }
        let item = match ready!(this.rest.as_mut().poll_next(cx)) {
            None => None,
            Some(Ok(piece)) => Some(this.meter.count(piece.len()).map(|()| piece)),
            Some(Err(error)) => Some(Err(transport_failure(&this.meter.quoted, &error, timeout))),
        };
        this.finished = !matches!(item, Some(Ok(_)));
        Poll::Ready(item)
    }
}

fn too_large(quoted: &str, max_bytes: u64) -> AttachmentError {
    AttachmentError::TooLarge(format!(
        "attachment URL {quoted} is larger than the limit of {max_bytes} bytes"
    ))
}

fn past_total(quoted: &str, exceeded: Exceeded) -> AttachmentError {
    AttachmentError::TooLarge(format!(
        "attachment {quoted} takes the request's attachments past their limit of {} bytes in total",
        exceeded.max_total
    ))
}

fn timed_out(quoted: &str, timeout: Duration) -> AttachmentError {
    AttachmentError::Invalid(format!(
        "attachment URL {quoted} did not answer within {} s",
        timeout.as_secs()
    ))
}

fn transport_failure(quoted: &str, error: &reqwest::Error, timeout: Duration) -> AttachmentError {
    if let Some(refusal) = find_refusal(error) {
        return refused(quoted, refusal);
    }
    if error.is_timeout() {
        return timed_out(quoted, timeout);
    }
    AttachmentError::Invalid(format!(
        "attachment URL {quoted} could not be reached: {}",
        root_cause(error)
    ))
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
