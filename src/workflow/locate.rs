//! Where things are in the document, for error messages.

/// Finds where things are in the document, for error messages. Works on the block style
/// workflows are written in; elsewhere it falls back to the task's or document's start.
pub(super) struct Locator<'a> {
    lines: Vec<&'a str>,
    /// Line index where each task item starts.
    task_starts: Vec<usize>,
}

impl<'a> Locator<'a> {
    pub(super) fn new(text: &'a str) -> Self {
        let lines: Vec<&str> = text.lines().collect();
        let mut task_starts = Vec::new();
        if let Some(tasks_line) = lines.iter().position(|l| l.trim_end() == "tasks:") {
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
        Self { lines, task_starts }
    }

    /// ` (line L, column C)` of `key` inside task `task` (or of the task, or of the top
    /// level key when `task` is `None`).
    pub(super) fn at(&self, task: Option<usize>, key: Option<&str>) -> String {
        let (from, to) = match task {
            Some(i) => match self.task_starts.get(i) {
                Some(start) => (
                    *start,
                    self.task_starts
                        .get(i + 1)
                        .copied()
                        .unwrap_or(self.lines.len()),
                ),
                None => return String::new(),
            },
            None => (0, self.lines.len()),
        };
        let found = key.and_then(|key| {
            (from..to).find_map(|n| {
                let line = self.lines[n];
                let body = line.trim_start().trim_start_matches('-').trim_start();
                let top_level = task.is_some() || line.len() == line.trim_start().len();
                (top_level && body.starts_with(key) && body[key.len()..].starts_with(':'))
                    .then(|| (n, line.len() - body.len()))
            })
        });
        let (line, column) = match (found, task) {
            (Some(position), _) => position,
            (None, Some(_)) => (
                from,
                self.lines[from].len() - self.lines[from].trim_start().len(),
            ),
            (None, None) => return String::new(),
        };
        format!(" (line {}, column {})", line + 1, column + 1)
    }
}
