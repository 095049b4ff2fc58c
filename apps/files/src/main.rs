//! `burrow-files`: a Burrow app that lets agents look at one directory, read-only, with
//! two tools:
//! - `list_files {path?}` → `{content: [{name, kind: "file"|"dir", size}]}`: the entries
//!   of a directory (default: the root), sorted by name, at most 10 000; `size` is in
//!   bytes (0 for a directory); symlinks count as what they lead to, and links leading
//!   outside the root (or nowhere), sockets and devices are left out;
//! - `read_file {path, maxBytes?}` → `{content: "<text>"}`: the first `maxBytes` bytes
//!   (default 256 KiB, at most 4 MiB) of a file, cut back to a whole character; a file
//!   that is not UTF-8 text is an error.
//!
//! Paths are relative to the root; an absolute path must lie under it. Any path that
//! leads outside — by `..`, as an absolute path elsewhere, or through a symlink — is
//! refused: the path is canonicalized (every link resolved) and must stay under the
//! canonical root (see `root.rs`). Refusals, missing files and bad arguments answer
//! `{content: "<message>", isError: true}`.
//!
//! The root is `--root DIR`, else the string `apps.<id>.root` of the kernel's
//! configuration (read with `config.get` when the app is first ready; relative to the
//! app's working directory), else the working directory. It is settled once per process.
//!
//! Usage: `burrow-files [--id ID] [--socket PATH] [--root DIR]`. The id defaults to
//! `BURROW_APP_ID`, else `files`; the socket to `BURROW_SOCKET`, else the default socket.
//! Logs go to stderr (`RUST_LOG`, default `info`); stdout carries the lines scripts wait
//! for: `burrow-files: ready as <appId>`, then `burrow-files: leaving` (Ctrl-C/SIGTERM)
//! or `burrow-files: kernel asked us to shut down`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use burrow_example_common::{Example, say};
use burrow_sdk::{App, Client, ErrorObject, Manifest, ToolResult, Value};
use serde::Deserialize;
use serde_json::json;
use tokio::sync::OnceCell;

mod root;

use root::Root;

const EXAMPLE: Example = Example::new("burrow-files", "files").flags("[--root DIR]");
/// What `read_file` reads when `maxBytes` is not given.
const DEFAULT_MAX_BYTES: u64 = 256 * 1024;

/// Arguments of `list_files`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ListArgs {
    #[serde(default)]
    path: Option<String>,
}

/// Arguments of `read_file`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ReadArgs {
    path: String,
    #[serde(default)]
    max_bytes: Option<u64>,
}

/// Where the root comes from: fixed on the command line, or read from the configuration
/// once, when first needed.
#[derive(Debug)]
struct Shared {
    fixed: Option<Root>,
    configured: OnceCell<Root>,
}

impl Shared {
    /// The root, reading the configuration through `client` if it is not settled yet.
    async fn root(&self, client: &Client) -> Result<&Root, String> {
        if let Some(root) = &self.fixed {
            return Ok(root);
        }
        self.configured
            .get_or_try_init(|| async {
                let own = client
                    .config_get(None)
                    .await
                    .map_err(|e| format!("cannot read the configuration: {e}"))?;
                let dir = match own.get("root") {
                    None | Some(Value::Null) => PathBuf::from("."),
                    Some(Value::String(dir)) => PathBuf::from(dir),
                    Some(other) => {
                        return Err(format!("apps.<id>.root must be a string, not {other}"));
                    }
                };
                let root = Root::new(&dir)
                    .map_err(|e| format!("the root {} is unusable: {e}", dir.display()))?;
                tracing::info!(root = %root.dir().display(), "serving files");
                Ok(root)
            })
            .await
    }
}

fn failure(message: String) -> ToolResult {
    ToolResult { content: Value::String(message), is_error: Some(true) }
}

