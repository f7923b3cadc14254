//! Translations between the legacy MCP revisions (2025-11-25 and earlier: `initialize`
//! handshake, sessions, server-initiated requests, the GET stream) and the stateless 2026-07-28
//! revision (per-request `_meta`, `server/discover`, multi round-trip requests,
//! `subscriptions/listen`), for `mcpauth connect --protocol` and for 2026-07-28 clients of a
//! stdio server behind `mcpauth gateway` (MCP 2026-07-28 "Versioning" §Backward Compatibility).
//! Pure functions on JSON values; the relay and the gateway keep the state.

use std::collections::BTreeSet;

use serde_json::{Map, Value, json};

use mcpauth_core::mcp_headers::{STATELESS, VERSION_KEY};

/// Legacy revisions a bridged legacy client may negotiate, newest first.
pub const LEGACY_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// The legacy revision the bridge asks a legacy server for.
pub const LEGACY_LATEST: &str = "2025-11-25";

const CAPABILITIES_KEY: &str = "io.modelcontextprotocol/clientCapabilities";
const CLIENT_INFO_KEY: &str = "io.modelcontextprotocol/clientInfo";
const LOG_LEVEL_KEY: &str = "io.modelcontextprotocol/logLevel";
const SERVER_INFO_KEY: &str = "io.modelcontextprotocol/serverInfo";
/// `_meta` key tagging notifications of a `subscriptions/listen` stream.
pub const SUBSCRIPTION_KEY: &str = "io.modelcontextprotocol/subscriptionId";

/// JSON-RPC codes of the errors only a modern server sends (2026-07-28 "Overview" §Error Codes):
/// HeaderMismatch, MissingRequiredClientCapability, UnsupportedProtocolVersion.
const MODERN_ERRORS: [i64; 3] = [-32020, -32021, -32022];

/// Who a client is, as a legacy `initialize` says once and a modern request says every time.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ClientProfile {
    /// Protocol version.
    pub version: String,
    /// Client capabilities.
    pub capabilities: Value,
    /// `clientInfo` (name, version).
    pub info: Value,
    /// Log level asked for (`logging/setLevel` or `_meta` `logLevel`).
    pub log_level: Option<String>,
}

/// Client requests of the legacy revisions that 2026-07-28 removed (its schema: the lifecycle,
/// `ping`, `logging/setLevel` and the subscribe pair), answered 404 and -32601 to a 2026-07-28
/// client (Streamable HTTP §Protocol Version Header).
pub const REMOVED_METHODS: &[&str] = &[
    "initialize",
    "ping",
    "logging/setLevel",
    "resources/subscribe",
    "resources/unsubscribe",
];

/// The `_meta` member a 2026-07-28 request lacks, if any: every request carries its protocol
/// version and the client's capabilities (2026-07-28 "Overview" §Request Metadata, SEP-2575).
pub fn missing_meta(message: &Value) -> Option<&'static str> {
    let meta = &message["params"]["_meta"];
    [VERSION_KEY, CAPABILITIES_KEY]
        .into_iter()
        .find(|key| meta.get(*key).is_none())
}

/// A JSON-RPC error answer.
pub fn error_answer(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

/// The HTTP status of a 2026-07-28 answer sent as JSON: 404 for -32601, 400 for the errors of
/// a request that cannot be served as sent (parse, invalid request or params, HeaderMismatch,
/// MissingRequiredClientCapability, UnsupportedProtocolVersion), else 200 (Streamable HTTP
/// §Protocol Version Header, §Server Validation).
pub fn answer_status(answer: &Value) -> u16 {
    match answer["error"]["code"].as_i64() {
        Some(-32601) => 404,
        Some(-32700 | -32600 | -32602 | -32020 | -32021 | -32022) => 400,
        _ => 200,
    }
}

/// Whether an HTTP error answer carries a recognized modern JSON-RPC error (Streamable HTTP
/// §Backward Compatibility): then the server is modern and must not be treated as legacy.
pub fn is_modern_error(status: u16, body: &str) -> bool {
    let Ok(v) = serde_json::from_str::<Value>(body) else {
        return false;
    };
    match v["error"]["code"].as_i64() {
        Some(code) if MODERN_ERRORS.contains(&code) => true,
        // A modern server answers an unknown method with 404 and -32601 (§Protocol Version Header).
        Some(-32601) => status == 404,
        _ => false,
    }
}

/// The versions an `UnsupportedProtocolVersionError` lists, if `message` is one.
pub fn supported_versions(message: &Value) -> Option<Vec<String>> {
    if message["error"]["code"].as_i64() != Some(-32022) {
        return None;
    }
    Some(
        message["error"]["data"]["supported"]
            .as_array()?
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
    )
}

/// The `UnsupportedProtocolVersionError` the bridge answers for a modern version it cannot speak.
pub fn unsupported_version(id: &Value, requested: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {
        "code": -32022,
        "message": "Unsupported protocol version",
        "data": {"supported": [STATELESS], "requested": requested},
    }})
}

