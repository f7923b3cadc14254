//! Which scopes an MCP request needs: some for every request, some per JSON-RPC method, some
//! per tool (`tools/call` with `params.name`), judged with a scope hierarchy (MCP SPEC S7-S8).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use mcpauth_core::ScopeSet;
use serde::Deserialize;

/// A scope-hierarchy hook: whether `granted` satisfies the `required` scope.
pub type ScopeHierarchy = Arc<dyn Fn(&ScopeSet, &str) -> bool + Send + Sync>;

/// The scopes MCP requests need.
///
/// ```
/// use mcpauth_core::ScopeSet;
/// use mcpauth_resource::ScopePolicy;
/// let policy = ScopePolicy::new()
///     .require(["mcp"])
///     .method("tools/list", ["tools:read"])
///     .tool("write_file", ["files:write"])
///     .implies("files:write", "files:read");
/// let body = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"write_file"}}"#;
/// let needed = policy.required_for_body(body);
/// assert_eq!(needed.to_string(), "mcp files:write");
/// assert!(policy.is_satisfied(&ScopeSet::parse("mcp files:write"), &needed));
/// assert!(policy.satisfies(&ScopeSet::parse("files:write"), "files:read"));
/// ```
#[derive(Clone, Default)]
pub struct ScopePolicy {
    base: ScopeSet,
    methods: HashMap<String, ScopeSet>,
    tools: HashMap<String, ScopeSet>,
    challenge: Option<ScopeSet>,
    implies: Vec<(String, String)>,
    hierarchy: Option<ScopeHierarchy>,
}

impl fmt::Debug for ScopePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScopePolicy")
            .field("base", &self.base)
            .field("methods", &self.methods)
            .field("tools", &self.tools)
            .field("challenge", &self.challenge)
            .field("implies", &self.implies)
            .field("hierarchy", &self.hierarchy.as_ref().map(|_| ".."))
            .finish()
    }
}

fn set<S: Into<String>>(scopes: impl IntoIterator<Item = S>) -> ScopeSet {
    scopes.into_iter().collect()
}

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(borrow, default)]
    method: Option<std::borrow::Cow<'a, str>>,
    #[serde(borrow, default)]
    params: Option<Params<'a>>,
}

#[derive(Deserialize)]
struct Params<'a> {
    #[serde(borrow, default)]
    name: Option<std::borrow::Cow<'a, str>>,
}

impl ScopePolicy {
    /// A policy that requires nothing (any valid token for this resource will do).
    pub fn new() -> Self {
        Self::default()
    }

    /// Scopes every request needs (also the `scope` of the 401 challenge, unless
    /// [`challenge_scopes`](Self::challenge_scopes) says otherwise).
    pub fn require<S: Into<String>>(mut self, scopes: impl IntoIterator<Item = S>) -> Self {
        self.base = self.base.union(&set(scopes));
        self
    }

    /// Scopes a JSON-RPC method needs, e.g. `method("tools/list", ["tools:read"])`.
    pub fn method<S: Into<String>>(
        mut self,
        method: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        let entry = self.methods.entry(method.into()).or_default();
        *entry = entry.union(&set(scopes));
        self
    }

    /// Scopes calling one tool needs (`tools/call` whose `params.name` is `tool`).
    pub fn tool<S: Into<String>>(
        mut self,
        tool: impl Into<String>,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        let entry = self.tools.entry(tool.into()).or_default();
        *entry = entry.union(&set(scopes));
        self
    }

    /// The `scope` of the 401 challenge sent when a request has no token (MCP SPEC S3, C17:
    /// clients ask for it first). Defaults to the scopes of [`require`](Self::require).
    /// `offline_access` is dropped (MCP SPEC S9).
    pub fn challenge_scopes<S: Into<String>>(
        mut self,
        scopes: impl IntoIterator<Item = S>,
    ) -> Self {
        self.challenge = Some(set(scopes));
        self
    }

    /// Declares that `broader` implies `narrower` (e.g. `files:write` implies `files:read`;
    /// MCP SPEC S8). Implications chain.
    pub fn implies(mut self, broader: impl Into<String>, narrower: impl Into<String>) -> Self {
        self.implies.push((broader.into(), narrower.into()));
        self
    }

    /// A custom hierarchy hook, consulted when neither the granted scopes nor the
    /// [`implies`](Self::implies) table satisfy a required scope (MCP SPEC S8). For example
    /// `admin` satisfying everything: `.hierarchy(|granted, _| granted.contains("admin"))`.
    pub fn hierarchy(
        mut self,
        hook: impl Fn(&ScopeSet, &str) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.hierarchy = Some(Arc::new(hook));
        self
    }

