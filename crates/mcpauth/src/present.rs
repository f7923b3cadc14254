//! How authorization URLs reach the user: printed on stderr (never stdout, which is for data),
//! opened in the browser through the `webbrowser` crate (never a shell, only http/https: MCP SPEC
//! C32), and a spinner while waiting, only when stderr is a terminal. And [`escape`], through
//! which every human-readable output shows text it does not control.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mcpauth_client::authorize::Presenter;
use mcpauth_core::registration::is_format_character;

/// Text the CLI does not control (names, ids, URLs, scopes and messages from servers or from the
/// database) made safe for a terminal (security findings 5 and 9): control characters are shown
/// escaped (`\n`, `\r`, `\t`, `\x1b`, ...), and so are invisible formatting characters
/// (bidirectional overrides, zero-width characters, line separators, ...: `\u{202e}`), so that
/// no text can move the cursor, recolour, retitle or hyperlink, forge a line or a column of a
/// table, or show itself in another order. Anything else is shown as is. `--json` output does not
/// go through this: it stays exact.
pub fn escape(text: &str) -> Cow<'_, str> {
    if !text.chars().any(hidden) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            // Every control character (Unicode Cc) is below U+0100.
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c if hidden(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// Whether [`escape`] shows `c` escaped: a control character (Unicode Cc), a format character
/// (Cf) or a line or paragraph separator.
fn hidden(c: char) -> bool {
    c.is_control() || c == '\u{2028}' || c == '\u{2029}' || is_format_character(c)
}

/// How the answer comes back.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wait {
    /// The browser returns to the loopback listener.
    Browser,
    /// The browser returns to the listener, or the user pastes the redirect URL.
    BrowserOrPaste,
    /// The user pastes the redirect URL.
    Paste,
}

/// The CLI's presenter.
#[derive(Debug)]
pub struct Terminal {
    open_browser: bool,
    wait: Wait,
    tty: bool,
    spinner: Mutex<Option<(Arc<AtomicBool>, JoinHandle<()>)>>,
}

const SPINNER_TEXT: &str = "Waiting for the browser… (Ctrl-C cancels)";

impl Terminal {
    /// `open_browser`: try to open the URL; `wait`: how the answer comes back.
    pub fn new(open_browser: bool, wait: Wait) -> Self {
        Self {
            open_browser,
            wait,
            tty: std::io::stderr().is_terminal(),
            spinner: Mutex::new(None),
        }
    }

    /// Animates a spinner on stderr, `lines_up` lines above the cursor (so that a prompt below it
    /// can be typed into undisturbed). Only on a terminal.
    fn start_spinner(&self, lines_up: usize) {
        if !self.tty {
            return;
        }
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (enter, leave) = if lines_up == 0 {
            ("\r".to_owned(), String::new())
        } else {
            (format!("\x1b7\x1b[{lines_up}A\r"), "\x1b8".to_owned())
        };
        let handle = std::thread::spawn(move || {
            const FRAMES: [&str; 10] = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];
            let mut i = 0;
            while !flag.load(Ordering::Relaxed) {
                let mut err = std::io::stderr().lock();
                let frame = FRAMES[i % FRAMES.len()];
                let _ = write!(err, "{enter}\x1b[2K{frame} {SPINNER_TEXT}{leave}");
                let _ = err.flush();
                drop(err);
                i += 1;
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = write!(std::io::stderr().lock(), "{enter}\x1b[2K{leave}");
        });
        *self.spinner.lock().unwrap() = Some((stop, handle));
    }
}

/// Whether a URL may be handed to the browser (MCP SPEC C32: http(s) only, never other schemes).
fn browser_safe(url: &str) -> bool {
    url::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https"))
}

impl Presenter for Terminal {
    fn show_authorization_url(&self, url: &str) {
        eprintln!(
            "To authorize, open this URL in a browser:\n\n  {}\n",
            escape(url)
        );
        if self.open_browser
            && browser_safe(url)
            && let Err(e) = webbrowser::open(url)
        {
            tracing::info!("could not open a browser ({e}); open the URL yourself");
        }
        if self.wait == Wait::Browser {
            self.start_spinner(0);
        }
    }

    fn ask_for_redirect(&self) {
        match self.wait {
            Wait::Browser => {}
            Wait::BrowserOrPaste => {
                // The spinner line, then the prompt; the user types below both.
                eprintln!("{SPINNER_TEXT}");
                eprintln!(
                    "If the browser cannot reach this machine, paste the address it ended up at \
                     and press Enter:"
                );
                self.start_spinner(2);
            }
            Wait::Paste => eprintln!(
                "After you approve, paste the address the browser ended up at and press Enter:"
            ),
        }
    }

    fn show_device_code(&self, device: &mcpauth_core::device::DeviceAuthorization) {
        eprintln!(
            "To authorize, visit {} and enter the code:\n\n  {}\n",
            escape(&device.verification_uri),
            escape(&device.user_code)
        );
        if let Some(complete) = &device.verification_uri_complete {
            eprintln!(
                "or open this address, which has the code filled in:\n\n  {}\n",
                escape(complete)
            );
            if self.open_browser
                && browser_safe(complete)
                && let Err(e) = webbrowser::open(complete)
            {
                tracing::info!("could not open a browser ({e}); open the address yourself");
            }
        }
        self.start_spinner(0);
    }

    fn done(&self) {
        if let Some((stop, handle)) = self.spinner.lock().unwrap().take() {
            stop.store(true, Ordering::Relaxed);
            let _ = handle.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sec5_escape_shows_control_and_formatting_characters() {
        assert!(matches!(
            escape("Café Łódź 日本 https://a.example/x?y=1"),
            Cow::Borrowed(_)
        ));
        assert_eq!(
            escape("a\x1b]8;;https://evil.example/\x07b\x1b[2J\x7f\u{9b}"),
            "a\\x1b]8;;https://evil.example/\\x07b\\x1b[2J\\x7f\\x9b"
        );
        assert_eq!(escape("row\nforged\tcell\r"), "row\\nforged\\tcell\\r");
        assert_eq!(
            escape("Good\u{202E}evil\u{200B}\u{2066}\u{2028}\u{FEFF}\u{E0041}"),
            "Good\\u{202e}evil\\u{200b}\\u{2066}\\u{2028}\\u{feff}\\u{e0041}"
        );
        assert_eq!(escape("\0"), "\\x00");
    }

    #[test]
    fn c32_only_http_urls_reach_the_browser() {
        assert!(browser_safe("https://as.example/authorize?x=1"));
        assert!(browser_safe("http://127.0.0.1:9/authorize"));
        for bad in [
            "javascript:alert(1)",
            "file:///etc/passwd",
            "data:text/html,x",
            "vbscript:x",
            "ms-settings:",
        ] {
            assert!(!browser_safe(bad), "{bad}");
        }
    }
}
