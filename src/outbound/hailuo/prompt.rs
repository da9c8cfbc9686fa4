//! Turns the client's messages into the single `msgContent` text the upstream chat takes
//! (protocol §5.1).

use std::sync::LazyLock;

use regex::Regex;

use crate::domain::chat::{ChatMessage, ChatPrompt};

/// The system line that steers the model to the attachment of the newest message.
pub const ATTACHMENT_FOCUS: &str = "关注用户最新发送文件和消息";

/// Markdown images `![alt](target)` on one line; they make the model hallucinate. Lazy
/// (`?`) so that the text between two images on a line survives.
static MARKDOWN_IMAGE: LazyLock<Option<Regex>> = LazyLock::new(|| Regex::new(r"!\[.*?\]\(.*?\)").ok());

/// Builds `msgContent` from a prompt.
///
/// One message, or a continued conversation: every text followed by `\n`, without roles.
/// Several messages on a new conversation: `role:text\n` per text (after a system line
/// [`ATTACHMENT_FOCUS`] inserted before the last message when it carries an attachment),
/// then `assistant:\n`, trimmed, with Markdown images removed.
pub fn build_msg_content(prompt: &ChatPrompt) -> String {
    if prompt.messages.len() < 2 || prompt.conversation.is_some() {
        return prompt
            .messages
            .iter()
            .flat_map(ChatMessage::texts)
            .fold(String::new(), |mut content, text| {
                content.push_str(text);
                content.push('\n');
                content
            });
    }

    let focus = ChatMessage::text("system", ATTACHMENT_FOCUS);
    let mut content = String::new();
    let last_index = prompt.messages.len() - 1;
    for (index, message) in prompt.messages.iter().enumerate() {
        if index == last_index && message.has_attachment() {
            push_role_lines(&mut content, &focus);
        }
        push_role_lines(&mut content, message);
    }
    content.push_str("assistant:\n");
    let content = content.trim();
    match MARKDOWN_IMAGE.as_ref() {
        Some(image) => image.replace_all(content, "").into_owned(),
        None => content.to_owned(),
    }
}

/// Appends `role:text\n` for each text part of `message`.
fn push_role_lines(content: &mut String, message: &ChatMessage) {
    for text in message.texts() {
        content.push_str(&message.role);
        content.push(':');
        content.push_str(text);
        content.push('\n');
    }
}

#[cfg(test)]
#[path = "prompt_props.rs"]
mod props;

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::domain::chat::{ContentPart, ConversationId};

    fn prompt(messages: Vec<ChatMessage>) -> ChatPrompt {
        ChatPrompt::new(messages)
    }

    #[test]
    fn one_message_is_sent_as_its_text_without_a_role() {
        let content = build_msg_content(&prompt(vec![ChatMessage::text("user", "  你好 ![x](y) ")]));
        assert_eq!(content, "  你好 ![x](y) \n");
    }

    #[test]
    fn several_messages_get_role_prefixes_and_a_trailing_assistant_line() {
        let content = build_msg_content(&prompt(vec![
            ChatMessage::text("system", "Be brief."),
            ChatMessage::text("user", "Hi"),
            ChatMessage::text("assistant", "Hello!"),
            ChatMessage::text("user", "2+2?"),
        ]));
        assert_eq!(
            content,
            "system:Be brief.\nuser:Hi\nassistant:Hello!\nuser:2+2?\nassistant:"
        );
    }

    #[test]
    fn a_continued_conversation_sends_the_texts_without_roles() {
        let mut continued = prompt(vec![
            ChatMessage::text("user", "first"),
            ChatMessage::text("user", "second"),
        ]);
        continued.conversation = ConversationId::parse("243612345678901234");
        assert_eq!(build_msg_content(&continued), "first\nsecond\n");
    }

    #[test]
    fn an_attachment_in_the_last_message_inserts_the_focus_line_before_it() {
        let content = build_msg_content(&prompt(vec![
            ChatMessage::text("user", "Hi"),
            ChatMessage {
                role: "user".into(),
                parts: vec![
                    ContentPart::Image {
                        url: "https://example.com/a.png".into(),
                    },
                    ContentPart::Text("What is this?".into()),
                ],
            },
        ]));
        assert_eq!(
            content,
            format!("user:Hi\nsystem:{ATTACHMENT_FOCUS}\nuser:What is this?\nassistant:")
        );
    }

    #[test]
    fn an_attachment_in_an_earlier_message_inserts_nothing() {
        let content = build_msg_content(&prompt(vec![
            ChatMessage {
                role: "user".into(),
                parts: vec![ContentPart::File {
                    url: "https://example.com/a.pdf".into(),
                    name: None,
                }],
            },
            ChatMessage::text("user", "Hi"),
        ]));
        assert_eq!(content, "user:Hi\nassistant:");
    }

    #[test]
    fn markdown_images_are_removed_from_several_messages() {
        let content = build_msg_content(&prompt(vec![
            ChatMessage::text("assistant", "Look: ![a cat](https://x/cat.png) and ![dog](d.png)!"),
            ChatMessage::text("user", "nice"),
        ]));
        assert_eq!(content, "assistant:Look:  and !\nuser:nice\nassistant:");
    }

    #[test]
    fn every_text_part_of_a_content_array_counts() {
        let parts = vec![
            ContentPart::Text("one".into()),
            ContentPart::Image {
                url: "data:image/png;base64,AAAA".into(),
            },
            ContentPart::Text("two".into()),
        ];
        let several = build_msg_content(&prompt(vec![
            ChatMessage {
                role: "user".into(),
                parts: parts.clone(),
            },
            ChatMessage::text("user", "three"),
        ]));
        assert_eq!(several, "user:one\nuser:two\nuser:three\nassistant:");
        let single = build_msg_content(&prompt(vec![ChatMessage {
            role: "user".into(),
            parts,
        }]));
        assert_eq!(single, "one\ntwo\n");
    }
}
