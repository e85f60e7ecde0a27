//! Validated human text: message bodies and room names.

use crate::limits::MAX_ROOM_NAME_CHARS;

/// Why a text is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TextError {
    /// Empty, or only white space.
    #[error("text is empty")]
    Empty,
    /// Longer than the limit, counted in characters.
    #[error("text has {chars} characters, the limit is {limit}")]
    TooLong {
        /// Characters in the text.
        chars: usize,
        /// The limit in force.
        limit: usize,
    },
    /// A control character other than newline or tab.
    #[error("text contains the control character U+{0:04X}")]
    ControlCharacter(u32),
    /// A bidirectional embedding, override or isolate, which can make a name display
    /// as something else (`photo\u{202e}gpj.exe` shows as "photoexe.jpg").
    #[error("names may not contain the bidirectional formatting character U+{0:04X}")]
    BidiControl(u32),
    /// White space at the start or the end.
    #[error("names may not start or end with white space")]
    Untrimmed,
}

/// The explicit bidirectional formatting characters (embeddings, overrides, isolates and
/// their terminators): they reorder what follows them, so a name holding one can show as
/// a different name. The implicit marks (LRM, RLM, ALM) and the joiners (ZWJ, ZWNJ, which
/// emoji sequences and Persian or Indic text need) reorder nothing and stay allowed.
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks a name's characters (a room name, a display name, a file name): no control
/// characters, no bidirectional formatting characters, no white space at either end.
pub fn check_name(name: &str) -> Result<(), TextError> {
    if name.trim().is_empty() {
        return Err(TextError::Empty);
    }
    if name.trim() != name {
        return Err(TextError::Untrimmed);
    }
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(TextError::ControlCharacter(c as u32));
    }
    if let Some(c) = name.chars().find(|c| is_bidi_control(*c)) {
        return Err(TextError::BidiControl(c as u32));
    }
    Ok(())
}

/// A message body: any Unicode (emoji included), kept exactly as sent, at most `limit`
/// characters, no control characters but newline and tab. Clients render it as text,
/// never as markup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageText(String);

impl MessageText {
    /// Validates a message body against a character limit.
    pub fn new(text: String, limit: usize) -> Result<Self, TextError> {
        check_text(&text, limit, &['\n', '\t'])?;
        Ok(Self(text))
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The text, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

/// A reaction: a short Unicode string (an emoji, possibly with modifiers) of at most
/// `MAX_EMOJI_BYTES`, with no white space and no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Emoji(String);

impl Emoji {
    /// Validates a reaction.
    pub fn new(emoji: String) -> Result<Self, TextError> {
        if emoji.is_empty() {
            return Err(TextError::Empty);
        }
        if emoji.len() > crate::limits::MAX_EMOJI_BYTES {
            return Err(TextError::TooLong {
                chars: emoji.chars().count(),
                limit: crate::limits::MAX_EMOJI_BYTES,
            });
        }
        if let Some(c) = emoji.chars().find(|c| c.is_control() || c.is_whitespace()) {
            return Err(TextError::ControlCharacter(c as u32));
        }
        Ok(Self(emoji))
    }

    /// The emoji.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A room's display name: 1..=100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomName(String);

impl RoomName {
    /// Validates a room name.
    pub fn new(name: String) -> Result<Self, TextError> {
        check_text(&name, MAX_ROOM_NAME_CHARS, &[])?;
        check_name(&name)?;
        Ok(Self(name))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name, owned.
    pub fn into_string(self) -> String {
        self.0
    }
}

fn check_text(text: &str, limit: usize, allowed_controls: &[char]) -> Result<(), TextError> {
    if text.trim().is_empty() {
        return Err(TextError::Empty);
    }
    let mut chars = 0usize;
    for c in text.chars() {
        chars += 1;
        if c.is_control() && !allowed_controls.contains(&c) {
            return Err(TextError::ControlCharacter(c as u32));
        }
    }
    if chars > limit {
        return Err(TextError::TooLong { chars, limit });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_counts_characters_not_bytes() {
        let emoji = "🎉".repeat(2_000);
        assert!(MessageText::new(emoji.clone(), 2_000).is_ok());
        assert_eq!(
            MessageText::new(format!("{emoji}!"), 2_000),
            Err(TextError::TooLong { chars: 2_001, limit: 2_000 })
        );
    }

    #[test]
    fn names_refuse_reordering_but_keep_joiners_and_marks() {
        assert_eq!(RoomName::new("photo\u{202e}gpj.exe".into()), Err(TextError::BidiControl(0x202e)));
        assert_eq!(check_name("a\u{2066}b"), Err(TextError::BidiControl(0x2066)));
        assert_eq!(check_name(" padded"), Err(TextError::Untrimmed));
        assert!(check_name("👩\u{200d}💻 team").is_ok(), "ZWJ emoji sequences");
        assert!(check_name("می\u{200c}خواهم").is_ok(), "ZWNJ in Persian");
        assert!(check_name("abc\u{200f}").is_ok(), "RLM");
    }

    #[test]
    fn newline_and_tab_pass_other_controls_do_not() {
        assert!(MessageText::new("a\nb\tc".into(), 10).is_ok());
        assert_eq!(MessageText::new("a\u{7}".into(), 10), Err(TextError::ControlCharacter(7)));
        assert_eq!(MessageText::new("  \n".into(), 10), Err(TextError::Empty));
        assert!(RoomName::new("a\nb".into()).is_err());
    }
}
