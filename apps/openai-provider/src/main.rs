//! `openai-provider`: a Burrow model provider that forwards agent runs to an
//! OpenAI-compatible chat-completions server — a local one (llama.cpp's `llama-server`,
//! vLLM, Ollama, LM Studio, ...) or a hosted API.
//!
//! Each `provider.complete {model, messages, tools}` becomes one
//! `POST {base_url}/chat/completions` with `{model, messages, tools?, stream: true,
//! stream_options: {include_usage: true}}` in OpenAI's shape (without the last two when
//! `stream = false`):
//! - messages keep their role (`system`, `user`, `assistant`, `tool`); an assistant's
//!   `toolCalls` become `tool_calls: [{id, type: "function", function: {name, arguments}}]`
//!   with the arguments as a JSON string; a tool result becomes
//!   `{role: "tool", tool_call_id, content}`; an empty system message is left out;
//! - `tools` become `[{type: "function", function: {name, description, parameters}}]`,
//!   `parameters` being the tool's `inputSchema` (an object schema without properties
//!   when it has none); `tools` is left out when no tool is offered;
//! - `Authorization: Bearer <key>` is sent when an API key is set.
//!
//! The answer's `choices[0].message` becomes `{content, toolCalls?}`: a `null` content is
//! `""`, each tool call is `{id, name, arguments}` with `arguments` parsed from its JSON
//! string (an empty string is `{}`; one that does not parse is passed on as
//! `{"_raw": "<string>"}`); `usage` becomes `{promptTokens, completionTokens}`.
//!
//! A streamed answer (server-sent events, [`sse`]) is read as it comes: each
//! `choices[0].delta` gives its text and tool-call pieces, which a [`openai::Deltas`] sink
//! receives in order (`ProviderChunk::TextDelta`, `ProviderChunk::ToolCallDelta`), and at
//! `data: [DONE]` (or the end of the body after a `finish_reason`) the assembled message
//! and the usage make the same result as the whole answer would (see `openai/stream.rs`).
//! A stream that ends early, or carries an `error`, fails the completion. The handler is
//! registered with `App::on` (the provider id comes from the configuration); its
//! `Context` sends each delta to the kernel as a chunk of the `provider.complete` it
//! answers, as it arrives. A server that answers a whole completion although
//! asked to stream is read as one.
//!
//! Failures answer errors, never a panic: no answer (or no end of the stream) within
//! `timeout_ms` is `TIMEOUT`; a refused or broken connection is `UNKNOWN_ERROR` naming the
//! URL and the cause; an HTTP error status is `UNKNOWN_ERROR` with the status and the
//! server's message (`error.message` of a JSON body, else the start of the body); an
//! answer that is not a chat completion, or a stream that breaks off, reports an `error`
//! or carries something else than chat-completion chunks, is `UNKNOWN_ERROR`. No model
//! (the agent's is `""` or `"default"` and no `model` is configured) is `INVALID_PARAMS`.
//! Answers are read up to 16 MiB (streamed ones: 16 MiB of text and arguments).
//!
//! # Configuration
//!
//! The app reads its own subtree `[apps.<id>]` with `config.get` each time it becomes
//! ready (so a change applies when the app restarts or reconnects), then registers the
//! provider. All keys are optional:
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `base_url` | `http://127.0.0.1:11434/v1` | the API root; `/chat/completions` is appended |
//! | `model` | none | the model asked for when the agent's `model` is `""` or `"default"` |
//! | `api_key` | none | sent as `Authorization: Bearer <api_key>` |
//! | `api_key_env` | none | the environment variable holding the key, when `api_key` is not set |
//! | `provider_id` | `openai` | the provider id registered (what `[agents.*] provider` names) |
//! | `models` | `[model]` | the model names advertised in the capability (any name is forwarded) |
//! | `timeout_ms` | `120000` | deadline of one HTTP exchange (a whole stream included) |
//! | `stream` | `true` | ask for a streamed answer (`false`: one JSON answer) |
//!
//! `--base-url URL` and `--provider-id ID` on the command line win over the file. A
//! mistyped value is logged and no provider is registered. The agent's own `timeout_ms`
//! (default 60 000) bounds each completion too, so raise it for slow local models.
//! Proxies from the environment (`HTTPS_PROXY`, ...) are used except for a server on a
//! loopback address. TLS uses rustls with the Mozilla roots (webpki-roots).
//!
//! ```toml
//! [apps.openai-provider]
//! base_url = "http://127.0.0.1:11434/v1"   # Ollama; llama-server: http://127.0.0.1:8080/v1
//! model = "qwen3:8b"
//! # api_key_env = "OPENAI_API_KEY"        # for a hosted API
//! # provider_id = "openai"
//!
//! [agents.main]
//! provider = "openai"
//! model = "default"                       # use apps.openai-provider.model
//! ```
//!
//! Name the model in `[agents.main]` (or write `"default"`): an agent without `model`
//! asks for the kernel's default, `"echo"`, which the server is unlikely to know.
//!
//! The provider id comes from the configuration, so the app registers it itself once
//! ready (`capability.register`) rather than declaring it up front; its manifest allows
//! the `--provider-id` given, else any id (`"*"`; the kernel's policy still applies).
//!
//! Usage: `openai-provider [--id ID] [--socket PATH] [--base-url URL] [--provider-id ID]`.
//! The id defaults to `BURROW_APP_ID`, else `openai-provider`; the socket to
//! `BURROW_SOCKET`, else the default socket. Logs go to stderr (`RUST_LOG`, default
//! `info`); stdout carries the lines scripts wait for: `openai-provider: ready as <appId>`
//! (once the provider is registered), then `openai-provider: leaving` (Ctrl-C/SIGTERM) or
//! `openai-provider: kernel asked us to shut down`.

