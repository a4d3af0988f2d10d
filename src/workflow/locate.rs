//! Where things are in the document, for messages. Works on the block style workflows are
//! written in; elsewhere (flow style, a value spread over lines) it falls back to the
//! nearest enclosing place it can find: the key, the task's first line, the `tasks:` key.

use std::{fmt, ops::Range};

/// A place in the document, numbered from 1 as editors number lines and columns
/// (columns count characters).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Place {
    pub line: usize,
    pub column: usize,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}, column {}", self.line, self.column)
    }
}

/// ` (line L, column C)`, to end a message with, or nothing when the place is unknown.
pub(super) fn suffix(place: Option<Place>) -> String {
    place.map_or_else(String::new, |p| format!(" ({p})"))
}

/// What a message is about.
#[derive(Clone, Copy)]
pub(super) enum At<'k> {
    /// A top-level key.
    Top(&'k str),
    /// A key of a top-level mapping: `defaults.timeout`, `variables.NAME`.
    Under(&'k str, &'k str),
    /// A key of the Nth task, or (`None`) the task itself.
    Task(usize, Option<&'k str>),
}

pub(super) struct Locator<'a> {
    lines: Vec<&'a str>,
    /// Line index where each task item starts.
    task_starts: Vec<usize>,
    /// Line index of the top-level `tasks:` key.
    tasks_line: Option<usize>,
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let tasks_line = (0..lines.len()).find(|&n| key_column(lines[n], "tasks") == Some(0));
        let mut task_starts = Vec::new();
        if let Some(tasks_line) = tasks_line {
            let mut indent = None;
            for (n, line) in lines.iter().enumerate().skip(tasks_line + 1) {
                let trimmed = line.trim_start();
                if trimmed.is_empty() || trimmed.starts_with('#') {
                    continue;
                }
                let here = line.len() - trimmed.len();
                if here == 0 && !trimmed.starts_with('-') {
                    break;
                }
                if trimmed.starts_with('-') && *indent.get_or_insert(here) == here {
                    task_starts.push(n);
                }
            }
        }
        Self {
            lines,
            task_starts,
            tasks_line,
        }
    }

    /// Where `at` is, or the nearest enclosing place the document shows.
    pub(super) fn place(&self, at: At) -> Option<Place> {
        self.line_and_byte(at)
            .map(|(n, byte)| self.place_at(n, byte))
    }

    /// Where the `nth` (from 0) `needle` of the value of `at` is, when it is written out
    /// on one line; else where `at` is.
    pub(super) fn place_in_value(&self, at: At, needle: &str, nth: usize) -> Option<Place> {
        let found = self.line_and_byte(at).and_then(|(key_line, key_byte)| {
            let end = match at {
                At::Task(i, _) => self.task_lines(i).map_or(self.lines.len(), |r| r.end),
                At::Top(_) | At::Under(..) => self.lines.len(),
            };
            (key_line..end)
                .flat_map(|n| {
                    let from = if n == key_line { key_byte } else { 0 };
                    self.lines[n]
                        .get(from..)
                        .into_iter()
                        .flat_map(move |rest| rest.match_indices(needle))
                        .map(move |(byte, _)| (n, from + byte))
                })
                .nth(nth)
        });
        match found {
            Some((n, byte)) => Some(self.place_at(n, byte)),
            None => self.place(at),
        }
    }

    fn place_at(&self, n: usize, byte: usize) -> Place {
        let line = self.lines[n];
        Place {
            line: n + 1,
            column: line.get(..byte).map_or(byte, |s| s.chars().count()) + 1,
        }
    }

    /// Line index and byte offset of `at` (or of what encloses it).
    fn line_and_byte(&self, at: At) -> Option<(usize, usize)> {
        let all = 0..self.lines.len();
        match at {
            At::Top(key) => self.find_key(all, key, 0),
            At::Under(parent, key) => {
                let parent_at = self.find_key(all, parent, 0)?;
                let block = self.block(parent_at.0);
                let indent = block
                    .clone()
                    .find_map(|n| content_indent(self.lines[n]))
                    .filter(|&indent| indent > 0);
                indent
                    .and_then(|indent| self.find_key(block, key, indent))
                    .or(Some(parent_at))
            }
            At::Task(i, key) => match self.task_lines(i) {
                Some(lines) => {
                    let start = lines.start;
                    let first = self.lines[start];
                    // `- id: a`: keys start after the dash; `-` alone: on the next line.
                    let keys_at = match first.trim_start().strip_prefix('-').map(str::trim_start) {
                        Some("") | None => lines
                            .clone()
                            .skip(1)
                            .find_map(|n| content_indent(self.lines[n])),
                        Some(body) => Some(first.len() - body.len()),
                    };
                    key.zip(keys_at)
                        .and_then(|(key, column)| self.find_key(lines, key, column))
                        .or_else(|| Some((start, content_indent(first)?)))
                }
                None => self.tasks_line.map(|n| (n, 0)),
            },
        }
    }

    /// Lines of the Nth task.
    fn task_lines(&self, i: usize) -> Option<Range<usize>> {
        let start = *self.task_starts.get(i)?;
        let end = self
            .task_starts
            .get(i + 1)
            .copied()
            .unwrap_or_else(|| self.block(self.tasks_line.unwrap_or(0)).end);
        Some(start..end)
    }

    /// The lines after the top-level key on line `n`, up to the next top-level line.
    fn block(&self, n: usize) -> Range<usize> {
        let end = (n + 1..self.lines.len())
            .find(|&m| content_indent(self.lines[m]) == Some(0) && !is_list_item(self.lines[m]))
            .unwrap_or(self.lines.len());
        n + 1..end
    }

    /// The first line in `lines` where `key:` starts at byte `column`.
    fn find_key(&self, lines: Range<usize>, key: &str, column: usize) -> Option<(usize, usize)> {
        lines
            .into_iter()
            .find_map(|n| (key_column(self.lines[n], key)? == column).then_some((n, column)))
    }
}

