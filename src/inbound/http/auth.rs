//! `Authorization: Bearer T1,T2,...`: the Hailuo account tokens a request may use.

use poem_openapi::SecurityScheme;
use poem_openapi::auth::Bearer;

use crate::domain::chat::AccountToken;

/// Your Hailuo account token(s): the `_token` value from the web app's LocalStorage.
/// Several tokens separated by commas let requests run side by side (one answer per
/// account at a time), e.g. `Authorization: Bearer TOKEN1,TOKEN2`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer")]
pub struct HailuoTokens(pub Bearer);

impl HailuoTokens {
    /// The tokens given, trimmed, without empties or duplicates.
    pub fn tokens(&self) -> Vec<AccountToken> {
        AccountToken::parse_list(&self.0.token)
    }
}
