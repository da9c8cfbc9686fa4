//! Reading a chat request (protocol §5): the multipart text fields, exactly the known ones,
//! none empty, with the values the web app sends.

use poem::web::Multipart;
use poem::{FromRequest, Request};
use serde_json::Value;

use crate::verify::{self, Rejection};

/// The fields of a chat request, as sent.
pub(super) struct ChatFields {
    /// `characterID`: always `"1"`.
    pub character_id: String,
    /// `msgContent`: the prompt.
    pub msg_content: String,
    /// `chatID`: `"0"` for a new conversation, else the one continued.
    pub chat_id: String,
    /// `form`: the attached files, when there are any.
    pub form: Option<String>,
}

/// Reads and checks the multipart fields (§5): exactly the known text fields, none empty.
pub(super) async fn read_chat_fields(req: &Request, body: &mut poem::RequestBody) -> Result<ChatFields, Rejection> {
    let mut multipart = Multipart::from_request(req, body)
        .await
        .map_err(|err| Rejection::bad_parameter(format!("chat body is not multipart/form-data: {err}")))?;
    let (mut character_id, mut msg_content, mut chat_id, mut search_mode, mut form) = (None, None, None, None, None);
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(err) => {
                return Err(Rejection::bad_parameter(format!("broken multipart body: {err}")));
            }
        };
        let name = field.name().unwrap_or("").to_owned();
        if let Some(file_name) = field.file_name() {
            return Err(Rejection::bad_parameter(format!(
                "chat field {name} is a file part ({file_name}); none expected"
            )));
        }
        let value = field
            .text()
            .await
            .map_err(|err| Rejection::bad_parameter(format!("chat field {name} unreadable: {err}")))?;
        if value.is_empty() {
            return Err(Rejection::bad_parameter(format!(
                "chat field {name} is empty; empty fields are not sent"
            )));
        }
        let slot = match name.as_str() {
            "characterID" => &mut character_id,
            "msgContent" => &mut msg_content,
            "chatID" => &mut chat_id,
            "searchMode" => &mut search_mode,
            "form" => &mut form,
            other => {
                return Err(Rejection::bad_parameter(format!("unknown chat field {other:?}")));
            }
        };
        if slot.replace(value).is_some() {
            return Err(Rejection::bad_parameter(format!("chat field {name} sent twice")));
        }
    }
    let required = |value: Option<String>, name: &str| {
        value.ok_or_else(|| Rejection::bad_parameter(format!("chat field {name} missing")))
    };
    let fields = ChatFields {
        character_id: required(character_id, "characterID")?,
        msg_content: required(msg_content, "msgContent")?,
        chat_id: required(chat_id, "chatID")?,
        form,
    };
    let search_mode = required(search_mode, "searchMode")?;
    if fields.character_id != "1" {
        return Err(Rejection::bad_parameter(format!(
            "characterID {:?}, expected \"1\"",
            fields.character_id
        )));
    }
    if search_mode != "0" {
        return Err(Rejection::bad_parameter(format!(
            "searchMode {search_mode:?}, expected \"0\""
        )));
    }
    if fields.chat_id != "0" && !verify::is_conversation_id(&fields.chat_id) {
        return Err(Rejection::bad_parameter(format!(
            "chatID {:?} is neither \"0\" nor an 18+ digit id",
            fields.chat_id
        )));
    }
    if let Some(form) = &fields.form
        && !serde_json::from_str::<Value>(form).is_ok_and(|value| value.is_array())
    {
        return Err(Rejection::bad_parameter(format!("form {form:?} is not a JSON array")));
    }
    Ok(fields)
}
