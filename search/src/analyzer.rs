//! The `palaver` analyzer: words for alphabetic scripts, overlapping bigrams for CJK,
//! lower-cased and folded to ASCII where a folding exists. Documents and queries go
//! through the same analyzer.

use tantivy::tokenizer::{
    AsciiFoldingFilter, LowerCaser, RemoveLongFilter, TextAnalyzer, Token, TokenStream, Tokenizer,
};

/// The name the analyzer is registered under in the index's tokenizer manager.
pub const ANALYZER_NAME: &str = "palaver";

/// Tokens longer than this many bytes (after folding) are dropped: they are hashes,
/// base64 blobs or keyboard mashing, not words anyone searches for.
pub const MAX_TOKEN_BYTES: usize = 64;

/// The full analyzer: [`ScriptTokenizer`], then lower-casing, then ASCII folding
/// (`Café` → `cafe`, `Straße` → `strasse`), then dropping over-long tokens.
pub fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(ScriptTokenizer::default())
        .filter(LowerCaser)
        .filter(AsciiFoldingFilter)
        .filter(RemoveLongFilter::limit(MAX_TOKEN_BYTES + 1))
        .build()
}

/// Runs the analyzer over `text` and returns the tokens (text, byte offsets, position).
pub(crate) fn tokens(analyzer: &mut TextAnalyzer, text: &str) -> Vec<Token> {
    let mut out = Vec::new();
    let mut stream = analyzer.token_stream(text);
    while stream.advance() {
        out.push(stream.token().clone());
    }
    out
}

/// Splits text into words (runs of letters and digits in scripts that separate words,
/// combining marks kept out of the token) and CJK runs (Han, Hiragana, Katakana, Hangul)
/// into overlapping character bigrams, a lone CJK character being a unigram.
#[derive(Clone, Default)]
pub struct ScriptTokenizer {
    token: Token,
}

/// The token stream of [`ScriptTokenizer`] (tokens are computed up front: chat messages
/// are short).
pub struct ScriptTokenStream<'a> {
    tokens: std::vec::IntoIter<Token>,
    token: &'a mut Token,
}

impl Tokenizer for ScriptTokenizer {
    type TokenStream<'a> = ScriptTokenStream<'a>;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> ScriptTokenStream<'a> {
        self.token.reset();
        ScriptTokenStream { tokens: split(text).into_iter(), token: &mut self.token }
    }
}

impl TokenStream for ScriptTokenStream<'_> {
    fn advance(&mut self) -> bool {
        match self.tokens.next() {
            Some(token) => {
                *self.token = token;
                true
            }
            None => false,
        }
    }

    fn token(&self) -> &Token {
        self.token
    }

    fn token_mut(&mut self) -> &mut Token {
        self.token
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Cjk,
    Word,
    Mark,
    Other,
}

fn class(c: char) -> Class {
    if is_cjk(c) {
        Class::Cjk
    } else if is_combining_mark(c) {
        Class::Mark
    } else if c.is_alphanumeric() {
        Class::Word
    } else {
        Class::Other
    }
}

/// Han (with extensions and compatibility ideographs), Hiragana, Katakana (with the
/// half-width forms and the prolonged sound mark) and Hangul.
fn is_cjk(c: char) -> bool {
    matches!(
        u32::from(c),
        0x1100..=0x11FF
            | 0x3040..=0x30FF
            | 0x3130..=0x318F
            | 0x31F0..=0x31FF
            | 0x3400..=0x4DBF
            | 0x4E00..=0x9FFF
            | 0xA960..=0xA97F
            | 0xAC00..=0xD7FF
            | 0xF900..=0xFAFF
            | 0xFF66..=0xFFDC
            | 0x20000..=0x3134F
    )
}

/// Combining diacritical marks: part of the word they follow, left out of its token, so a
/// decomposed `e\u{301}` folds like `é`.
fn is_combining_mark(c: char) -> bool {
    matches!(
        u32::from(c),
        0x0300..=0x036F | 0x1AB0..=0x1AFF | 0x1DC0..=0x1DFF | 0x20D0..=0x20FF | 0xFE20..=0xFE2F
    )
}

fn split(text: &str) -> Vec<Token> {
    let mut tokens = Vec::new();
    let mut position = 0usize;
    let mut push = |tokens: &mut Vec<Token>, from: usize, to: usize, text: String| {
        tokens.push(Token { offset_from: from, offset_to: to, position, text, position_length: 1 });
        position += 1;
    };
    let chars: Vec<(usize, char)> = text.char_indices().collect();
    let end_of = |i: usize| chars.get(i).map_or(text.len(), |(offset, _)| *offset);
    let mut i = 0;
    while let Some(&(start, c)) = chars.get(i) {
        match class(c) {
            Class::Word => {
                let mut word = String::new();
                let mut j = i;
                while let Some(&(_, c)) = chars.get(j) {
                    match class(c) {
                        Class::Word => word.push(c),
                        Class::Mark => {}
                        Class::Cjk | Class::Other => break,
                    }
                    j += 1;
                }
                push(&mut tokens, start, end_of(j), word);
                i = j;
            }
            Class::Cjk => {
                let mut j = i;
                while chars.get(j).is_some_and(|(_, c)| class(*c) == Class::Cjk) {
                    j += 1;
                }
                if j - i == 1 {
                    push(&mut tokens, start, end_of(j), c.to_string());
                } else {
                    for k in i..j - 1 {
                        let (from, to) = (end_of(k), end_of(k + 2));
                        push(&mut tokens, from, to, text[from..to].to_owned());
                    }
                }
                i = j;
            }
            Class::Mark | Class::Other => i += 1,
        }
    }
    tokens
}

#[cfg(test)]
#[allow(clippy::unwrap_used, reason = "tests")]
mod tests {
    use super::*;

    fn texts(text: &str) -> Vec<String> {
        tokens(&mut analyzer(), text).into_iter().map(|t| t.text).collect()
    }

    #[test]
    fn words_are_lower_cased_and_folded() {
        assert_eq!(texts("Café CRÈME, Straße! naïve"), ["cafe", "creme", "strasse", "naive"]);
        assert_eq!(texts("Cafe\u{301} re\u{301}sume\u{301}"), ["cafe", "resume"]);
        assert_eq!(texts("e-mail 42x"), ["e", "mail", "42x"]);
    }

    #[test]
    fn cjk_runs_become_overlapping_bigrams() {
        assert_eq!(texts("東京タワー"), ["東京", "京タ", "タワ", "ワー"]);
        assert_eq!(texts("東"), ["東"]);
        assert_eq!(texts("iPhone東京に"), ["iphone", "東京", "京に"]);
        assert_eq!(texts("서울에서 만나요"), ["서울", "울에", "에서", "만나", "나요"]);
    }

    #[test]
    fn offsets_point_into_the_original_text() {
        let text = "Hi 東京タ";
        for token in tokens(&mut analyzer(), text) {
            assert!(text.get(token.offset_from..token.offset_to).is_some());
        }
        let positions: Vec<usize> = tokens(&mut analyzer(), text).iter().map(|t| t.position).collect();
        assert_eq!(positions, [0, 1, 2]);
    }
}
