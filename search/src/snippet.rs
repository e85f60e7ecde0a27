//! Snippets: a short window of a message's text around its first match, HTML-escaped,
//! matches in `<b>`…`</b>`.

use tantivy::tokenizer::TextAnalyzer;

use crate::analyzer::tokens;

/// The longest snippet, in characters of the original text (before escaping and tags).
pub const SNIPPET_CHARS: usize = 150;
/// Characters of context kept before the first match when the text must be cut.
const LEAD_CHARS: usize = 30;

/// The snippet of `text` highlighting tokens equal to one of `exact` or starting with one
/// of `prefixes` (both analyzed like the text).
pub(crate) fn snippet(
    analyzer: &mut TextAnalyzer,
    text: &str,
    exact: &[String],
    prefixes: &[String],
) -> String {
    // Byte ranges of matching tokens, merged where they overlap (CJK bigrams do).
    let mut ranges: Vec<(usize, usize)> = Vec::new();
    for token in tokens(analyzer, text) {
        let hit = exact.contains(&token.text) || prefixes.iter().any(|p| token.text.starts_with(p.as_str()));
        if !hit {
            continue;
        }
        match ranges.last_mut() {
            Some(last) if token.offset_from <= last.1 => last.1 = last.1.max(token.offset_to),
            _ => ranges.push((token.offset_from, token.offset_to)),
        }
    }
    // The window, in bytes, on char boundaries.
    let boundaries: Vec<usize> = text.char_indices().map(|(i, _)| i).chain([text.len()]).collect();
    let chars = boundaries.len() - 1;
    let (mut start, mut end) = (0, chars);
    if chars > SNIPPET_CHARS {
        let first = ranges.first().map_or(0, |r| boundaries.partition_point(|b| *b < r.0));
        start = first.saturating_sub(LEAD_CHARS).min(chars - SNIPPET_CHARS);
        end = start + SNIPPET_CHARS;
    }
    let (from, to) = (boundaries[start], boundaries[end]);
    let mut out = String::with_capacity(to - from + 32);
    if start > 0 {
        out.push('…');
    }
    let mut at = from;
    for (r_from, r_to) in ranges {
        let (r_from, r_to) = (r_from.max(from), r_to.min(to));
        if r_from >= r_to {
            continue;
        }
        escape_into(&mut out, &text[at..r_from]);
        out.push_str("<b>");
        escape_into(&mut out, &text[r_from..r_to]);
        out.push_str("</b>");
        at = r_to;
    }
    escape_into(&mut out, &text[at..to]);
    if end < chars {
        out.push('…');
    }
    out
}

fn escape_into(out: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyzer::analyzer;

    fn snip(text: &str, exact: &[&str], prefixes: &[&str]) -> String {
        let exact: Vec<String> = exact.iter().map(|s| (*s).to_owned()).collect();
        let prefixes: Vec<String> = prefixes.iter().map(|s| (*s).to_owned()).collect();
        snippet(&mut analyzer(), text, &exact, &prefixes)
    }

    #[test]
    fn escapes_then_highlights() {
        assert_eq!(
            snip("<script>Café</script> & co", &["cafe"], &[]),
            "&lt;script&gt;<b>Café</b>&lt;/script&gt; &amp; co"
        );
        assert_eq!(snip("Hello helium", &[], &["hel"]), "<b>Hello</b> <b>helium</b>");
        assert_eq!(snip("東京タワーに行きました", &["東京", "京タ"], &[]), "<b>東京タ</b>ワーに行きました");
    }

    #[test]
    fn long_texts_are_cut_around_the_first_match() {
        let text = format!("{} needle {}", "hay ".repeat(100), "straw ".repeat(100));
        let snippet = snip(&text, &["needle"], &[]);
        assert!(snippet.starts_with('…') && snippet.ends_with('…'));
        assert!(snippet.contains("<b>needle</b>"));
        assert!(snippet.chars().count() <= SNIPPET_CHARS + 2 + "<b></b>".len());
    }
}