/// Byte offset where `key:` starts on `line` (after indentation and a list dash), if it
/// does. The key may be quoted.
fn key_column(line: &str, key: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    let body = trimmed.strip_prefix('-').map_or(trimmed, str::trim_start);
    [key.to_owned(), format!("\"{key}\""), format!("'{key}'")]
        .iter()
        .find_map(|spelled| {
            let rest = body.strip_prefix(spelled.as_str())?;
            let value = rest.strip_prefix(':')?;
            (value.is_empty() || value.starts_with([' ', '\t'])).then_some(line.len() - body.len())
        })
}

/// Indentation of a line that holds something (not blank, not only a comment).
fn content_indent(line: &str) -> Option<usize> {
    let trimmed = line.trim_start();
    (!trimmed.is_empty() && !trimmed.starts_with('#')).then_some(line.len() - trimmed.len())
}

fn is_list_item(line: &str) -> bool {
    line.trim_start().starts_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str, at: At) -> Option<(usize, usize)> {
        Locator::new(text).place(at).map(|p| (p.line, p.column))
    }

    #[test]
    fn keys_are_found_in_block_style_however_they_are_spelled() {
        let text = "name: x\ntasks:   # the steps\n  -\n    \"instance\": 5\n    prompt: |\n      instance: not a key\n  - name: b\n    labels:\n      instance: nested\n    prompt: p\ndefaults:\n  'timeout': 0\n";
        assert_eq!(at(text, At::Task(0, Some("instance"))), Some((4, 5)));
        // A key nested deeper than the task's own keys is not the task's.
        assert_eq!(at(text, At::Task(1, Some("instance"))), Some((7, 3)));
        assert_eq!(at(text, At::Task(1, Some("prompt"))), Some((10, 5)));
        assert_eq!(at(text, At::Under("defaults", "timeout")), Some((12, 3)));
        // Not there: the enclosing mapping's key.
        assert_eq!(at(text, At::Under("defaults", "model")), Some((11, 1)));
        assert_eq!(at(text, At::Top("budget_usd")), None);
        assert_eq!(
            Locator::new(text)
                .place_in_value(At::Task(0, Some("prompt")), "not", 0)
                .map(|p| (p.line, p.column)),
            Some((6, 17))
        );
    }
}