/// Runs `work` on the root, on the blocking pool, turning refusals into error results.
async fn with_root<T: serde::Serialize + Send + 'static>(
    shared: &Shared,
    client: &Client,
    work: impl FnOnce(&Root) -> Result<T, String> + Send + 'static,
) -> Result<ToolResult, ErrorObject> {
    let root = match shared.root(client).await {
        Ok(root) => root.clone(),
        Err(message) => return Ok(failure(message)),
    };
    let done = tokio::task::spawn_blocking(move || work(&root)).await;
    Ok(match done {
        Ok(Ok(content)) => ToolResult { content: json!(content), is_error: None },
        Ok(Err(message)) => failure(message),
        Err(e) => failure(format!("the file operation failed: {e}")),
    })
}

fn parse<T: serde::de::DeserializeOwned>(arguments: Value) -> Result<T, ToolResult> {
    serde_json::from_value(arguments).map_err(|e| failure(format!("invalid arguments: {e}")))
}

fn app(id: String, root: Option<Root>) -> App {
    let mut manifest = Manifest::new(id, env!("CARGO_PKG_VERSION"));
    manifest.description = Some("Read-only access to one directory".to_owned());
    let shared = Arc::new(Shared { fixed: root, configured: OnceCell::new() });
    let (list, read, ready) = (shared.clone(), shared.clone(), shared);
    App::new(manifest)
        .tool(
            "list_files",
            "List a directory of the shared files: name, kind (file or dir) and size of each entry",
            json!({"type": "object", "properties": {
                "path": {"type": "string", "description": "relative to the shared directory; default: its top"}
            }}),
            move |arguments, cx| {
                let shared = list.clone();
                async move {
                    let args: ListArgs = match parse(arguments) {
                        Ok(args) => args,
                        Err(failed) => return Ok(failed),
                    };
                    let path = args.path.unwrap_or_default();
                    with_root(&shared, cx.client(), move |root| root.list(&path)).await
                }
            },
        )
        .tool(
            "read_file",
            "Read a text file of the shared files (UTF-8), up to maxBytes bytes (default 256 KiB)",
            json!({"type": "object", "required": ["path"], "properties": {
                "path": {"type": "string", "description": "relative to the shared directory"},
                "maxBytes": {"type": "integer", "minimum": 0}
            }}),
            move |arguments, cx| {
                let shared = read.clone();
                async move {
                    let args: ReadArgs = match parse(arguments) {
                        Ok(args) => args,
                        Err(failed) => return Ok(failed),
                    };
                    let max = args.max_bytes.unwrap_or(DEFAULT_MAX_BYTES);
                    with_root(&shared, cx.client(), move |root| root.read(&args.path, max)).await
                }
            },
        )
        .on_ready(move |client| {
            let shared = ready.clone();
            async move {
                if let Err(e) = shared.root(&client).await {
                    tracing::error!(error = %e, "no usable root; the tools answer with errors");
                }
                say(&format!("burrow-files: ready as {}", client.app_id().unwrap_or_default()));
            }
        })
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut root_flag = None;
    let args = EXAMPLE.start_with(|flag| match flag.name() {
        "--root" => {
            root_flag = Some(flag.value()?);
            Ok(())
        }
        _ => Err(flag.unknown()),
    });
    let root = match root_flag.as_deref().map(|dir| (dir, Root::new(Path::new(dir)))) {
        None => None,
        Some((_, Ok(root))) => Some(root),
        Some((dir, Err(e))) => {
            eprintln!("burrow-files: --root {dir}: {e}");
            return ExitCode::from(2);
        }
    };
    EXAMPLE.run(app(args.id, root), args.socket).await
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use burrow_sdk::testing::FakeKernel;

    use super::*;

    const WAIT: Duration = Duration::from_secs(10);

    fn tree() -> tempfile::TempDir {
        let top = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(top.path().join("shared/docs")).unwrap();
        std::fs::write(top.path().join("secret.txt"), "top secret").unwrap();
        std::fs::write(top.path().join("shared/docs/readme.md"), "# Hi\n").unwrap();
        std::os::unix::fs::symlink("../secret.txt", top.path().join("shared/leak.txt")).unwrap();
        top
    }

    fn is_refusal(result: &ToolResult) -> bool {
        result.is_error == Some(true)
            && result.content.as_str().is_some_and(|m| m.starts_with("refused:"))
    }

    #[tokio::test]
    async fn the_tools_serve_the_root_given_on_the_command_line() {
        let top = tree();
        let root = Root::new(&top.path().join("shared")).unwrap();
        let (kernel, transport) = FakeKernel::new();
        let running =
            tokio::spawn(app("files".into(), Some(root)).run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        let names: Vec<String> = kernel.capabilities().into_iter().map(|c| c.name).collect();
        assert_eq!(names, ["list_files", "read_file"]);

        let top_level = kernel.invoke_tool("list_files", json!({})).await.unwrap();
        assert_eq!(top_level.content, json!([{"name": "docs", "kind": "dir", "size": 0}]));
        let docs = kernel.invoke_tool("list_files", json!({"path": "docs"})).await.unwrap();
        assert_eq!(docs.content, json!([{"name": "readme.md", "kind": "file", "size": 5}]));
        let text =
            kernel.invoke_tool("read_file", json!({"path": "docs/readme.md"})).await.unwrap();
        assert_eq!((text.content, text.is_error), (json!("# Hi\n"), None));
        let head = json!({"path": "docs/readme.md", "maxBytes": 1});
        assert_eq!(kernel.invoke_tool("read_file", head).await.unwrap().content, json!("#"));

        for arguments in [
            json!({"path": "../secret.txt"}),
            json!({"path": "leak.txt"}),
            json!({"path": top.path().join("secret.txt")}),
        ] {
            let answer = kernel.invoke_tool("read_file", arguments.clone()).await.unwrap();
            assert!(is_refusal(&answer), "{arguments}: {answer:?}");
        }
        let up = kernel.invoke_tool("list_files", json!({"path": ".."})).await.unwrap();
        assert!(is_refusal(&up), "{up:?}");

        let missing = kernel.invoke_tool("read_file", json!({})).await.unwrap();
        assert_eq!(missing.is_error, Some(true));
        assert!(missing.content.as_str().unwrap().contains("invalid arguments"), "{missing:?}");
        let typo = kernel.invoke_tool("read_file", json!({"path": "x", "max": 1})).await.unwrap();
        assert_eq!(typo.is_error, Some(true));

        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn without_a_flag_the_root_comes_from_the_configuration() {
        let top = tree();
        let (kernel, transport) = FakeKernel::new();
        let shared = top.path().join("shared/docs").display().to_string();
        kernel.set_config(json!({"apps": {"files": {"root": shared}}}));
        let running =
            tokio::spawn(app("files".into(), None).run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        let listed = kernel.invoke_tool("list_files", json!({})).await.unwrap();
        assert_eq!(listed.content, json!([{"name": "readme.md", "kind": "file", "size": 5}]));
        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn with_no_root_configured_the_working_directory_is_served() {
        let (kernel, transport) = FakeKernel::new();
        let running =
            tokio::spawn(app("files".into(), None).run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        // `cargo test` runs in the package's directory.
        let manifest =
            kernel.invoke_tool("read_file", json!({"path": "Cargo.toml"})).await.unwrap();
        assert!(manifest.content.as_str().unwrap().contains("name = \"burrow-files\""));
        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_bad_configured_root_makes_every_call_an_error() {
        let (kernel, transport) = FakeKernel::new();
        kernel.set_config(json!({"apps": {"files": {"root": 7}}}));
        let running =
            tokio::spawn(app("files".into(), None).run_on(transport, std::future::pending()));
        kernel.wait_ready(WAIT).await.unwrap();
        let answer = kernel.invoke_tool("list_files", json!({})).await.unwrap();
        assert_eq!(answer.is_error, Some(true));
        assert!(answer.content.as_str().unwrap().contains("must be a string"), "{answer:?}");
        kernel.shutdown_app().await.unwrap();
        running.await.unwrap().unwrap();
    }
}
