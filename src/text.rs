//! Making untrusted text (config values, command output) safe to show to an operator.

/// `text` with control characters (newlines included) replaced by spaces, runs of spaces
/// folded, and cut to at most `max` characters, ending in `…` when cut. Never splits a
/// character.
pub(crate) fn bounded(text: &str, max: usize) -> String {
    let mut folded = String::with_capacity(text.len().min(max.saturating_mul(4)));
    for c in text.chars().map(|c| if c.is_control() { ' ' } else { c }) {
        if !(c == ' ' && folded.ends_with(' ')) {
            folded.push(c);
        }
    }
    let folded = folded.trim();
    match folded.char_indices().nth(max) {
        None => folded.to_string(),
        // Cut: keep max - 1 characters and the ellipsis.
        Some(_) if max == 0 => String::new(),
        Some(_) => {
            let end = folded.char_indices().nth(max - 1).map_or(0, |(i, _)| i);
            format!("{}…", folded[..end].trim_end())
        }
    }
}

/// `text` between single quotes as the operator typed it, with anything invisible or
/// ambiguous escaped (`'edge\n'`, `' edge'`, `'it\'s'`), cut to at most `max` characters
/// inside the quotes.
pub(crate) fn quoted(text: &str, max: usize) -> String {
    let mut escaped = String::new();
    let mut shown = 0;
    for c in text.chars() {
        let piece: String = c.escape_debug().collect();
        let piece = if c == '"' { "\"".to_string() } else { piece };
        if shown + piece.chars().count() > max.saturating_sub(1) && shown > 0 {
            escaped.push('…');
            break;
        }
        shown += piece.chars().count();
        escaped.push_str(&piece);
    }
    format!("'{escaped}'")
}

#[cfg(test)]
mod tests {
    use super::{bounded, quoted};

    #[test]
    fn quoting_shows_what_was_typed() {
        assert_eq!(quoted("edge", 48), "'edge'");
        assert_eq!(quoted(" edge", 48), "' edge'");
        assert_eq!(quoted("edge\n", 48), "'edge\\n'");
        assert_eq!(quoted("it's", 48), "'it\\'s'");
        assert_eq!(quoted("say \"x\"", 48), "'say \"x\"'");
        assert_eq!(quoted("", 48), "''");
        let long = quoted(&"x".repeat(100_000), 48);
        assert_eq!(long.chars().count(), 48 + 2);
        assert!(long.ends_with("…'"));
        assert!(!quoted("a\u{7}b\tc", 48).chars().any(char::is_control));
    }

    #[test]
    fn short_text_is_kept() {
        assert_eq!(bounded("Ready at 'edge'", 200), "Ready at 'edge'");
    }

    #[test]
    fn control_characters_become_single_spaces() {
        assert_eq!(bounded("a\nb\r\n\tc\u{7}", 200), "a b c");
    }

    #[test]
    fn leading_control_characters_leave_no_space() {
        assert_eq!(bounded("\u{0}edge\n", 48), "edge");
    }

    #[test]
    fn zero_means_nothing() {
        assert_eq!(bounded("edge", 0), "");
        assert_eq!(bounded("", 0), "");
    }

    #[test]
    fn exactly_max_is_not_cut() {
        assert_eq!(bounded("abcd", 4), "abcd");
        assert_eq!(bounded("abcde", 4), "abc…");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let cut = bounded(&"é".repeat(100_000), 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
    }
}
