//! Voice messages (`phone_msg`) the simulated upstream heard.

use crate::records::PhoneRecord;

/// The voice messages heard.
#[derive(Default)]
pub(crate) struct VoiceInbox {
    /// Decodable `phone_msg` uploads, in order.
    pub uploads: Vec<PhoneRecord>,
    /// `phone_msg` streams whose client left before the last `audio_chunk`.
    pub abandoned: usize,
}
