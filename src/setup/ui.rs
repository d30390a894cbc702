//! The terminal: what setup says, and its questions (yes/no, a choice, a
//! line, a secret typed without echo). Non-interactive, a question takes its default.

use std::io::{BufRead, Write};

/// Prompts on the terminal, or answers from the defaults when non-interactive.
pub(super) struct Ui {
    /// Whether a person answers (else every question takes its default).
    pub(super) interactive: bool,
}

impl Ui {
    /// Prints `text` on its own line.
    pub(super) fn say(&self, text: impl AsRef<str>) {
        println!("{}", text.as_ref());
    }

    /// Reads one line after `prompt`, trimmed.
    pub(super) fn line(&self, prompt: &str) -> String {
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = std::io::stdin().lock().read_line(&mut line);
        line.trim().to_owned()
    }

    /// A yes/no question; non-interactive answers `default`.
    pub(super) fn confirm(&self, prompt: &str, default: bool) -> bool {
        if !self.interactive {
            return default;
        }
        let hint = if default { "[Y/n]" } else { "[y/N]" };
        match self.line(&format!("{prompt} {hint} ")).to_ascii_lowercase().as_str() {
            "" => default,
            answer => answer.starts_with('y'),
        }
    }

    /// Picks one of `options` by number (1-based on screen).
    pub(super) fn choose(&self, prompt: &str, options: &[String], default: usize) -> usize {
        self.say(prompt);
        for (i, option) in options.iter().enumerate() {
            self.say(format!("  {}) {option}", i + 1));
        }
        loop {
            let answer = self.line(&format!("choose 1-{} [{}]: ", options.len(), default + 1));
            if answer.is_empty() {
                return default;
            }
            match answer.parse::<usize>() {
                Ok(n) if (1..=options.len()).contains(&n) => return n - 1,
                _ => self.say(format!("please type a number from 1 to {}", options.len())),
            }
        }
    }

    /// Reads a secret without echoing it (the terminal's echo is off while typing).
    pub(super) fn secret(&self, prompt: &str) -> String {
        use rustix::termios::{LocalModes, OptionalActions, tcgetattr, tcsetattr};
        // Echo goes off before the prompt shows: a token pasted the moment it appears is never echoed.
        let stdin = std::io::stdin();
        let saved = tcgetattr(&stdin).ok();
        if let Some(saved) = &saved {
            let mut quiet = saved.clone();
            quiet.local_modes.remove(LocalModes::ECHO);
            let _ = tcsetattr(&stdin, OptionalActions::Now, &quiet);
        }
        print!("{prompt}");
        let _ = std::io::stdout().flush();
        let mut line = String::new();
        let _ = stdin.lock().read_line(&mut line);
        if let Some(saved) = &saved {
            let _ = tcsetattr(&stdin, OptionalActions::Now, saved);
        }
        println!();
        line.trim().to_owned()
    }
}
