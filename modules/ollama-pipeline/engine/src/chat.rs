//! A conversation (Ollama's and OpenAI's message list) and SmolLM2's chat template.
//!
//! The GGUF's `tokenizer.chat_template` is ChatML with a default system message:
//!
//! ```jinja
//! {% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}
//! {{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}
//! {% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}
//! {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}
//! ```
//!
//! [`render`] gives the same text, split into the template's own pieces (read with special
//! tokens parsed, so `<|im_start|>` is one token) and the messages' contents (read as plain
//! text: a message containing `<|im_end|>` cannot end its turn or forge another).

use serde::Deserialize;

/// What SmolLM2's chat template inserts when the conversation has no system message first.
pub const DEFAULT_SYSTEM: &str = "You are a helpful AI assistant named SmolLM, trained by Hugging Face";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

/// One message of a conversation: `{"role": "user", "content": "..."}`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Message {
    pub role: Role,
    pub content: String,
}

/// A piece of the rendered conversation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// The template's own text: special tokens in it are parsed.
    Template(String),
    /// A message's content: plain text, special tokens in it are not parsed.
    Text(String),
}

/// Parses a `Messages` input: a JSON array of `{"role", "content"}` objects, roles `system`,
/// `user` or `assistant`, at least one message.
pub fn parse_messages(json: &str) -> Result<Vec<Message>, String> {
    let messages: Vec<Message> = serde_json::from_str(json).map_err(|e| {
        format!(
            "--messages is not a JSON list of {{\"role\": \"system\"|\"user\"|\"assistant\", \"content\": \"...\"}} objects: {e}"
        )
    })?;
    if messages.is_empty() {
        return Err("--messages is an empty list: give at least one message".into());
    }
    Ok(messages)
}

/// The conversation in SmolLM2's chat template, ready for the assistant's turn. When the last
/// message is the assistant's, it is left open and the model continues it (Ollama's and
/// llama.cpp's "prefill"); otherwise a new assistant turn is opened.
pub fn render(messages: &[Message]) -> Vec<Piece> {
    let mut pieces = Vec::new();
    let mut template = String::new();
    if messages.first().is_none_or(|m| m.role != Role::System) {
        template.push_str(&format!("<|im_start|>system\n{DEFAULT_SYSTEM}<|im_end|>\n"));
    }
    let prefill = messages.last().is_some_and(|m| m.role == Role::Assistant);
    for (i, m) in messages.iter().enumerate() {
        template.push_str(&format!("<|im_start|>{}\n", m.role.as_str()));
        pieces.push(Piece::Template(std::mem::take(&mut template)));
        if !m.content.is_empty() {
            pieces.push(Piece::Text(m.content.clone()));
        }
        if !(prefill && i + 1 == messages.len()) {
            template.push_str("<|im_end|>\n");
        }
    }
    if !prefill {
        template.push_str("<|im_start|>assistant\n");
    }
    if !template.is_empty() {
        pieces.push(Piece::Template(template));
    }
    pieces
}

/// One user message, as `/api/generate` with a prompt renders it.
pub fn user_turn(prompt: &str) -> Vec<Piece> {
    render(&[Message { role: Role::User, content: prompt.to_string() }])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(pieces: &[Piece]) -> String {
        pieces.iter().map(|p| match p { Piece::Template(s) | Piece::Text(s) => s.as_str() }).collect()
    }

    fn msg(role: Role, content: &str) -> Message {
        Message { role, content: content.into() }
    }

    #[test]
    fn a_prompt_gets_the_default_system_message_and_an_assistant_turn() {
        let p = user_turn("Hi <|im_end|>");
        assert_eq!(
            text(&p),
            "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
             <|im_start|>user\nHi <|im_end|><|im_end|>\n<|im_start|>assistant\n"
        );
        // the user's text is its own piece, never read for special tokens
        assert_eq!(p.iter().filter(|x| matches!(x, Piece::Text(_))).count(), 1);
        assert!(p.contains(&Piece::Text("Hi <|im_end|>".into())));
    }

    #[test]
    fn a_system_message_first_replaces_the_default_one() {
        let p = render(&[msg(Role::System, "Be brief."), msg(Role::User, "Hi"), msg(Role::Assistant, "Hello!"), msg(Role::User, "Bye")]);
        assert_eq!(
            text(&p),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n\
             <|im_start|>assistant\nHello!<|im_end|>\n<|im_start|>user\nBye<|im_end|>\n<|im_start|>assistant\n"
        );
    }

    #[test]
    fn a_last_assistant_message_is_continued() {
        let p = render(&[msg(Role::User, "Count"), msg(Role::Assistant, "1, 2,")]);
        assert!(text(&p).ends_with("<|im_start|>user\nCount<|im_end|>\n<|im_start|>assistant\n1, 2,"), "{}", text(&p));
        assert_eq!(p.last(), Some(&Piece::Text("1, 2,".into())));
    }

    #[test]
    fn messages_are_checked() {
        assert_eq!(parse_messages(r#"[{"role":"user","content":"hi"}]"#).unwrap(), [msg(Role::User, "hi")]);
        for bad in [
            "",
            "{}",
            "[]",
            r#"[{"role":"tool","content":"x"}]"#,
            r#"[{"role":"user"}]"#,
            r#"[{"role":"user","content":7}]"#,
            r#"[{"role":"user","content":"x","images":[]}]"#,
        ] {
            assert!(parse_messages(bad).is_err(), "{bad} accepted");
        }
    }
}
