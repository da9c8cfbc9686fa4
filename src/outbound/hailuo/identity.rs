//! Who an account is to the upstream (protocol §12.4): the `minimax-agent` dialect names the
//! account's user id in its query, taken from a `<userID>+<JWT>` token or from the JWT's
//! payload (`user.id`, read without verifying anything), and sends the JWT alone.

use crate::domain::token_expiry;

/// An account's user id and the token as its header carries it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountIdentity<'t> {
    /// The account's user id; empty when the token names none.
    pub user_id: String,
    /// The token sent (header and query).
    pub token: &'t str,
}

impl<'t> AccountIdentity<'t> {
    /// `token` as it is, without a user id (the dialects that do not send one).
    pub fn plain(token: &'t str) -> Self {
        Self {
            user_id: String::new(),
            token,
        }
    }

    /// The identity `token` gives: `<userID>+<JWT>` names both (a JWT holds no `+`); a bare
    /// JWT names its payload's `user.id`.
    pub fn of(token: &'t str) -> Self {
        if let Some((user_id, jwt)) = token.split_once('+')
            && !user_id.is_empty()
            && !jwt.is_empty()
        {
            return Self {
                user_id: user_id.to_owned(),
                token: jwt,
            };
        }
        Self {
            user_id: token_expiry::user_id(token).unwrap_or_default(),
            token,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn jwt(claims: &str) -> String {
        format!("e30.{}.c2ln", URL_SAFE_NO_PAD.encode(claims))
    }

    #[test]
    fn a_jwt_names_its_payloads_user_and_travels_whole() {
        let token = jwt(r#"{"user":{"id":"3123"}}"#);
        let identity = AccountIdentity::of(&token);
        assert_eq!(identity.user_id, "3123");
        assert_eq!(identity.token, token);
    }

    #[test]
    fn a_user_id_before_a_plus_wins_and_only_the_jwt_travels() {
        let token = format!("777+{}", jwt(r#"{"user":{"id":"3123"}}"#));
        let identity = AccountIdentity::of(&token);
        assert_eq!(identity.user_id, "777");
        assert!(identity.token.starts_with("e30."), "{}", identity.token);
        assert_eq!(AccountIdentity::of("opaque").user_id, "");
        assert_eq!(AccountIdentity::of("+x").token, "+x");
    }
}