/// The legacy version answered to a client that asked for `requested`: its own when the bridge
/// knows it, else the newest legacy one (2025-11-25 "Lifecycle" §Version Negotiation).
pub fn legacy_version_for(requested: &str) -> &'static str {
    LEGACY_VERSIONS
        .iter()
        .find(|v| **v == requested)
        .copied()
        .unwrap_or(LEGACY_LATEST)
}

/// The profile of a legacy client from its `initialize` parameters.
pub fn profile_from_initialize(params: &Value) -> ClientProfile {
    ClientProfile {
        version: STATELESS.to_owned(),
        capabilities: object_or_empty(&params["capabilities"]),
        info: client_info_or_default(&params["clientInfo"]),
        log_level: None,
    }
}

fn object_or_empty(v: &Value) -> Value {
    if v.is_object() { v.clone() } else { json!({}) }
}

fn client_info_or_default(v: &Value) -> Value {
    if v["name"].is_string() {
        v.clone()
    } else {
        json!({"name": "mcpauth-connect", "version": env!("CARGO_PKG_VERSION")})
    }
}

/// Adds the per-request `_meta` of 2026-07-28 (protocol version, client capabilities and info,
/// log level) to a legacy client's message; keys already there (e.g. `progressToken`) stay.
pub fn add_modern_meta(message: &mut Value, profile: &ClientProfile) {
    let Some(object) = message.as_object_mut() else {
        return;
    };
    let params = object.entry("params").or_insert_with(|| json!({}));
    if !params.is_object() {
        return;
    }
    let meta = params
        .as_object_mut()
        .expect("checked")
        .entry("_meta")
        .or_insert_with(|| json!({}));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert(VERSION_KEY.into(), json!(profile.version));
        meta.insert(CAPABILITIES_KEY.into(), profile.capabilities.clone());
        meta.insert(CLIENT_INFO_KEY.into(), profile.info.clone());
        if let Some(level) = &profile.log_level {
            meta.insert(LOG_LEVEL_KEY.into(), json!(level));
        }
    }
}

/// Takes the 2026-07-28 `_meta` keys out of a modern client's message (a legacy server has no
/// use for them) and returns what they said; `None` when the message declares no version.
pub fn take_modern_meta(message: &mut Value) -> Option<ClientProfile> {
    let meta = message
        .get_mut("params")?
        .get_mut("_meta")?
        .as_object_mut()?;
    let version = meta.remove(VERSION_KEY)?.as_str()?.to_owned();
    let capabilities = object_or_empty(&meta.remove(CAPABILITIES_KEY).unwrap_or_default());
    let info = client_info_or_default(&meta.remove(CLIENT_INFO_KEY).unwrap_or_default());
    let log_level = meta
        .remove(LOG_LEVEL_KEY)
        .and_then(|v| v.as_str().map(str::to_owned));
    if meta.is_empty() {
        message["params"]
            .as_object_mut()
            .expect("had _meta")
            .remove("_meta");
    }
    Some(ClientProfile {
        version,
        capabilities,
        info,
        log_level,
    })
}

/// A legacy `InitializeResult` from a modern `DiscoverResult` (2026-07-28 "Discovery").
pub fn initialize_result(discover: &Value, version: &str) -> Value {
    let mut result = json!({
        "protocolVersion": version,
        "capabilities": object_or_empty(&discover["capabilities"]),
        "serverInfo": discover["_meta"][SERVER_INFO_KEY]
            .as_object()
            .filter(|i| i.contains_key("name"))
            .map_or_else(|| json!({"name": "unknown", "version": "unknown"}), |i| Value::Object(i.clone())),
    });
    if let Some(instructions) = discover["instructions"].as_str() {
        result["instructions"] = json!(instructions);
    }
    result
}

