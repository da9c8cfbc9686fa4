//! The simulator's own request checks: the `Yy` signature, the profile query string and the
//! browser headers of protocol sections 1 and 2, and the shapes of ids. Written independently
//! of the outbound adapter, so that a mistake there shows up here as a violation instead of
//! being shared.

mod headers;
mod query;
mod rejection;
mod signature;

pub(crate) use headers::{check_browser_headers, sentry_trace_id};
pub(crate) use query::{ProfileQuery, check_profile_query, query_value, strip_own_query};
pub(crate) use rejection::Rejection;
pub(crate) use signature::{
    ChatSignedFields, VoiceSignedFields, chat_signature, json_signature, md5hex, voice_signature,
};

/// A `uuid` as the web app makes them: 36 characters, hex digits and dashes in 8-4-4-4-12.
pub(crate) fn is_dashed_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && g.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// A conversation id: 18 or more digits.
pub(crate) fn is_conversation_id(text: &str) -> bool {
    text.len() >= 18 && text.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashed_uuids_and_conversation_ids_are_recognised() {
        assert!(is_dashed_uuid("0b1c2d3e-4f50-4a1b-8c2d-3e4f5a6b7c8d"));
        assert!(!is_dashed_uuid("0b1c2d3e4f504a1b8c2d3e4f5a6b7c8d"));
        assert!(is_conversation_id("243612345678901234"));
        assert!(!is_conversation_id("0"));
    }
}