use std::process::ExitCode;
use std::sync::{Arc, PoisonError, RwLock};

use burrow_example_common::{Example, say};
use burrow_sdk::protocol::methods::capability::ProviderConfig;
use burrow_sdk::protocol::methods::invoke::ProviderComplete;
use burrow_sdk::{
    App, CapabilityType, Client, ErrorCode, ErrorObject, Manifest, ProviderCompleteParams,
    ProviderCompleteResult,
};
use serde_json::json;

mod openai;
mod settings;
mod sse;
#[cfg(test)]
mod test_server;

use openai::{Backend, Deltas};
use settings::{Overrides, Settings};

const EXAMPLE: Example =
    Example::new("openai-provider", "openai-provider").flags("[--base-url URL] [--provider-id ID]");

/// What the handlers share: the command line, and the backend of the current settings
/// (none until the app is first ready with a usable configuration).
#[derive(Debug)]
struct Shared {
    overrides: Overrides,
    backend: RwLock<Option<Arc<Backend>>>,
}

impl Shared {
    fn backend(&self) -> Option<Arc<Backend>> {
        self.backend.read().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Reads the configuration, sets up the backend and registers the provider.
    async fn start(&self, client: &Client) {
        let app_id = client.app_id().unwrap_or_default().to_owned();
        let own = match client.config_get(None).await {
            Ok(own) => own,
            Err(e) => {
                tracing::error!(error = %e, "cannot read [apps.{app_id}]; no provider registered");
                return;
            }
        };
        let env = |var: &str| std::env::var(var).ok();
        let backend = Settings::from_config(&own, &self.overrides, env).and_then(Backend::new);
        let backend = match backend {
            Ok(backend) => Arc::new(backend),
            Err(why) => {
                tracing::error!(
                    "bad configuration in [apps.{app_id}]: {why}; no provider registered"
                );
                return;
            }
        };
        let settings = backend.settings();
        let config = ProviderConfig {
            provider_id: settings.provider_id.clone(),
            models: settings.models.clone(),
        };
        *self.backend.write().unwrap_or_else(PoisonError::into_inner) = Some(backend.clone());
        match client.register_capability(CapabilityType::Provider, &config).await {
            Ok(answer) if answer.granted => {
                tracing::info!(
                    provider = %config.provider_id,
                    base_url = %settings.base_url,
                    model = ?settings.model,
                    models = ?config.models,
                    api_key = settings.api_key.is_some(),
                    "serving completions",
                );
                say(&format!("openai-provider: ready as {app_id}"));
            }
            Ok(answer) => tracing::error!(
                provider = %config.provider_id,
                reason = answer.reason.as_deref().unwrap_or("none given"),
                "the kernel refused the provider",
            ),
            Err(e) => tracing::error!(
                provider = %config.provider_id,
                error = %e,
                "cannot register the provider",
            ),
        }
    }

    /// Answers `provider.complete`, streaming the answer's pieces to `deltas`.
    async fn complete(
        &self,
        params: ProviderCompleteParams,
        deltas: &impl Deltas,
    ) -> Result<ProviderCompleteResult, ErrorObject> {
        let Some(backend) = self.backend() else {
            return Err(ErrorObject::new(
                ErrorCode::UnknownError,
                "the provider is not configured (see the app's log)",
            ));
        };
        let provider_id = &backend.settings().provider_id;
        if params.provider_id != *provider_id {
            return Err(ErrorObject::new(
                ErrorCode::NotFound,
                format!("this app has no provider {:?}", params.provider_id),
            )
            .with_data(json!({ "providerId": params.provider_id })));
        }
        backend.complete(&params, deltas).await
    }
}

fn app(id: String, overrides: Overrides) -> App {
    let mut manifest = Manifest::new(id, env!("CARGO_PKG_VERSION"));
    manifest.description =
        Some("A model provider for OpenAI-compatible chat-completions servers".to_owned());
    let allowed = overrides.provider_id.clone().unwrap_or_else(|| "*".to_owned());
    manifest.capabilities.providers = vec![allowed];
    let shared = Arc::new(Shared { overrides, backend: RwLock::new(None) });
    let (serve, ready) = (shared.clone(), shared);
    App::new(manifest)
        .on::<ProviderComplete, _, _>(move |params, cx| {
            let shared = serve.clone();
            // The provider id comes from the configuration, so the handler is a raw one
            // (`App::on`); its `Context` streams the deltas to the kernel as chunks.
            async move { shared.complete(params, &cx).await }
        })
        .on_ready(move |client| {
            let shared = ready.clone();
            async move { shared.start(&client).await }
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut overrides = Overrides::default();
    let args = EXAMPLE.start_with(|flag| match flag.name() {
        "--base-url" => {
            overrides.base_url = Some(flag.value()?);
            Ok(())
        }
        "--provider-id" => {
            overrides.provider_id = Some(flag.value()?);
            Ok(())
        }
        _ => Err(flag.unknown()),
    });
    EXAMPLE.run(app(args.id, overrides), args.socket).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use burrow_sdk::testing::FakeKernel;
    use burrow_sdk::{ChatMessage, Error, Role, ToolCallRequest, ToolSpec, Value};
    use serde_json::json;

    use super::*;
    use crate::test_server::{End, Reply, TestServer, closed_port};

    const WAIT: Duration = Duration::from_secs(10);

    /// The app, running on a fake kernel whose `[apps.openai-provider]` is `own`, once it
    /// has registered its provider (or given up).
    async fn start(own: Value, overrides: Overrides) -> FakeKernel {
        let (kernel, transport) = FakeKernel::new();
        kernel.set_config(json!({ "apps": { "openai-provider": own } }));
        let app = app("openai-provider".into(), overrides);
        tokio::spawn(app.run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        kernel.wait_calls("config.get", 1, WAIT).await.unwrap();
        kernel
    }

    async fn start_for(server: &TestServer, more: Value) -> FakeKernel {
        let mut own =
            json!({ "base_url": server.base_url(), "model": "llama3", "timeout_ms": 5000 });
        own.as_object_mut().unwrap().extend(more.as_object().unwrap().clone());
        let kernel = start(own, Overrides::default()).await;
        kernel.wait_calls("capability.register", 1, WAIT).await.unwrap();
        kernel
    }

    fn say(role: Role, content: &str) -> ChatMessage {
        ChatMessage { role, content: content.into(), tool_calls: None, tool_call_id: None }
    }

    fn ask(
        model: &str,
        messages: Vec<ChatMessage>,
        tools: Vec<ToolSpec>,
    ) -> ProviderCompleteParams {
        ProviderCompleteParams {
            provider_id: String::new(),
            model: model.into(),
            messages,
            tools,
            traceparent: None,
        }
    }

    fn hello() -> ProviderCompleteParams {
        ask("default", vec![say(Role::System, "Be brief."), say(Role::User, "hello")], vec![])
    }

    fn remote(e: Error) -> ErrorObject {
        match e {
            Error::Remote(e) => e,
            other => panic!("expected an error answer, got {other:?}"),
        }
    }

    #[tokio::test]
    async fn registers_the_configured_provider_and_answers_plainly() {
        let server = TestServer::start(Reply::json(
            200,
            json!({"choices": [{"message": {"role": "assistant", "content": "Hi there."}}],
                   "usage": {"prompt_tokens": 9, "completion_tokens": 2}}),
        ))
        .await;
        let kernel = start_for(
            &server,
            json!({"provider_id": "local", "models": ["llama3", "qwen3"], "api_key": "sk-secret",
                   "stream": false}),
        )
        .await;
        let providers = kernel.providers();
        assert_eq!(providers.len(), 1);
        assert_eq!(providers[0].provider_id, "local");
        assert_eq!(providers[0].models, ["llama3", "qwen3"]);
        assert_eq!(kernel.manifest().unwrap().capabilities.providers, ["*"]);

        let done = kernel.complete("local", hello()).await.unwrap();
        assert_eq!(done.message.content, "Hi there.");
        assert_eq!(done.message.tool_calls, None);
        assert_eq!(
            Value::Object(done.usage.unwrap()),
            json!({"promptTokens": 9, "completionTokens": 2})
        );

        let requests = server.requests();
        assert_eq!(requests.len(), 1);
        let request = &requests[0];
        assert_eq!(
            (request.method.as_str(), request.path.as_str()),
            ("POST", "/v1/chat/completions")
        );
        assert_eq!(request.header("authorization"), Some("Bearer sk-secret"));
        assert!(request.header("content-type").unwrap().starts_with("application/json"));
        assert_eq!(
            request.json(),
            json!({"model": "llama3", "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": "hello"},
            ]})
        );

        let other = kernel.complete("openai", hello()).await.unwrap_err();
        assert_eq!(other.code(), Some(ErrorCode::NotFound));
    }

    #[tokio::test]
    async fn maps_a_tool_round_trip() {
        // Streamed (the default): the call's id and name, its arguments in two pieces.
        let events = [
            json!({"role": "assistant", "content": null, "tool_calls": [{"index": 0,
                "id": "call_9", "type": "function", "function": {"name": "clock_now", "arguments": ""}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"tz\":"}}]}),
            json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Europe/Paris\"}"}}]}),
        ];
        let mut body: Vec<String> = events
            .iter()
            .map(|delta| {
                format!("data: {}\n\n", json!({"choices": [{"index": 0, "delta": delta}]}))
            })
            .collect();
        body.push("data: {\"choices\": [{\"index\": 0, \"delta\": {}, \"finish_reason\": \"tool_calls\"}]}\n\n".into());
        body.push("data: [DONE]\n\n".into());
        let server = TestServer::start(Reply::stream(&body, End::Complete)).await;
        let kernel = start_for(&server, json!({})).await;
        let clock = ToolSpec {
            name: "clock_now".into(),
            description: "The time".into(),
            input_schema: json!({"type": "object", "properties": {"tz": {"type": "string"}}}),
        };
        let earlier =
            ToolCallRequest { id: "call-1".into(), name: "clock_now".into(), arguments: json!({}) };
        let messages = vec![
            say(Role::User, "time?"),
            ChatMessage { tool_calls: Some(vec![earlier]), ..say(Role::Assistant, "") },
            ChatMessage {
                tool_call_id: Some("call-1".into()),
                ..say(Role::Tool, "{\"unixMs\":1}")
            },
            say(Role::User, "and in Paris?"),
        ];
        let done = kernel.complete("openai", ask("qwen3", messages, vec![clock])).await.unwrap();
        assert_eq!(done.message.content, "");
        let call = ToolCallRequest {
            id: "call_9".into(),
            name: "clock_now".into(),
            arguments: json!({"tz": "Europe/Paris"}),
        };
        assert_eq!(done.message.tool_calls, Some(vec![call]));
        assert_eq!(done.usage, None);

        let request = &server.requests()[0];
        assert_eq!(request.header("authorization"), None);
        assert_eq!(
            request.json(),
            json!({
                "model": "qwen3",
                "stream": true,
                "stream_options": {"include_usage": true},
                "messages": [
                    {"role": "user", "content": "time?"},
                    {"role": "assistant", "content": "", "tool_calls": [{"id": "call-1", "type": "function",
                        "function": {"name": "clock_now", "arguments": "{}"}}]},
                    {"role": "tool", "tool_call_id": "call-1", "content": "{\"unixMs\":1}"},
                    {"role": "user", "content": "and in Paris?"},
                ],
                "tools": [{"type": "function", "function": {"name": "clock_now", "description": "The time",
                    "parameters": {"type": "object", "properties": {"tz": {"type": "string"}}}}}],
            })
        );
    }

    #[tokio::test]
    async fn an_error_status_is_reported_with_the_servers_message() {
        let server = TestServer::start(Reply::json(
            500,
            json!({"error": {"message": "out of memory loading model", "type": "server_error"}}),
        ))
        .await;
        let kernel = start_for(&server, json!({})).await;
        let e = remote(kernel.complete("openai", hello()).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::UnknownError);
        let url = format!("{}/chat/completions", server.base_url());
        assert_eq!(
            e.message,
            format!(
                "the model server at {url} answered HTTP 500 Internal Server Error: out of memory loading model"
            )
        );
        assert_eq!(e.data.as_ref().unwrap()["status"], 500);
        assert_eq!(e.data.as_ref().unwrap()["url"], url);
    }

    #[tokio::test]
    async fn a_malformed_answer_is_an_error() {
        let server = TestServer::start(Reply::text(200, "{\"choices\": [{\"message\": ")).await;
        let kernel = start_for(&server, json!({})).await;
        let e = remote(kernel.complete("openai", hello()).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::UnknownError);
        assert!(e.message.contains("not a chat completion"), "{}", e.message);
    }

    #[tokio::test]
    async fn an_unreachable_server_is_an_error_naming_the_url() {
        let port = closed_port().await;
        let base_url = format!("http://127.0.0.1:{port}/v1");
        let kernel = start(
            json!({"base_url": base_url, "model": "m", "timeout_ms": 5000}),
            Overrides::default(),
        )
        .await;
        kernel.wait_calls("capability.register", 1, WAIT).await.unwrap();
        let e = remote(kernel.complete("openai", hello()).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::UnknownError);
        let expected =
            format!("cannot connect to the model server at {base_url}/chat/completions: ");
        assert!(e.message.starts_with(&expected), "{}", e.message);
        assert!(e.message.contains("refused"), "{}", e.message);
    }

    #[tokio::test]
    async fn a_silent_server_times_out() {
        let server = TestServer::start(Reply::Silent).await;
        let kernel = start_for(&server, json!({"timeout_ms": 200})).await;
        let e = remote(kernel.complete("openai", hello()).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::Timeout);
        assert!(e.message.contains("did not answer within 200 ms"), "{}", e.message);
    }

    #[tokio::test]
    async fn no_model_at_all_is_invalid_params() {
        let server = TestServer::start(Reply::json(200, json!({}))).await;
        let kernel = start_for(&server, json!({"model": ""})).await;
        assert_eq!(kernel.providers()[0].models, Vec::<String>::new());
        let e = remote(kernel.complete("openai", hello()).await.unwrap_err());
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert!(server.requests().is_empty());
    }

    #[tokio::test]
    async fn the_command_line_overrides_and_narrows_the_manifest() {
        let overrides = Overrides {
            base_url: Some("http://127.0.0.1:9/v1".into()),
            provider_id: Some("mine".into()),
        };
        let kernel = start(json!({"provider_id": "ignored", "model": "m"}), overrides).await;
        kernel.wait_calls("capability.register", 1, WAIT).await.unwrap();
        assert_eq!(kernel.manifest().unwrap().capabilities.providers, ["mine"]);
        assert_eq!(kernel.providers()[0].provider_id, "mine");
    }

    #[tokio::test]
    async fn a_bad_configuration_registers_nothing() {
        let kernel = start(json!({"timeout_ms": -1}), Overrides::default()).await;
        // Give the ready task time to (not) register.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(kernel.capabilities().is_empty());
        let e = remote(kernel.complete("openai", hello()).await.unwrap_err());
        assert!(e.message.contains("not configured"), "{}", e.message);
    }
}
