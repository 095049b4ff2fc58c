//! Configuration (PROTOCOL.md §7): `config.get`, `config.watch`.

use serde::{Deserialize, Serialize};

use super::methods;
use crate::Value;

methods! {
    /// Read a dotted path of the kernel's configuration.
    ConfigGet = "config.get": ConfigGetParams => ConfigGetResult;
    /// Stream changes under paths as [`ConfigChange`] chunks until cancelled.
    ConfigWatch = "config.watch": ConfigWatchParams => ConfigWatchEnd;
}

/// Params of `config.get`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigGetParams {
    /// Dotted path; absent means the app's own subtree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Also say where each value under the path came from.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub origin: bool,
}

/// Result of `config.get`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigGetResult {
    /// The value; null for a missing path.
    pub value: Value,
    /// With `origin`: for each value under the path (a table's values, each array as a
    /// whole), its dotted path and where it was set: `FILE:LINE`, or `built-in default`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origins: Option<std::collections::BTreeMap<String, String>>,
}

/// Params of `config.watch`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfigWatchParams {
    /// Paths to watch; absent means the app's own subtree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
}

/// A chunk of `config.watch`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConfigChange {
    /// The path that changed.
    pub path: String,
    /// Before (null when it did not exist).
    pub old_value: Value,
    /// After (null when removed).
    pub new_value: Value,
}

/// The final result of a stream: `{ended}`, e.g. `"cancelled"`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConfigWatchEnd {
    /// Why the stream ended.
    pub ended: String,
}
