//! Scope sets (RFC 6749 §3.3): space-delimited, order-preserving, duplicate-free.
//!
//! ```
//! use mcpauth_core::ScopeSet;
//! let held = ScopeSet::parse("read write");
//! let challenged = ScopeSet::parse("write admin");
//! assert_eq!(held.union(&challenged).to_string(), "read write admin");
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ordered set of scope tokens.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ScopeSet(Vec<String>);

impl ScopeSet {
    /// The empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a space-delimited `scope` value; empty tokens and duplicates are dropped.
    pub fn parse(value: &str) -> Self {
        value.split(' ').filter(|s| !s.is_empty()).collect()
    }

    /// Whether `scope` is in the set.
    pub fn contains(&self, scope: &str) -> bool {
        self.0.iter().any(|s| s == scope)
    }

    /// Adds `scope` at the end unless it is already present.
    pub fn insert(&mut self, scope: impl Into<String>) {
        let scope = scope.into();
        if !scope.is_empty() && !self.contains(&scope) {
            self.0.push(scope);
        }
    }

    /// This set followed by the members of `other` it lacks (MCP SPEC C16, C26).
    pub fn union(&self, other: &ScopeSet) -> ScopeSet {
        let mut out = self.clone();
        for s in &other.0 {
            out.insert(s.clone());
        }
        out
    }

    /// Whether every member of `other` is in this set.
    pub fn is_superset(&self, other: &ScopeSet) -> bool {
        other.0.iter().all(|s| self.contains(s))
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The members, in order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        self.0.iter().map(String::as_str)
    }
}

impl<S: Into<String>> FromIterator<S> for ScopeSet {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        let mut out = ScopeSet::new();
        for s in iter {
            out.insert(s);
        }
        out
    }
}

impl fmt::Display for ScopeSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.join(" "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_drops_empties_and_duplicates() {
        assert_eq!(ScopeSet::parse("  a  b a ").to_string(), "a b");
        assert!(ScopeSet::parse("").is_empty());
    }

    proptest! {
        #[test]
        fn union_is_superset_of_both(a in "[a-z: ]{0,40}", b in "[a-z: ]{0,40}") {
            let (a, b) = (ScopeSet::parse(&a), ScopeSet::parse(&b));
            let u = a.union(&b);
            prop_assert!(u.is_superset(&a) && u.is_superset(&b));
            prop_assert_eq!(ScopeSet::parse(&u.to_string()), u);
        }
    }
}
