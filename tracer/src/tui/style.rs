//! The TUI's look, shared by the screen and its panes: the styles, the pane frame, and
//! the helpers that fit text to a width.

use std::time::Duration;

use ratatui::{
    style::{Color, Modifier, Style},
    text::{Line, Span},
    widgets::{Block, Borders},
};

pub const TITLE: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);
pub const HEAD: Style = Style::new().add_modifier(Modifier::BOLD);
pub const DIM: Style = Style::new().fg(Color::DarkGray);
pub const BAD: Style = Style::new().fg(Color::Red).add_modifier(Modifier::BOLD);
pub const WARN: Style = Style::new().fg(Color::Yellow);
pub const GOOD: Style = Style::new().fg(Color::Green);
pub const SELECTED: Style = Style::new().add_modifier(Modifier::REVERSED);
pub const KEY: Style = Style::new().fg(Color::Cyan).add_modifier(Modifier::BOLD);

/// A pane's frame: a rule with the title on top (borders cost lines at 80x24).
pub fn pane_block<'a>(title: impl Into<Line<'a>>, focused: bool) -> Block<'a> {
    let style = if focused { TITLE } else { HEAD };
    Block::new()
        .borders(Borders::TOP)
        .border_style(if focused { TITLE } else { DIM })
        .title(title.into().style(style))
}

/// The tail of `s` in at most `w` columns: `…/scratch/dir`.
pub fn tail(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    let skip = n - (w - 1);
    format!("…{}", s.chars().skip(skip).collect::<String>())
}

/// The head of `s` in at most `w` columns: `delayed_fpu…`.
pub fn head(s: &str, w: usize) -> String {
    let n = s.chars().count();
    if n <= w {
        return s.to_string();
    }
    if w == 0 {
        return String::new();
    }
    format!("{}…", s.chars().take(w - 1).collect::<String>())
}

/// Word-wraps `text` into rows of at most `width` columns. Rows after the first are
/// indented two columns more than the text's own leading spaces. At most `max_rows` rows;
/// the last one then ends with `…`.
pub fn wrap(text: &str, width: usize, max_rows: usize) -> Vec<String> {
    let width = width.max(4);
    let indent = (text.len() - text.trim_start_matches(' ').len()).min(width / 2);
    let hang = " ".repeat((indent + 2).min(width / 2));
    let mut rows: Vec<String> = Vec::new();
    let mut cur = " ".repeat(indent);
    let mut cur_w = indent;
    let mut prefix_w = indent;
    for word in text.trim_start_matches(' ').split(' ') {
        let mut word: Vec<char> = word.chars().collect();
        loop {
            let sep = usize::from(cur_w > prefix_w);
            if cur_w + sep + word.len() <= width {
                if sep == 1 {
                    cur.push(' ');
                }
                cur.extend(word.iter());
                cur_w += sep + word.len();
                break;
            }
            if cur_w > prefix_w {
                rows.push(std::mem::replace(&mut cur, hang.clone()));
                cur_w = hang.len();
                prefix_w = cur_w;
                continue;
            }
            // A word longer than a row: cut it.
            let room = width - cur_w;
            cur.extend(word[..room].iter());
            rows.push(std::mem::replace(&mut cur, hang.clone()));
            cur_w = hang.len();
            prefix_w = cur_w;
            word.drain(..room);
        }
    }
    if cur_w > prefix_w || rows.is_empty() {
        rows.push(cur);
    }
    if rows.len() > max_rows.max(1) {
        rows.truncate(max_rows.max(1));
        let last = rows.last_mut().expect("at least one row");
        let mut chars: Vec<char> = last.chars().collect();
        chars.truncate(width - 1);
        *last = chars.into_iter().collect::<String>() + "…";
    }
    rows
}

/// `950`, `12.3k`, `100k`, `1.5M`, `1M`: three or four characters.
pub fn si(n: u64) -> String {
    let (unit, suffix) = match n {
        0..1_000 => return n.to_string(),
        1_000..1_000_000 => (1_000, "k"),
        _ => (1_000_000, "M"),
    };
    let whole = n / unit;
    let tenth = (n % unit) * 10 / unit;
    if whole >= 10 || tenth == 0 {
        format!("{whole}{suffix}")
    } else {
        format!("{whole}.{tenth}{suffix}")
    }
}

/// `0:01:23`, `27:03:04`.
pub fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
}

/// Key hints: `key` highlighted, then its meaning.
pub fn hints(pairs: &[(&str, &str)]) -> Vec<Span<'static>> {
    let mut v = Vec::new();
    for (k, what) in pairs {
        v.push(Span::styled(format!(" {k}"), KEY));
        v.push(Span::raw(format!(" {what} ")));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_keeps_words_and_hangs_the_rest() {
        assert_eq!(wrap("short", 20, 3), vec!["short"]);
        assert_eq!(
            wrap("  fd 3 of pid 12 (sleep) [alive]", 16, 9),
            vec!["  fd 3 of pid 12", "    (sleep)", "    [alive]"]
        );
        // A word longer than a row is cut; a row limit ends with an ellipsis.
        assert_eq!(
            wrap("abcdefghij", 4, 9),
            vec!["abcd", "  ef", "  gh", "  ij"]
        );
        assert_eq!(wrap("one two three four", 9, 1), vec!["one two…"]);
        assert_eq!(wrap("", 10, 2), vec![""]);
    }

    #[test]
    fn numbers_and_names_fit_their_columns() {
        assert_eq!(si(999), "999");
        assert_eq!(si(1_000), "1k");
        assert_eq!(si(1_450), "1.4k");
        assert_eq!(si(100_000), "100k");
        assert_eq!(si(1_000_000), "1M");
        assert_eq!(si(2_500_000), "2.5M");
        assert_eq!(si(10_000), "10k");
        assert_eq!(tail("/mnt/scratch/dir", 8), "…tch/dir");
        assert_eq!(head("delayed_fput", 8), "delayed…");
        assert_eq!(tail("/mnt", 8), "/mnt");
        assert_eq!(clock(Duration::from_secs(3723)), "1:02:03");
    }
}
