//! The login, consent and error pages (askama templates under `templates/`; no JavaScript).

use askama::Template;
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Response};

use crate::server::page_headers;

/// The login form.
#[derive(Template)]
#[template(path = "login.html")]
pub(crate) struct LoginPage<'a> {
    pub action: &'a str,
    pub request_id: &'a str,
    pub csrf: &'a str,
    /// The client asking; `None` for the account page's sign-in.
    pub client_name: Option<&'a str>,
    pub username: &'a str,
    pub error: Option<&'a str>,
    /// Whether the username and password form is shown.
    pub password_login: bool,
    /// One button per identity provider (federation).
    pub providers: Vec<ProviderLink<'a>>,
}

/// A login page button that starts signing in at an identity provider.
pub(crate) struct ProviderLink<'a> {
    pub name: &'a str,
    pub display_name: &'a str,
    /// `/idp/start?request_id&csrf&idp`.
    pub href: String,
}

/// The consent form (MCP SPEC A10: the redirect host is shown prominently).
#[derive(Template)]
#[template(path = "consent.html")]
pub(crate) struct ConsentPage<'a> {
    pub action: &'a str,
    pub request_id: &'a str,
    pub csrf: &'a str,
    pub client_name: &'a str,
    /// The URL client id, for clients identified by a metadata document.
    pub client_url: Option<&'a str>,
    pub username: &'a str,
    pub redirect_host: &'a str,
    pub localhost_warning: bool,
    /// The user approved this client before, but that approval cannot answer for it
    /// (security finding 7, RFC 8252 §8.6): say so above the same one-click form.
    pub consented_before: bool,
    pub scopes: Vec<&'a str>,
    pub resource: Option<&'a str>,
    /// The user code of a device authorization (RFC 8628 §5.4: the remote phishing warning
    /// replaces the redirect host).
    pub device_code: Option<&'a str>,
}

/// The device verification page: the user code form (RFC 8628 §3.3).
#[derive(Template)]
#[template(path = "device.html")]
pub(crate) struct DevicePage<'a> {
    pub action: &'a str,
    pub csrf: &'a str,
    pub user_code: &'a str,
    pub error: Option<&'a str>,
}

/// The connected-apps page: the user's live grants, each with a form that revokes it.
#[derive(Template)]
#[template(path = "account.html")]
pub(crate) struct AccountPage<'a> {
    pub action: &'a str,
    pub signout: &'a str,
    pub csrf: &'a str,
    pub username: &'a str,
    pub apps: Vec<ConnectedApp>,
}

/// One grant on the [`AccountPage`].
pub(crate) struct ConnectedApp {
    pub id: String,
    pub name: String,
    pub redirect_host: Option<String>,
    pub scopes: Vec<String>,
    pub resource: Option<String>,
    /// When it was granted, as a UTC date and time.
    pub granted: String,
    /// When it last got tokens, likewise.
    pub last_used: String,
}

/// The end of a flow that redirects nowhere (a device authorization decided).
#[derive(Template)]
#[template(path = "done.html")]
pub(crate) struct DonePage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// An error that cannot be sent back to the client (MCP SPEC A8).
#[derive(Template)]
#[template(path = "error.html")]
pub(crate) struct ErrorPage<'a> {
    pub title: &'a str,
    pub message: &'a str,
}

/// Renders a page with the anti-framing, CSP and no-store headers.
pub(crate) fn render(status: StatusCode, page: &impl Template) -> Response {
    let mut resp = match page.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "rendering a page failed");
            (StatusCode::INTERNAL_SERVER_ERROR, "internal error").into_response()
        }
    };
    page_headers(&mut resp);
    resp
}

/// An error page.
pub(crate) fn error_page(status: StatusCode, title: &str, message: &str) -> Response {
    render(status, &ErrorPage { title, message })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_untrusted_text() {
        let html = ConsentPage {
            action: "/authorize/consent",
            request_id: "r",
            csrf: "c",
            client_name: "<script>x</script>",
            client_url: None,
            username: "u",
            redirect_host: "app.example",
            localhost_warning: true,
            consented_before: true,
            scopes: vec!["read"],
            resource: None,
            device_code: None,
        }
        .render()
        .unwrap();
        assert!(!html.contains("<script>x"));
        assert!(html.contains("&#60;script&#62;") || html.contains("&lt;script&gt;"));
        assert!(html.contains("localhost"));
        assert!(html.contains("app.example"));
        assert!(html.contains("You allowed this application before"));
    }
}
