//! An MCP tool result as a Burrow tool result: `{content, isError?, structuredContent?}`.
//! Content that is all text blocks becomes their text, joined by newlines, which is what
//! a Burrow agent's transcript keeps best; any other content (images, audio, embedded
//! resources, resource links) stays the list of MCP content blocks, as JSON. An empty
//! content with `structuredContent` is that structured value. `isError` carries over;
//! `structuredContent` is passed on as it is.

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::{Value, json};

/// The Burrow tool result of an MCP `tools/call` answer.
pub fn to_burrow(result: CallToolResult) -> Value {
    let texts: Option<Vec<&str>> = result
        .content
        .iter()
        .map(|block| match block {
            ContentBlock::Text(text) => Some(text.text.as_str()),
            _ => None,
        })
        .collect();
    let content = match (texts, &result.structured_content) {
        (Some(texts), Some(structured)) if texts.is_empty() => structured.clone(),
        (Some(texts), _) => Value::String(texts.join("\n")),
        (None, _) => serde_json::to_value(&result.content).unwrap_or(Value::Null),
    };
    let mut answer = json!({ "content": content });
    if let Some(failed) = result.is_error {
        answer["isError"] = Value::Bool(failed);
    }
    if let Some(structured) = result.structured_content {
        answer["structuredContent"] = structured;
    }
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(v: Value) -> CallToolResult {
        serde_json::from_value(v).expect("a CallToolResult")
    }

    #[test]
    fn text_becomes_text_and_other_blocks_stay_blocks() {
        let text = result(
            json!({"content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}),
        );
        assert_eq!(to_burrow(text), json!({"content": "a\nb"}));
        let failed = result(json!({"content": [{"type": "text", "text": "no"}], "isError": true}));
        assert_eq!(to_burrow(failed), json!({"content": "no", "isError": true}));
        let image = json!({"type": "image", "data": "AAAA", "mimeType": "image/png"});
        let mixed = result(json!({"content": [{"type": "text", "text": "see"}, image.clone()]}));
        let answer = to_burrow(mixed);
        assert_eq!(answer["content"][1], image, "{answer}");
        let resource = json!({"type": "resource", "resource": {"uri": "file:///a", "text": "hi"}});
        let embedded = to_burrow(result(json!({"content": [resource]})));
        assert_eq!(embedded["content"][0]["resource"]["uri"], "file:///a", "{embedded}");
    }

    #[test]
    fn structured_content_is_passed_on() {
        let only = result(json!({"content": [], "structuredContent": {"temp": 21}}));
        assert_eq!(
            to_burrow(only),
            json!({"content": {"temp": 21}, "structuredContent": {"temp": 21}})
        );
        let both = result(
            json!({"content": [{"type": "text", "text": "{\"temp\":21}"}], "structuredContent": {"temp": 21}}),
        );
        assert_eq!(to_burrow(both)["content"], "{\"temp\":21}");
        let empty = result(json!({"content": []}));
        assert_eq!(to_burrow(empty), json!({"content": ""}));
    }
}