/// A modern `DiscoverResult` from a legacy `InitializeResult`: the bridge speaks 2026-07-28 to
/// the client whatever the server negotiated. Not cacheable beyond the process (`ttlMs` 0).
pub fn discover_result(init: &Value) -> Value {
    let mut result = json!({
        "resultType": "complete",
        "supportedVersions": [STATELESS],
        "capabilities": object_or_empty(&init["capabilities"]),
        "ttlMs": 0,
        "cacheScope": "private",
    });
    if init["serverInfo"].is_object() {
        result["_meta"] = json!({SERVER_INFO_KEY: init["serverInfo"]});
    }
    if let Some(instructions) = init["instructions"].as_str() {
        result["instructions"] = json!(instructions);
    }
    result
}

/// Methods whose 2026-07-28 results are `CacheableResult`s (`ttlMs`, `cacheScope` required).
const CACHEABLE: [&str; 5] = [
    "tools/list",
    "prompts/list",
    "resources/list",
    "resources/read",
    "resources/templates/list",
];

/// Makes a legacy server's result a well-formed 2026-07-28 result for a modern client:
/// `resultType` (SEP-2322) and, for cacheable results, `ttlMs` 0 and `cacheScope` private
/// (SEP-2549: nothing is promised, so nothing may be cached).
pub fn complete_result(method: &str, result: &mut Value) {
    let Some(object) = result.as_object_mut() else {
        return;
    };
    object
        .entry("resultType")
        .or_insert_with(|| json!("complete"));
    if CACHEABLE.contains(&method) {
        object.entry("ttlMs").or_insert_with(|| json!(0));
        object
            .entry("cacheScope")
            .or_insert_with(|| json!("private"));
    }
}

/// Whether a result asks for more input (2026-07-28 "Multi Round-Trip Requests").
pub fn is_input_required(result: &Value) -> bool {
    result["resultType"] == "input_required"
}

/// The retry of `original` carrying the answers and the server's `requestState` (MRTR §Client
/// Requirements: the retry is a new request with a new id; `requestState` echoed exactly).
pub fn mrtr_retry(
    original: &Value,
    id: Value,
    interim: &Value,
    responses: Map<String, Value>,
) -> Value {
    let mut retry = original.clone();
    retry["id"] = id;
    let params = retry
        .as_object_mut()
        .expect("requests are objects")
        .entry("params")
        .or_insert_with(|| json!({}));
    if let Some(p) = params.as_object_mut() {
        p.remove("requestState");
        p.remove("inputResponses");
        if !responses.is_empty() {
            p.insert("inputResponses".into(), Value::Object(responses));
        }
        if let Some(state) = interim.get("requestState") {
            p.insert("requestState".into(), state.clone());
        }
    }
    retry
}

/// What a modern client opted in to on a `subscriptions/listen` stream (2026-07-28
/// "Subscriptions" §Notification Filter).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Filter {
    /// `notifications/tools/list_changed`.
    pub tools: bool,
    /// `notifications/prompts/list_changed`.
    pub prompts: bool,
    /// `notifications/resources/list_changed`.
    pub resources: bool,
    /// `notifications/resources/updated` for these URIs.
    pub uris: BTreeSet<String>,
}

