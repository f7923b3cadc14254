//! `mcpauth users | clients | keys | grants`: administration of the authorization server's
//! database.

use std::io::{BufRead, IsTerminal};

use anyhow::{Context, bail};
use mcpauth_authserver::admin::{self, NewClient};
use mcpauth_authserver::{AuthMethod, PasswordParams, SigningAlg};
use serde_json::json;

use super::serve::open_store;
use crate::cli::{Cli, ClientsCommand, GrantsCommand, KeysCommand, UsersCommand};
use crate::present::escape;

fn read_password(file: Option<&std::path::Path>) -> anyhow::Result<String> {
    let password = match file {
        Some(f) => std::fs::read_to_string(f)
            .with_context(|| format!("cannot read the password file {}", f.display()))?,
        None => {
            if std::io::stdin().is_terminal() {
                eprint!("Password (at least 8 characters; it will be visible as you type): ");
            }
            let mut line = String::new();
            std::io::stdin().lock().read_line(&mut line)?;
            line
        }
    };
    let password = password.trim_end_matches(['\n', '\r']).to_owned();
    if password.is_empty() {
        bail!("no password was given (pipe it on stdin or use --password-file)");
    }
    Ok(password)
}

/// `mcpauth users …`.
pub async fn users(cli: &Cli, cmd: &UsersCommand) -> anyhow::Result<()> {
    match cmd {
        UsersCommand::Add {
            username,
            password_file,
            db,
        } => {
            let password = read_password(password_file.as_deref())?;
            let (store, _) = open_store(db, None).await?;
            let u = admin::add_user(&store, username, &password, PasswordParams::default()).await?;
            eprintln!("Added user {} (subject {}).", u.username, u.id);
        }
        UsersCommand::List { db } => {
            let (store, _) = open_store(db, None).await?;
            let users = admin::list_users(&store).await?;
            if cli.json {
                let list: Vec<_> = users
                    .iter()
                    .map(|u| json!({"username": u.username, "subject": u.id, "created_at": u.created_at}))
                    .collect();
                println!("{}", serde_json::Value::Array(list));
            } else {
                for u in users {
                    println!("{}\t{}", escape(&u.username), escape(&u.id));
                }
            }
        }
        UsersCommand::Remove { username, db } => {
            let (store, _) = open_store(db, None).await?;
            admin::remove_user(&store, username).await?;
            eprintln!("Removed user {username}.");
        }
    }
    Ok(())
}

/// `mcpauth clients …`.
pub async fn clients(cli: &Cli, cmd: &ClientsCommand) -> anyhow::Result<()> {
    match cmd {
        ClientsCommand::Add {
            id,
            name,
            auth_method,
            redirect_uris,
            grant_types,
            scope,
            jwks_file,
            jwks_uri,
            introspection,
            db,
        } => {
            let method = AuthMethod::parse(auth_method).with_context(|| {
                format!("unknown auth method {auth_method:?} (none, client_secret_basic, client_secret_post, private_key_jwt)")
            })?;
            let mut new = NewClient::new(method);
            new.client_id = id.clone();
            new.client_name = name.clone();
            new.redirect_uris = redirect_uris.clone();
            new.grant_types = grant_types.clone();
            new.scope = scope.clone();
            new.jwks_uri = jwks_uri.clone();
            new.introspection = introspection.clone();
            if let Some(f) = jwks_file {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("cannot read {}", f.display()))?;
                new.jwks = Some(
                    serde_json::from_str(&text)
                        .with_context(|| format!("{} is not a JWK set", f.display()))?,
                );
            }
            let (store, _) = open_store(db, None).await?;
            let created = admin::add_client(&store, new).await?;
            if cli.json {
                println!(
                    "{}",
                    json!({
                        "client_id": created.info.client_id,
                        "client_secret": created.client_secret.as_ref().map(|s| s.expose()),
                        "token_endpoint_auth_method": created.info.auth_method.as_str(),
                        "introspection": created.info.introspection,
                    })
                );
            } else {
                println!("client_id: {}", created.info.client_id);
                for resource in &created.info.introspection {
                    println!("introspection: {resource}");
                }
                if let Some(secret) = &created.client_secret {
                    // Shown once, on stdout only, never logged (it is stored hashed).
                    println!("client_secret: {}", secret.expose());
                    eprintln!(
                        "Save the secret now: it is stored hashed and cannot be shown again."
                    );
                }
            }
        }
        ClientsCommand::List { db } => {
            let (store, _) = open_store(db, None).await?;
            let list = admin::list_clients(&store).await?;
            if cli.json {
                let out: Vec<_> = list
                    .iter()
                    .map(|c| {
                        json!({
                            "client_id": c.client_id,
                            "client_name": c.client_name,
                            "token_endpoint_auth_method": c.auth_method.as_str(),
                            "redirect_uris": c.redirect_uris,
                            "grant_types": c.grant_types,
                            "introspection": c.introspection,
                            "created_at": c.created_at,
                        })
                    })
                    .collect();
                println!("{}", serde_json::Value::Array(out));
            } else {
                for c in list {
                    println!(
                        "{}\t{}\t{}",
                        escape(&c.client_id),
                        c.auth_method.as_str(),
                        escape(c.client_name.as_deref().unwrap_or_default())
                    );
                }
            }
        }
        ClientsCommand::Remove { client_id, db } => {
            let (store, _) = open_store(db, None).await?;
            admin::remove_client(&store, client_id).await?;
            eprintln!("Removed client {client_id}.");
        }
    }
    Ok(())
}

