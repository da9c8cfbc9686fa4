//! Speech as the simulated upstream keeps it: the voice each account selected, the `msg_tts`
//! jobs and their MP3s, and what the polls asked for.

use std::collections::HashMap;
use std::time::Instant;

use crate::records::TtsRecord;

/// The speech of one assistant message, polled through `msg_tts`.
#[derive(Clone, Debug, Default)]
pub(crate) struct TtsJob {
    /// Polls so far.
    pub polls: usize,
    /// When it was last polled.
    pub last_poll: Option<Instant>,
    /// The audio URLs, once made.
    pub urls: Option<Vec<String>>,
}

/// Voices, speech jobs and their audio.
#[derive(Default)]
pub(crate) struct SpeechDesk {
    /// The voice each token selected last (`update_robot_custom_config`).
    pub voices: HashMap<String, String>,
    /// Speech jobs by `msgID`.
    pub jobs: HashMap<String, TtsJob>,
    /// The first `msg_tts` poll of each `msgID`, in order.
    pub requests: Vec<TtsRecord>,
    /// Voice mismatches (`timbre` other than the token's selected voice), in order.
    pub voice_mismatches: Vec<String>,
    /// Polls answered "pending" before the audio is ready (`None`: the default).
    pub pending_polls: Option<usize>,
    /// Every poll stays pending.
    pub never_ready: bool,
    /// Speech audio served under `/__audio/<id>.mp3`, by id.
    pub audio_files: HashMap<String, AudioFile>,
}

/// An MP3 `msg_tts` handed out the URL of.
#[derive(Clone, Debug)]
pub(crate) struct AudioFile {
    /// When it was made.
    pub made: Instant,
    /// The MP3.
    pub bytes: Vec<u8>,
}

impl SpeechDesk {
    /// Drops what a long run piles up and nobody can ask for any more: the poll records and
    /// voice mismatches, the jobs of messages that are gone (`spoken` says which are not; a
    /// pending job keeps its polls), and the audio made before `stale_before`.
    pub fn forget_history(&mut self, stale_before: Instant, spoken: impl Fn(&str) -> bool) {
        self.jobs.retain(|msg_id, _| spoken(msg_id));
        self.audio_files.retain(|_, file| file.made >= stale_before);
        self.requests = Vec::new();
        self.voice_mismatches = Vec::new();
    }
}