impl Filter {
    /// The filter of a `subscriptions/listen` request's params.
    pub fn from_params(params: &Value) -> Self {
        let n = &params["notifications"];
        Self {
            tools: n["toolsListChanged"] == true,
            prompts: n["promptsListChanged"] == true,
            resources: n["resourcesListChanged"] == true,
            uris: n["resourceSubscriptions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|u| u.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// The part a server with these (legacy) capabilities can honour.
    pub fn honored(&self, capabilities: &Value) -> Self {
        Self {
            tools: self.tools && capabilities["tools"]["listChanged"] == true,
            prompts: self.prompts && capabilities["prompts"]["listChanged"] == true,
            resources: self.resources && capabilities["resources"]["listChanged"] == true,
            uris: if capabilities["resources"]["subscribe"] == true {
                self.uris.clone()
            } else {
                BTreeSet::new()
            },
        }
    }

    /// The filter of a bridged legacy client: every list it may be told about, and the URIs it
    /// subscribed to, as far as the server's capabilities go.
    pub fn for_legacy_client(capabilities: &Value, uris: &BTreeSet<String>) -> Self {
        Self {
            tools: true,
            prompts: true,
            resources: true,
            uris: uris.clone(),
        }
        .honored(capabilities)
    }

    /// Whether nothing is asked for.
    pub fn is_empty(&self) -> bool {
        !self.tools && !self.prompts && !self.resources && self.uris.is_empty()
    }

    /// The `notifications` object of a listen request or acknowledgement.
    pub fn to_json(&self) -> Value {
        let mut n = Map::new();
        for (key, on) in [
            ("toolsListChanged", self.tools),
            ("promptsListChanged", self.prompts),
            ("resourcesListChanged", self.resources),
        ] {
            if on {
                n.insert(key.into(), json!(true));
            }
        }
        if !self.uris.is_empty() {
            n.insert("resourceSubscriptions".into(), json!(self.uris));
        }
        Value::Object(n)
    }

    /// Whether a server notification belongs on a stream with this filter.
    pub fn wants(&self, notification: &Value) -> bool {
        match notification["method"].as_str() {
            Some("notifications/tools/list_changed") => self.tools,
            Some("notifications/prompts/list_changed") => self.prompts,
            Some("notifications/resources/list_changed") => self.resources,
            Some("notifications/resources/updated") => notification["params"]["uri"]
                .as_str()
                .is_some_and(|u| self.uris.contains(u)),
            _ => false,
        }
    }
}

/// A notification tagged for the subscription opened by request `id`.
pub fn tag_subscription(notification: &Value, id: &Value) -> Value {
    let mut n = notification.clone();
    if !n["params"].is_object() {
        n["params"] = json!({});
    }
    if !n["params"]["_meta"].is_object() {
        n["params"]["_meta"] = json!({});
    }
    n["params"]["_meta"][SUBSCRIPTION_KEY] = id.clone();
    n
}

/// The acknowledgement that opens a subscription (2026-07-28 "Subscriptions" §Acknowledgment).
pub fn acknowledgement(id: &Value, honored: &Filter) -> Value {
    json!({"jsonrpc": "2.0", "method": "notifications/subscriptions/acknowledged",
        "params": {"_meta": {SUBSCRIPTION_KEY: id}, "notifications": honored.to_json()}})
}

/// The `InputRequiredResult` standing for a server-initiated request of a legacy server.
pub fn input_required(key: &str, request: &Value, state: &str) -> Value {
    let mut req = json!({"method": request["method"]});
    if let Some(params) = request.get("params") {
        req["params"] = params.clone();
    }
    json!({"resultType": "input_required", "inputRequests": {key: req}, "requestState": state})
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versioning_modern_errors_are_recognized_and_legacy_ones_are_not() {
        let e = |code: i64| {
            json!({"jsonrpc": "2.0", "id": 1, "error": {"code": code, "message": "m"}}).to_string()
        };
        assert!(is_modern_error(400, &e(-32022)));
        assert!(is_modern_error(400, &e(-32020)));
        assert!(is_modern_error(404, &e(-32601)));
        let status = |code: i64| answer_status(&json!({"error": {"code": code}}));
        assert_eq!(
            (status(-32601), status(-32602), status(-32021)),
            (404, 400, 400)
        );
        assert_eq!(
            (status(-32603), status(-1)),
            (200, 200),
            "server errors keep 200"
        );
        assert_eq!(answer_status(&json!({"result": {}})), 200);
        let meta = |m: Value| missing_meta(&json!({"params": {"_meta": m}}));
        assert_eq!(missing_meta(&json!({"params": {}})), Some(VERSION_KEY));
        assert_eq!(
            meta(json!({VERSION_KEY: STATELESS})),
            Some(CAPABILITIES_KEY)
        );
        assert_eq!(
            meta(json!({VERSION_KEY: STATELESS, CAPABILITIES_KEY: {}})),
            None
        );
        assert!(
            !is_modern_error(400, &e(-32601)),
            "-32601 is modern only with 404"
        );
        assert!(
            !is_modern_error(400, &e(-32000)),
            "the TS SDK's 'Server not initialized'"
        );
        assert!(!is_modern_error(400, "Bad Request"));
        assert!(!is_modern_error(404, ""));
    }

    #[test]
    fn discover_result_becomes_an_initialize_result_and_back() {
        let discover = json!({"resultType": "complete", "supportedVersions": ["2026-07-28"],
            "capabilities": {"tools": {"listChanged": true}},
            "_meta": {"io.modelcontextprotocol/serverInfo": {"name": "s", "version": "1"}},
            "instructions": "use it", "ttlMs": 1000, "cacheScope": "public"});
        let init = initialize_result(&discover, "2025-06-18");
        assert_eq!(
            init,
            json!({"protocolVersion": "2025-06-18", "capabilities": {"tools": {"listChanged": true}},
                "serverInfo": {"name": "s", "version": "1"}, "instructions": "use it"})
        );
        let back = discover_result(&init);
        assert_eq!(back["supportedVersions"], json!(["2026-07-28"]));
        assert_eq!(
            back["_meta"]["io.modelcontextprotocol/serverInfo"]["name"],
            "s"
        );
        assert_eq!(back["capabilities"], discover["capabilities"]);
        assert_eq!(back["ttlMs"], 0);
        let bare = initialize_result(&json!({"supportedVersions": ["2026-07-28"]}), "2025-11-25");
        assert_eq!(
            bare["serverInfo"]["name"], "unknown",
            "serverInfo is required in legacy"
        );
    }

    #[test]
    fn meta_is_added_for_modern_servers_and_taken_for_legacy_ones() {
        let profile = profile_from_initialize(&json!({"protocolVersion": "2025-11-25",
            "capabilities": {"elicitation": {}}, "clientInfo": {"name": "c", "version": "2"}}));
        let mut m = json!({"jsonrpc": "2.0", "id": 3, "method": "tools/call",
            "params": {"name": "t", "_meta": {"progressToken": 7}}});
        add_modern_meta(&mut m, &profile);
        let meta = &m["params"]["_meta"];
        assert_eq!(meta["progressToken"], 7);
        assert_eq!(meta[VERSION_KEY], "2026-07-28");
        assert_eq!(meta[CAPABILITIES_KEY], json!({"elicitation": {}}));
        assert_eq!(meta[CLIENT_INFO_KEY]["name"], "c");
        let mut no_params = json!({"jsonrpc": "2.0", "id": 4, "method": "tools/list"});
        add_modern_meta(&mut no_params, &profile);
        assert_eq!(no_params["params"]["_meta"][VERSION_KEY], "2026-07-28");

        let taken = take_modern_meta(&mut m).unwrap();
        assert_eq!(taken.capabilities, json!({"elicitation": {}}));
        assert_eq!(m["params"]["_meta"], json!({"progressToken": 7}));
        let taken = take_modern_meta(&mut no_params).unwrap();
        assert_eq!(taken.version, "2026-07-28");
        assert!(no_params["params"].get("_meta").is_none());
        assert!(take_modern_meta(&mut json!({"method": "x"})).is_none());
    }

    #[test]
    fn results_for_modern_clients_are_complete_and_not_cacheable() {
        let mut r = json!({"tools": []});
        complete_result("tools/list", &mut r);
        assert_eq!(
            r,
            json!({"tools": [], "resultType": "complete", "ttlMs": 0, "cacheScope": "private"})
        );
        let mut c = json!({"content": []});
        complete_result("tools/call", &mut c);
        assert_eq!(c, json!({"content": [], "resultType": "complete"}));
    }

    #[test]
    fn mrtr_retry_echoes_request_state_exactly_with_a_new_id() {
        let original = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
            "params": {"name": "t", "arguments": {}}});
        let interim = json!({"resultType": "input_required", "requestState": "opaque"});
        let mut answers = Map::new();
        answers.insert("k".into(), json!({"action": "accept"}));
        let retry = mrtr_retry(&original, json!("r-2"), &interim, answers);
        assert_eq!(retry["id"], "r-2");
        assert_eq!(retry["params"]["requestState"], "opaque");
        assert_eq!(retry["params"]["inputResponses"]["k"]["action"], "accept");
        let no_state = mrtr_retry(&retry, json!("r-3"), &json!({}), Map::new());
        assert!(
            no_state["params"].get("requestState").is_none(),
            "MUST NOT include one"
        );
    }

    #[test]
    fn subscription_filters_follow_the_server_capabilities() {
        let f = Filter::from_params(&json!({"notifications": {"toolsListChanged": true,
            "promptsListChanged": true, "resourceSubscriptions": ["file:///a"]}}));
        let caps = json!({"tools": {"listChanged": true}, "resources": {"subscribe": true}});
        let h = f.honored(&caps);
        assert!(h.tools && !h.prompts && h.uris.contains("file:///a"));
        assert_eq!(
            h.to_json(),
            json!({"toolsListChanged": true, "resourceSubscriptions": ["file:///a"]})
        );
        assert!(h.wants(&json!({"method": "notifications/tools/list_changed"})));
        assert!(!h.wants(&json!({"method": "notifications/prompts/list_changed"})));
        assert!(h.wants(
            &json!({"method": "notifications/resources/updated", "params": {"uri": "file:///a"}})
        ));
        assert!(!h.wants(
            &json!({"method": "notifications/resources/updated", "params": {"uri": "file:///b"}})
        ));
        let tagged = tag_subscription(
            &json!({"method": "notifications/tools/list_changed"}),
            &json!(5),
        );
        assert_eq!(tagged["params"]["_meta"][SUBSCRIPTION_KEY], 5);
        assert!(Filter::for_legacy_client(&json!({}), &BTreeSet::new()).is_empty());
    }
}
