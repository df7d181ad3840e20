//! Making untrusted text (config values, command output) safe to show to an operator.

/// `text` with control characters (newlines included) replaced by spaces, runs of spaces
/// folded, and cut to at most `max` characters, ending in `…` when cut. Never splits a
/// character.
pub fn bounded(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 4));
    let mut count = 0;
    let mut last_space = false;
    for c in text.trim().chars() {
        let c = if c.is_control() { ' ' } else { c };
        if c == ' ' && last_space {
            continue;
        }
        last_space = c == ' ';
        if count == max {
            out.pop();
            out.push('…');
            return out;
        }
        out.push(c);
        count += 1;
    }
    out.truncate(out.trim_end().len());
    out
}

#[cfg(test)]
mod tests {
    use super::bounded;

    #[test]
    fn short_text_is_kept() {
        assert_eq!(bounded("Ready at 'edge'", 200), "Ready at 'edge'");
    }

    #[test]
    fn control_characters_become_single_spaces() {
        assert_eq!(bounded("a\nb\r\n\tc\u{7}", 200), "a b c");
    }

    #[test]
    fn long_text_is_cut_on_a_char_boundary() {
        let cut = bounded(&"é".repeat(100_000), 10);
        assert_eq!(cut.chars().count(), 10);
        assert!(cut.ends_with('…'));
    }
}
