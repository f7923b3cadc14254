//! How authorization URLs reach the user: printed on stderr (never stdout, which is for data),
//! opened in the browser through the `webbrowser` crate (never a shell, only http/https: MCP SPEC
//! C32), and a spinner while waiting, only when stderr is a terminal.

use std::io::{IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use mcpauth_client::authorize::Presenter;

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
        eprintln!("To authorize, open this URL in a browser:\n\n  {url}\n");
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
            device.verification_uri, device.user_code
        );
        if let Some(complete) = &device.verification_uri_complete {
            eprintln!("or open this address, which has the code filled in:\n\n  {complete}\n");
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
