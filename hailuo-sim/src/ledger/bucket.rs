//! The simulated OSS bucket and the file side of the API: the STS credentials handed out, the
//! objects stored, and the files `policy_callback` confirmed.

use std::collections::HashMap;
use std::time::Instant;

use crate::records::SimFile;

/// The bucket the simulated OSS serves (it must not clash with `/v1/...` and `/v4/...`).
pub(crate) const OSS_BUCKET: &str = "hailuo-sim";

/// Temporary STS credentials handed out by `request_policy`.
#[derive(Clone, Debug)]
pub(crate) struct StsCredential {
    /// The Hailuo `Token` that asked for them.
    pub token: String,
    /// `accessKeySecret`, the HMAC key of the OSS signature.
    pub secret: String,
    /// `securityToken`, which each OSS request must carry in `x-oss-security-token`.
    pub security_token: String,
    /// `dir`: every object key must start with it and a `/`.
    pub dir: String,
    /// When they stop working.
    pub expires: Instant,
}

/// An object stored by an OSS `PUT`.
#[derive(Clone, Debug)]
pub(crate) struct OssObject {
    /// Its bytes.
    pub bytes: Vec<u8>,
    /// The `Content-Type` it was uploaded with.
    pub content_type: String,
    /// The Hailuo `Token` whose credentials uploaded it.
    pub token: String,
}

/// The bucket, its credentials and the confirmed files.
#[derive(Default)]
pub(crate) struct Bucket {
    /// `request_policy` calls per token.
    pub policy_requests: HashMap<String, usize>,
    /// Upload credentials by `accessKeyId`.
    pub credentials: HashMap<String, StsCredential>,
    /// The upload directory of each token (`dir`).
    pub upload_dirs: HashMap<String, String>,
    /// Stored objects by `(bucket, key)`.
    pub objects: HashMap<(String, String), OssObject>,
    /// Files confirmed by `policy_callback`, in confirmation order.
    pub files: Vec<SimFile>,
}
