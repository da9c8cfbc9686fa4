//! Property tests of [`AccountToken::parse_list`], the parser of `Authorization: Bearer
//! T1,T2`: whatever the header holds, the tokens are non-empty, trimmed, comma-free and
//! distinct, in the order first given.

use proptest::prelude::*;

use super::*;

/// What a correct parse gives: the trimmed, non-empty pieces, first occurrences only.
fn expected(bearer: &str) -> Vec<String> {
    let mut tokens: Vec<String> = Vec::new();
    for piece in bearer.split(',') {
        let piece = piece.trim();
        if !piece.is_empty() && !tokens.iter().any(|t| t == piece) {
            tokens.push(piece.to_owned());
        }
    }
    tokens
}

fn exposed(tokens: &[AccountToken]) -> Vec<&str> {
    tokens.iter().map(AccountToken::expose).collect()
}

proptest! {

    #[test]
    fn any_header_gives_clean_distinct_tokens(bearer in any::<String>()) {
        let tokens = AccountToken::parse_list(&bearer);
        for (index, token) in tokens.iter().enumerate() {
            let text = token.expose();
            prop_assert!(!text.is_empty());
            prop_assert_eq!(text, text.trim());
            prop_assert!(!text.contains(','));
            prop_assert!(tokens[..index].iter().all(|earlier| earlier != token), "duplicate {text:?}");
        }
        prop_assert_eq!(exposed(&tokens), expected(&bearer));
    }

    #[test]
    fn token_lists_keep_their_order_without_padding_or_repeats(
        tokens in proptest::collection::vec("[A-Za-z0-9._-]{1,12}", 0..8),
        padding in proptest::collection::vec("[ \t]{0,3}", 16),
        repeats in proptest::collection::vec(any::<proptest::sample::Index>(), 0..4),
        empties in 0usize..3,
    ) {
        let mut pieces: Vec<String> = tokens.clone();
        for repeat in &repeats {
            if !tokens.is_empty() {
                pieces.push(repeat.get(&tokens).clone());
            }
        }
        pieces.extend(std::iter::repeat_n(String::new(), empties));
        let bearer = pieces
            .iter()
            .enumerate()
            .map(|(i, piece)| format!("{}{piece}{}", padding[i % 16], padding[(i + 7) % 16]))
            .collect::<Vec<_>>()
            .join(",");
        let mut distinct: Vec<&str> = Vec::new();
        for token in &tokens {
            if !distinct.contains(&token.as_str()) {
                distinct.push(token);
            }
        }
        let parsed = AccountToken::parse_list(&bearer);
        prop_assert_eq!(exposed(&parsed), distinct);
    }

    #[test]
    fn a_client_list_is_refused_exactly_when_it_names_more_than_the_cap(
        bearer in "[ab, ]{0,40}",
        max in 0usize..12,
    ) {
        let named = bearer.split(',').filter(|piece| !piece.trim().is_empty()).count();
        match AccountToken::parse_client_list(&bearer, max) {
            Ok(tokens) => {
                prop_assert!(named <= max, "{named} tokens passed a cap of {max}");
                prop_assert_eq!(exposed(&tokens), expected(&bearer));
            }
            Err(error) => {
                prop_assert!(named > max, "{named} tokens refused under a cap of {max}");
                prop_assert_eq!(error.max, max);
            }
        }
    }

    #[test]
    fn a_fingerprint_never_shows_the_token(token in "[A-Za-z0-9._-]{13,64}") {
        let token = AccountToken::new(token);
        let shown = format!("{token:?} {token}");
        prop_assert!(!shown.contains(token.expose()), "{}", shown);
    }

    #[test]
    fn conversation_ids_are_only_long_digit_runs(id in "\\PC{0,30}|[0-9]{0,30}| [0-9]{18,24} ") {
        match ConversationId::parse(&id) {
            Some(parsed) => {
                prop_assert!(parsed.as_str().len() >= 18);
                prop_assert!(parsed.as_str().bytes().all(|b| b.is_ascii_digit()));
                prop_assert_eq!(parsed.as_str(), id.trim());
            }
            None => {
                let trimmed = id.trim();
                prop_assert!(trimmed.len() < 18 || !trimmed.bytes().all(|b| b.is_ascii_digit()));
            }
        }
    }
}
