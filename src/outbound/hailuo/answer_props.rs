//! Property tests of the answer stream decoder: garbage bytes and garbled events give errors
//! or nothing, never a panic; a growing cumulative answer, cut marks and all, decodes to
//! exactly its final text; nothing follows the final delta or an error.

use bytes::Bytes;
use proptest::prelude::*;
use serde_json::{Value, json};

use super::*;

/// Any JSON value, a few levels deep, with the event's field names likely.
fn any_json() -> impl Strategy<Value = Value> {
    crate::json_props::any_json(crate::json_props::JsonShape {
        keys: &[
            "type",
            "statusInfo",
            "code",
            "message",
            "data",
            "messageResult",
            "chatID",
            "msgID",
            "isEnd",
            "content",
            "x",
        ],
        leaves: vec![json!("243612345678901234"), json!(0), json!(8)],
        depth: 4,
        size: 32,
    })
}

fn any_event() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        Just(MESSAGE_RESULT_EVENT.to_owned()),
        Just("send_result".to_owned()),
        any::<String>()
    ];
    let data = prop_oneof![any_json().prop_map(|v| v.to_string()), any::<String>()];
    (name, data)
}

/// Runs `bytes`, cut into `chunks`, through [`decode_answer`].
fn decode(bytes: Vec<u8>, cuts: &[proptest::sample::Index]) -> Vec<Result<AnswerDelta, ProviderError>> {
    let mut at: Vec<usize> = cuts.iter().map(|cut| cut.index(bytes.len() + 1)).collect();
    at.extend([0, bytes.len()]);
    at.sort_unstable();
    at.dedup();
    let chunks: Vec<Result<Bytes, std::io::Error>> = at
        .windows(2)
        .map(|w| Ok(Bytes::copy_from_slice(&bytes[w[0]..w[1]])))
        .collect();
    let stream = decode_answer(futures::stream::iter(chunks), |_: std::io::Error| {
        ProviderError::Timeout
    });
    futures::executor::block_on(stream.collect::<Vec<_>>())
}

/// Nothing after the final delta or an error, and at most one final delta.
fn ends_cleanly(items: &[Result<AnswerDelta, ProviderError>]) -> bool {
    let stop = items
        .iter()
        .position(|item| item.as_ref().map_or(true, |delta| delta.finished));
    stop.is_none_or(|stop| stop + 1 == items.len())
}

/// The SSE bytes of `events`.
fn sse(events: &[(String, String)]) -> Vec<u8> {
    events
        .iter()
        .map(|(event, data)| format!("event: {event}\ndata: {data}\n\n"))
        .collect::<String>()
        .into_bytes()
}

/// `text`'s first `chars` characters.
fn prefix(text: &str, chars: usize) -> String {
    text.chars().take(chars).collect()
}

fn answer(is_end: i64, content: &str) -> (String, String) {
    let data = json!({"type": 2, "statusInfo": {"code": 0, "message": ""},
        "data": {"messageResult": {"chatID": "243612345678901234", "msgID": "243612345678905678",
        "isEnd": is_end, "content": content}}});
    (MESSAGE_RESULT_EVENT.to_owned(), data.to_string())
}

proptest! {

    #[test]
    fn garbage_bytes_decode_to_errors_or_deltas_never_a_panic(
        bytes in proptest::collection::vec(any::<u8>(), 0..2048),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
    ) {
        let items = decode(bytes, &cuts);
        prop_assert!(ends_cleanly(&items));
        // Garbage has no final event: the stream ends in an error unless an event finished it.
        prop_assert!(items.last().is_none_or(|last| last.as_ref().map_or(true, |delta| delta.finished)));
    }

    #[test]
    fn garbled_events_never_panic_and_nothing_follows_the_end(
        events in proptest::collection::vec(any_event(), 0..12),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
    ) {
        let mut decoder = AnswerDecoder::new();
        let mut finished = false;
        for (event, data) in &events {
            if let Ok(Some(delta)) = decoder.feed(event, data) {
                prop_assert!(!finished, "a delta after the final one");
                finished = delta.finished;
            }
            prop_assert_eq!(decoder.is_finished(), finished);
        }
        let items = decode(sse(&events), &cuts);
        prop_assert!(ends_cleanly(&items));
        prop_assert!(!items.is_empty(), "a stream always ends with a final delta or an error");
    }

    #[test]
    fn a_growing_answer_decodes_to_exactly_its_final_text(
        text in "[^\\p{C}\u{FFFD}]{1,40}",
        steps in proptest::collection::vec(any::<proptest::sample::Index>(), 0..6),
        cut_marks in proptest::collection::vec(any::<bool>(), 6),
        cuts in proptest::collection::vec(any::<proptest::sample::Index>(), 0..8),
        end_marker in any::<bool>(),
    ) {
        let length = text.chars().count();
        let mut lengths: Vec<usize> = steps.iter().map(|step| step.index(length + 1)).collect();
        lengths.sort_unstable();
        let mut events: Vec<(String, String)> = lengths
            .iter()
            .zip(&cut_marks)
            .map(|(chars, cut)| {
                // The upstream sends U+FFFD where it cut a character; a later event completes it.
                let mut content = prefix(&text, *chars);
                if *cut {
                    content.push(CUT_MARK);
                    content.push_str("tail that the next event replaces");
                }
                answer(1, &content)
            })
            .collect();
        if end_marker {
            events.push(answer(1, &text));
            events.push((MESSAGE_RESULT_EVENT.to_owned(), json!({"type": 8, "statusInfo": {"code": 0}}).to_string()));
        } else {
            events.push(answer(0, &text));
        }
        let items = decode(sse(&events), &cuts);
        prop_assert!(items.iter().all(Result::is_ok), "{items:?}");
        let joined: String = items.iter().flatten().map(|delta| delta.text.as_str()).collect();
        prop_assert_eq!(joined, text);
        prop_assert_eq!(items.iter().flatten().filter(|delta| delta.finished).count(), 1);
        prop_assert!(items.last().is_some_and(|last| last.as_ref().is_ok_and(|delta| delta.finished)));
    }
}