    /// Whether a request's scopes depend on its JSON-RPC body (per-method or per-tool rules).
    pub fn needs_body(&self) -> bool {
        !self.methods.is_empty() || !self.tools.is_empty()
    }

    /// The scopes every request needs.
    pub fn base_scopes(&self) -> &ScopeSet {
        &self.base
    }

    /// The `scope` for the 401 challenge without credentials (never `offline_access`, S9).
    pub fn challenge(&self) -> ScopeSet {
        self.challenge
            .as_ref()
            .unwrap_or(&self.base)
            .iter()
            .filter(|s| *s != "offline_access")
            .collect()
    }

    /// The scopes a JSON-RPC request body needs: the base scopes, the method's, and for
    /// `tools/call` the tool's. A batch (array) needs the union of its members'. A body that is
    /// not JSON-RPC needs the base scopes only (the handler will refuse it).
    pub fn required_for_body(&self, body: &[u8]) -> ScopeSet {
        let mut out = self.base.clone();
        if !self.needs_body() {
            return out;
        }
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        let messages: Vec<Message<'_>> = if first == Some(&b'[') {
            serde_json::from_slice(body).unwrap_or_default()
        } else {
            serde_json::from_slice(body)
                .map(|m| vec![m])
                .unwrap_or_default()
        };
        for m in &messages {
            let Some(method) = m.method.as_deref() else {
                continue;
            };
            if let Some(s) = self.methods.get(method) {
                s.iter().for_each(|s| out.insert(s));
            }
            if method == "tools/call"
                && let Some(name) = m.params.as_ref().and_then(|p| p.name.as_deref())
                && let Some(s) = self.tools.get(name)
            {
                s.iter().for_each(|s| out.insert(s));
            }
        }
        out
    }

    /// Whether `granted` satisfies `required`: held directly, implied through the
    /// [`implies`](Self::implies) table, or accepted by the [`hierarchy`](Self::hierarchy) hook.
    pub fn satisfies(&self, granted: &ScopeSet, required: &str) -> bool {
        if granted.contains(required) {
            return true;
        }
        if !self.implies.is_empty() {
            // Walk the implication graph from every granted scope.
            let mut seen: Vec<&str> = granted.iter().collect();
            let mut i = 0;
            while i < seen.len() {
                let from = seen[i];
                for (b, n) in &self.implies {
                    if b == from && !seen.contains(&n.as_str()) {
                        if n == required {
                            return true;
                        }
                        seen.push(n);
                    }
                }
                i += 1;
            }
        }
        self.hierarchy
            .as_ref()
            .is_some_and(|h| h(granted, required))
    }

    /// Whether `granted` satisfies every scope of `required`.
    pub fn is_satisfied(&self, granted: &ScopeSet, required: &ScopeSet) -> bool {
        required.iter().all(|r| self.satisfies(granted, r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s8_implications_chain_and_hook() {
        let p = ScopePolicy::new()
            .implies("admin", "files:write")
            .implies("files:write", "files:read")
            .hierarchy(|g, r| g.contains("root") && r.starts_with("files:"));
        let admin = ScopeSet::parse("admin");
        assert!(p.satisfies(&admin, "files:read"));
        assert!(!p.satisfies(&ScopeSet::parse("files:read"), "files:write"));
        assert!(p.satisfies(&ScopeSet::parse("root"), "files:write"));
        assert!(!p.satisfies(&ScopeSet::parse("root"), "mail:send"));
    }

    #[test]
    fn s7_batches_need_the_union() {
        let p = ScopePolicy::new()
            .require(["mcp"])
            .method("tools/list", ["tools:read"])
            .tool("rm", ["files:write"]);
        let body = br#"[{"method":"tools/list"},{"method":"tools/call","params":{"name":"rm","arguments":{"x":[1,{"y":2}]}}}]"#;
        assert_eq!(
            p.required_for_body(body).to_string(),
            "mcp tools:read files:write"
        );
        assert_eq!(p.required_for_body(b"not json").to_string(), "mcp");
    }

    #[test]
    fn s9_challenge_has_no_offline_access() {
        let p = ScopePolicy::new().require(["mcp", "offline_access"]);
        assert_eq!(p.challenge().to_string(), "mcp");
    }
}
