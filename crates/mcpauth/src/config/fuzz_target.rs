//! The body of the `config` fuzz target. The binary has no library target, so the fuzz crate
//! compiles `config.rs` and this file by path, and the binary's unit tests replay the corpus
//! through the same function.

use crate::config::{ConfigFile, expand_env, parse_headers};

/// An `mcpServers` config file parsed as [`ConfigFile::load`] does, then looked up as the
/// commands do: an entry is an HTTP server exactly when it has a `url`, a header value without
/// `${` expands to itself, and no header line makes anything panic.
pub(crate) fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) = serde_json::from_str::<ConfigFile>(text) else {
        return;
    };
    let with_url = file.servers.values().filter(|e| e.url.is_some()).count();
    assert_eq!(file.http_servers().len(), with_url);
    for (name, entry) in &file.servers {
        assert_eq!(
            file.http_server(name).is_ok(),
            entry.url.is_some(),
            "{name:?}"
        );
        for (header, value) in &entry.headers {
            let expanded = expand_env(value, |var| Some(format!("<{var}>")));
            if !value.contains("${") {
                assert_eq!(expanded.ok().as_deref(), Some(value.as_str()));
            }
            let _ = parse_headers([format!("{header}: {value}").as_str()]);
        }
    }
}
