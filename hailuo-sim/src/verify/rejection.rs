//! Why the simulator refuses a request: the upstream's envelope code and message, and the
//! protocol violation to record when the client broke a rule.

/// Why a request is refused: the envelope code and message the upstream answers, and the
/// protocol violation to record (none for a legitimate refusal such as a dead token).
#[derive(Clone, Debug)]
pub(crate) struct Rejection {
    /// Non-zero `statusInfo.code`.
    pub code: i64,
    /// `statusInfo.message`, Chinese like the upstream's.
    pub message: &'static str,
    /// What the client did wrong, when it did something wrong.
    pub violation: Option<String>,
}

impl Rejection {
    /// A refusal caused by a protocol violation.
    pub fn violation(code: i64, message: &'static str, what: impl Into<String>) -> Self {
        Self {
            code,
            message,
            violation: Some(what.into()),
        }
    }

    /// A request without a usable `Token` header.
    pub fn not_logged_in(what: impl Into<String>) -> Self {
        Self::violation(1001, "用户未登录", what)
    }

    /// A wrong `Yy` signature.
    pub fn bad_signature(what: impl Into<String>) -> Self {
        Self::violation(1002, "签名错误", what)
    }

    /// A `uuid`/`device_id` pair this token never registered.
    pub fn unknown_device(what: impl Into<String>) -> Self {
        Self::violation(1003, "设备未注册", what)
    }

    /// A device the upstream itself forgot: the legitimate `设备未注册`, not a violation.
    pub fn device_forgotten() -> Self {
        Self {
            code: 1003,
            message: "设备未注册",
            violation: None,
        }
    }

    /// A legitimate refusal of what the request asks (not a violation).
    pub fn refused(code: i64, message: &'static str) -> Self {
        Self {
            code,
            message,
            violation: None,
        }
    }

    /// A dead token: the legitimate "logged out" answer, not a violation.
    pub fn logged_out() -> Self {
        Self {
            code: 1004,
            message: "登录已失效，请重新登录",
            violation: None,
        }
    }

    /// A malformed query, header or body.
    pub fn bad_parameter(what: impl Into<String>) -> Self {
        Self::violation(1005, "参数错误", what)
    }
}
