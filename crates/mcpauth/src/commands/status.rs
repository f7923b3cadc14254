//! `mcpauth status`: stored logins, without any network request.

use crate::cli::Cli;
use crate::present::escape;
use crate::setup;

/// Prints a table (or JSON) of stored logins.
pub fn status(cli: &Cli) -> anyhow::Result<()> {
    let store = setup::store(cli, None)?;
    let records = store.list_tokens()?;
    if cli.json {
        let list: Vec<_> = records.iter().map(super::record_json).collect();
        println!("{}", serde_json::Value::Array(list));
        return Ok(());
    }
    if records.is_empty() {
        eprintln!("No stored logins. Log in with: mcpauth login URL");
        return Ok(());
    }
    let rows: Vec<[String; 7]> = records
        .iter()
        .map(|r| {
            [
                escape(&r.key.resource).into_owned(),
                escape(&r.key.issuer).into_owned(),
                escape(&r.key.client_id).into_owned(),
                escape(&r.token_type).into_owned(),
                if r.granted_scopes.is_empty() {
                    "-".into()
                } else {
                    escape(&r.granted_scopes.to_string()).into_owned()
                },
                super::relative(r.expires_at),
                if r.refresh_token.is_some() {
                    "yes".into()
                } else {
                    "no".into()
                },
            ]
        })
        .collect();
    let header = [
        "SERVER", "ISSUER", "CLIENT", "TYPE", "SCOPES", "EXPIRES", "REFRESH",
    ]
    .map(String::from);
    let mut widths = [0usize; 7];
    for row in std::iter::once(&header).chain(&rows) {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    for row in std::iter::once(&header).chain(&rows) {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("{}", line.join("  ").trim_end());
    }
    Ok(())
}