/// `mcpauth keys …`.
pub async fn keys(cli: &Cli, cmd: &KeysCommand) -> anyhow::Result<()> {
    let print = |keys: &[admin::KeyInfo]| {
        if cli.json {
            let out: Vec<_> = keys
                .iter()
                .map(|k| json!({"kid": k.kid, "alg": k.alg, "status": k.status, "created_at": k.created_at}))
                .collect();
            println!("{}", serde_json::Value::Array(out));
        } else {
            for k in keys {
                println!("{}\t{}\t{}", k.kid, k.alg, k.status);
            }
        }
    };
    match cmd {
        KeysCommand::Rotate { alg, db } => {
            let alg = match alg {
                Some(a) => SigningAlg::parse(a)
                    .with_context(|| format!("unknown algorithm {a:?} (ES256 or EdDSA)"))?,
                None => SigningAlg::Es256,
            };
            let (store, _) = open_store(db, None).await?;
            let key = admin::rotate_keys(&store, alg).await?;
            eprintln!(
                "New current key {} ({}); running servers switch within a minute.",
                key.kid, key.alg
            );
            print(&admin::list_keys(&store).await?);
        }
        KeysCommand::List { db } => {
            let (store, _) = open_store(db, None).await?;
            print(&admin::list_keys(&store).await?);
        }
    }
    Ok(())
}

fn grant_json(g: &admin::GrantInfo) -> serde_json::Value {
    json!({"id": g.id, "username": g.username, "subject": g.user_id, "client_id": g.client_id,
        "client_name": g.client_name, "scope": g.scope, "resource": g.resource,
        "granted_at": g.granted_at, "last_used_at": g.last_used_at, "expires_at": g.expires_at})
}

/// When `at` (Unix seconds) was or will be, for a person.
fn when(at: i64) -> String {
    super::relative(u64::try_from(at).ok())
}

/// `mcpauth grants …`.
pub async fn grants(cli: &Cli, cmd: &GrantsCommand) -> anyhow::Result<()> {
    match cmd {
        GrantsCommand::List { user, db } => {
            let (store, _) = open_store(db, None).await?;
            let grants = admin::list_grants(&store, user.as_deref()).await?;
            if cli.json {
                let list: Vec<_> = grants.iter().map(grant_json).collect();
                println!("{}", serde_json::Value::Array(list));
            } else if grants.is_empty() {
                eprintln!("No live grants.");
            } else {
                // Names come from users and dynamic registrations: escaped for the terminal.
                for g in &grants {
                    println!(
                        "{}\t{}\t{}\t{}\tgranted {}\tlast used {}",
                        g.id,
                        escape(g.username.as_deref().unwrap_or("(removed user)")),
                        escape(g.client_name.as_deref().unwrap_or(&g.client_id)),
                        escape(&g.scope),
                        when(g.granted_at),
                        when(g.last_used_at),
                    );
                }
            }
        }
        GrantsCommand::Revoke { id, db } => {
            let (store, _) = open_store(db, None).await?;
            let g = admin::revoke_grant(&store, id).await?;
            if cli.json {
                println!("{}", grant_json(&g));
            }
            eprintln!(
                "Revoked grant {} ({} for {}): its tokens are refused within 2 s, and the client must ask for consent again.",
                g.id,
                escape(g.client_name.as_deref().unwrap_or(&g.client_id)),
                escape(g.username.as_deref().unwrap_or(&g.user_id)),
            );
        }
    }
    Ok(())
}
