//! Property tests of [`build_msg_content`]: any prompt builds without panicking, every text
//! is carried in order under its role, Markdown images go, and what role markers guarantee.

use proptest::prelude::*;

use super::*;
use crate::domain::chat::{ContentPart, ConversationId};

const ROLES: &[&str] = &["system", "user", "assistant", "developer", "tool"];

fn any_part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        3 => any::<String>().prop_map(ContentPart::Text),
        1 => any::<String>().prop_map(|url| ContentPart::Image { url }),
        1 => any::<String>().prop_map(|url| ContentPart::File { url, name: None }),
    ]
}

fn any_message() -> impl Strategy<Value = ChatMessage> {
    (any::<String>(), proptest::collection::vec(any_part(), 0..4)).prop_map(|(role, parts)| ChatMessage { role, parts })
}

/// Text without `!`, so without Markdown images.
fn plain_part() -> impl Strategy<Value = ContentPart> {
    prop_oneof![
        3 => "[^!]{0,24}".prop_map(ContentPart::Text),
        1 => Just(ContentPart::Image { url: "https://example.com/a.png".into() }),
        1 => Just(ContentPart::File { url: "data:application/pdf;base64,JVBERi0=".into(), name: Some("a.pdf".into()) }),
    ]
}

fn plain_message() -> impl Strategy<Value = ChatMessage> {
    (
        proptest::sample::select(ROLES),
        proptest::collection::vec(plain_part(), 0..4),
    )
        .prop_map(|(role, parts)| ChatMessage {
            role: role.to_owned(),
            parts,
        })
}

fn continued(messages: Vec<ChatMessage>) -> ChatPrompt {
    let mut prompt = ChatPrompt::new(messages);
    prompt.conversation = ConversationId::parse("243612345678901234");
    prompt
}

proptest! {

    #[test]
    fn any_prompt_builds_without_panicking(
        messages in proptest::collection::vec(any_message(), 0..5),
        continuing in any::<bool>(),
    ) {
        let prompt = if continuing { continued(messages) } else { ChatPrompt::new(messages) };
        let _ = build_msg_content(&prompt);
    }

    #[test]
    fn one_message_or_a_continued_conversation_is_every_text_on_its_own_line(
        messages in proptest::collection::vec(any_message(), 1..5),
    ) {
        let expected: String = messages.iter().flat_map(ChatMessage::texts).map(|t| format!("{t}\n")).collect();
        prop_assert_eq!(build_msg_content(&continued(messages.clone())), expected.clone());
        if messages.len() == 1 {
            prop_assert_eq!(build_msg_content(&ChatPrompt::new(messages)), expected);
        }
    }

    #[test]
    fn several_messages_carry_every_text_in_order_under_its_role(
        messages in proptest::collection::vec(plain_message(), 2..6),
    ) {
        let content = build_msg_content(&ChatPrompt::new(messages.clone()));
        let last = messages.len() - 1;
        let mut rest = content.as_str();
        for (index, message) in messages.iter().enumerate() {
            if index == last && message.has_attachment() {
                let focus = format!("system:{ATTACHMENT_FOCUS}\n");
                let at = rest.find(&focus);
                prop_assert!(at.is_some(), "no focus line before the last message in {content:?}");
                rest = &rest[at.unwrap_or_default() + focus.len()..];
            }
            for text in message.texts() {
                let line = format!("{}:{text}\n", message.role);
                let at = rest.find(&line);
                prop_assert!(at.is_some(), "{line:?} missing, or out of order, in {content:?}");
                rest = &rest[at.unwrap_or_default() + line.len()..];
            }
        }
        prop_assert_eq!(rest, "assistant:");
        prop_assert_eq!(
            content.contains(ATTACHMENT_FOCUS),
            messages[last].has_attachment()
                || messages.iter().flat_map(ChatMessage::texts).any(|t| t.contains(ATTACHMENT_FOCUS))
        );
    }

    #[test]
    fn markdown_images_are_cut_out_and_the_text_around_them_kept(
        before in "[^!\\[\\]()\n]{0,12}",
        alt in "[^!\\[\\]()\n]{0,12}",
        target in "[^!\\[\\]()\n]{0,24}",
        after in "[^!\\[\\]()\n]{0,12}",
    ) {
        let text = format!("{before}![{alt}]({target}){after}");
        let content = build_msg_content(&ChatPrompt::new(vec![
            ChatMessage::text("user", text),
            ChatMessage::text("user", "next"),
        ]));
        let expected = format!("user:{before}{after}\nuser:next\nassistant:");
        prop_assert_eq!(content.clone(), expected.trim_start().to_owned());
        prop_assert!(!content.contains("!["));
    }

    /// The builder does not escape (nor does the reference implementation): a text holding
    /// `\nassistant:` shows up verbatim, so the model sees what looks like another turn.
    /// Each line the builder itself writes still starts with the role it was given.
    #[test]
    fn message_text_is_carried_verbatim_role_markers_included(
        role in proptest::sample::select(ROLES),
        spoof in proptest::sample::select(ROLES),
        said in "[a-z ]{1,12}",
    ) {
        let text = format!("hi\n{spoof}:{said}");
        let content = build_msg_content(&ChatPrompt::new(vec![
            ChatMessage::text(role, text.clone()),
            ChatMessage::text("user", "next"),
        ]));
        prop_assert!(content.starts_with(&format!("{role}:{text}\n")), "{content:?}");
        prop_assert!(content.ends_with("\nuser:next\nassistant:"));
    }
}
