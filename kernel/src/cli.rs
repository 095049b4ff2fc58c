//! The `burrow` command line: `kernel` runs a kernel; `info`, `apps` and `call` are
//! clients of a running one.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

mod apps;
mod client;
mod config;
mod host;
mod kernels;
mod logging;
mod mcp;
mod mcp_serve;
mod ops;
pub mod rpc;
mod sessions;
mod token;

/// Burrow: an actor-model microkernel for AI-agent apps.
///
/// Run a kernel with `burrow kernel`; talk to it with the other commands. Clients find the
/// kernel through `--socket` or `BURROW_SOCKET`, else the default socket
/// (`$XDG_RUNTIME_DIR/burrow/kernel.sock`, else `<state dir>/run/kernel.sock`).
#[derive(Debug, Parser)]
#[command(name = "burrow", version, propagate_version = true)]
pub struct Cli {
    /// The kernel's socket.
    #[arg(long, global = true, env = "BURROW_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,

    /// Print results as the kernel's JSON, and errors as JSON objects
    /// (`{code, message, data?}`) rather than sentences.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the kernel in the foreground until SIGTERM or Ctrl-C.
    Kernel(KernelArgs),
    /// Show the running kernel's version, uptime and counts.
    Info,
    /// List the live apps with their state and version.
    ///
    /// Managed apps (those with `[apps.<id>.run]`) show their process state: starting,
    /// running, restarting, failed or stopped; others show connected-unmanaged.
    Apps {
        #[command(subcommand)]
        action: Option<AppsAction>,
    },
    /// Show a managed app's captured stdout/stderr.
    Logs {
        /// The app id.
        id: String,
        /// Keep printing new lines as they come.
        #[arg(short, long)]
        follow: bool,
        /// How many of the last lines to print first.
        #[arg(long, default_value_t = 100)]
        lines: usize,
    },
    /// Internal: become a managed app (used by the kernel's supervisor).
    #[command(name = "__exec", hide = true)]
    Exec {
        /// The kernel's pid: the child exits if it is no longer its parent.
        #[arg(long)]
        parent_pid: u32,
        /// The program and its arguments.
        #[arg(last = true, required = true)]
        command: Vec<String>,
    },
    /// Call any kernel method and print its result as JSON.
    ///
    /// Exits 0 with the result on stdout, or 1 with the error on stderr (a sentence, or
    /// with `--json` the error object `{code, message, data?}`).
    Call {
        /// The method, e.g. `kernel.info`.
        method: String,
        /// The params as a JSON object (default `{}`).
        params: Option<String>,
        /// How long to wait for the answer.
        #[arg(long, default_value_t = 30_000, value_name = "MS")]
        timeout_ms: u64,
        /// Register as a short-lived app first (needed for app methods such as
        /// `tool.call` or gateway methods).
        #[arg(long)]
        register: bool,
    },
    /// List the tools apps provide.
    Tools,
    /// Show hook subscriptions and interceptors, per app.
    Hooks,
    /// Call a tool through the kernel (passing its interceptors) and print the result.
    ///
    /// Exits 0 with the result on stdout; 1 when the tool reports `isError` (result on
    /// stdout) or the call fails (the error on stderr).
    CallTool {
        /// The tool's name.
        name: String,
        /// The arguments as a JSON object (default `{}`).
        arguments: Option<String>,
        /// How long to wait for the answer.
        #[arg(long, default_value_t = 60_000, value_name = "MS")]
        timeout_ms: u64,
    },
    /// Read the kernel's configuration.
    Config {
        #[command(subcommand)]
        command: ConfigCommand,
    },
    /// List sessions, newest activity first.
    Sessions(sessions::ListArgs),
    /// Print a session's transcript, oldest first.
    History(sessions::HistoryArgs),
    /// Send a message into a session (as `message.dispatch`) and print what it started.
    ///
    /// With `--wait`, also wait for the agent run and print its output; exits 1 when the
    /// run failed (its error on stderr).
    Send(sessions::SendArgs),
    /// Chat with a session's agent from the terminal.
    ///
    /// Holds the terminal channel `terminal-<KEY>` for the session and sends each line
    /// typed as a message; the agent's replies are printed as `agent: ...`, and what
    /// others put into the session (comms, external events, other channels' messages) as
    /// `<< ...`. A session keeps the channel it was created with: its replies show here
    /// when it was created by this chat (or an earlier one on the same key). `/help` lists
    /// the chat's commands (`/tools`, `/history`, `/sessions`, `/switch KEY`, `/quit`);
    /// any other line, `/tool NAME {args}` among them, goes to the agent. One chat per
    /// session at a time. End of input or Ctrl-C leaves.
    Chat(sessions::ChatArgs),
    /// Create a session with PROMPT as its first turn and print the answer.
    ///
    /// With `--keep-alive` the session stays resident and the command keeps following it
    /// (until Ctrl-C): messages from peers, external events, and the agent's answers.
    Run(host::RunArgs),
    /// Serve JSON-RPC 2.0 on stdin/stdout (one JSON object per line), answered by the
    /// running kernel: the host methods (`session/create`, `comms/send`, ...) and
    /// registered gateway methods.
    Rpc,
    /// Manage host tokens for `--rpc-tcp` and `--http`.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// The MCP servers the bundled `mcp` app mounts (docs/mcp.md).
    Mcp {
        #[command(subcommand)]
        action: mcp::McpAction,
    },
    /// Manage the kernels this one trusts (default: list them).
    #[command(alias = "peers")]
    Kernels {
        #[command(subcommand)]
        action: Option<kernels::KernelsAction>,
    },
    /// Print a shell completion script: `burrow completions bash > ~/.local/share/bash-completion/completions/burrow`.
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
    /// Append a durable external event to a session and wake it; prints the receipt.
    Event {
        /// The session key (a host's `session_id`).
        session: String,
        /// The event type, e.g. `deploy_complete`.
        event_type: String,
        /// The payload as JSON.
        payload: String,
        /// Makes a retry safe: an event stored before with this key is not stored again
        /// (the receipt says `deduplicated`).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum AppsAction {
    /// Start a managed app that is stopped or failed.
    Start {
        /// The app id.
        id: String,
    },
    /// Stop a managed app (SIGTERM, then SIGKILL) and keep it stopped.
    Stop {
        /// The app id.
        id: String,
    },
    /// Restart a managed app.
    Restart {
        /// The app id.
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Create a token and print it once (only its hash is kept); a running kernel
    /// accepts it at once.
    Create {
        /// The kernel's state directory [default: $XDG_STATE_HOME/burrow].
        #[arg(long, env = "BURROW_STATE_DIR", value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Print the value in force at a dotted path (the whole configuration without one),
    /// defaults included, as JSON; `null` when absent.
    Get {
        /// A dotted path, e.g. `ipc.heartbeat_timeout_ms`.
        path: Option<String>,
        /// One line per value, with where it was set: `FILE:LINE` or `built-in default`.
        #[arg(long)]
        origin: bool,
    },
    /// Check a configuration file as the kernel would load it, without starting one;
    /// prints the apps and agents it would run, or why it would be refused (exit 1).
    Check {
        /// The file.
        file: PathBuf,
        /// The kernel's state directory [default: $XDG_STATE_HOME/burrow].
        #[arg(long, env = "BURROW_STATE_DIR", value_name = "DIR")]
        state_dir: Option<PathBuf>,
    },
}

/// Arguments of `burrow kernel`.
#[derive(Debug, clap::Args)]
struct KernelArgs {
    /// Where the kernel keeps its key and state [default: $XDG_STATE_HOME/burrow].
    #[arg(long, env = "BURROW_STATE_DIR", value_name = "DIR")]
    state_dir: Option<PathBuf>,
    /// The TOML configuration file [default: $XDG_CONFIG_HOME/burrow/burrow.toml if it exists].
    #[arg(long, env = "BURROW_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log format on stderr (the level comes from RUST_LOG, default `info`).
    #[arg(long, value_enum, default_value_t = LogFormat::Human)]
    log_format: LogFormat,
    /// Serve JSON-RPC 2.0 for hosts (one JSON object per line) on this TCP address (a
    /// bare port means 127.0.0.1). Off loopback, clients must authenticate with a token
    /// (`burrow token create`).
    #[arg(long, value_name = "ADDR", value_parser = tcp_addr)]
    rpc_tcp: Option<std::net::SocketAddr>,
    /// Serve REST (and server-sent events, apps' HTTP routes) on this TCP address (a bare
    /// port means 127.0.0.1). Off loopback, requests need `Authorization: Bearer <token>`.
    #[arg(long, value_name = "ADDR", value_parser = tcp_addr)]
    http: Option<std::net::SocketAddr>,
    /// Listen for signed envelopes from other kernels on this TCP address (a bare port
    /// means 127.0.0.1).
    #[arg(long, value_name = "ADDR", value_parser = tcp_addr)]
    comms_listen_tcp: Option<std::net::SocketAddr>,
    /// The `HOST:PORT` other kernels dial (port 0: the bound port) [default: the bound
    /// address].
    #[arg(long, value_name = "HOST:PORT")]
    comms_advertise_tcp: Option<String>,
    /// Write this kernel's binding file (its key and address, mode 0600) here, for
    /// `burrow kernels trust` on other kernels.
    #[arg(long, value_name = "FILE")]
    comms_binding_out: Option<PathBuf>,
}

/// `HOST:PORT`, or a bare port on loopback.
fn tcp_addr(text: &str) -> Result<std::net::SocketAddr, String> {
    if let Ok(port) = text.parse::<u16>() {
        return Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)));
    }
    text.parse().map_err(|_| format!("{text:?} is not an address like 127.0.0.1:7400 or a port"))
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Readable lines.
    Human,
    /// One JSON object per line.
    Json,
}

/// Runs the CLI.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Command::Exec { parent_pid, command } = &cli.command {
        let (program, args) = command.split_first().expect("clap requires a command");
        return ExitCode::from(
            crate::supervisor::process::exec_child(*parent_pid, program, args) as u8
        );
    }
    if !matches!(cli.command, Command::Kernel(_)) {
        quit_quietly_on_a_closed_pipe();
    }
    if let Command::Completions { shell } = cli.command {
        let mut command = <Cli as clap::CommandFactory>::command();
        clap_complete::generate(shell, &mut command, "burrow", &mut std::io::stdout());
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("burrow: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let json = cli.json;
    client::errors_as_json(json);
    runtime.block_on(async move {
        match cli.command {
            Command::Kernel(args) => run_kernel(cli.socket, args).await,
            Command::Info => client::info(cli.socket, json).await,
            Command::Apps { action: None } => apps::list(cli.socket, json).await,
            Command::Apps { action: Some(action), .. } => {
                let (verb, id) = match action {
                    AppsAction::Start { id } => ("start", id),
                    AppsAction::Stop { id } => ("stop", id),
                    AppsAction::Restart { id } => ("restart", id),
                };
                apps::control(cli.socket, verb, &id).await
            }
            Command::Logs { id, follow, lines } => apps::logs(cli.socket, &id, follow, lines).await,
            Command::Exec { .. } | Command::Completions { .. } => {
                unreachable!("handled before the runtime starts")
            }
            Command::Call { method, params, timeout_ms, register } => {
                client::call(cli.socket, &method, params.as_deref(), timeout_ms, register).await
            }
            Command::Run(args) => host::run(cli.socket, args, json).await,
            Command::Kernels { action } => kernels::run(cli.socket, action, json).await,
            Command::Mcp { action } => mcp::run(cli.socket, action, json).await,
            Command::Rpc => rpc::run_stdio(cli.socket, "burrow").await,
            Command::Token { action: TokenAction::Create { state_dir } } => {
                token::create(&state_dir.unwrap_or_else(burrow_sdk::transport::default_state_dir))
            }
            Command::Event { session, event_type, payload, idempotency_key } => {
                let event = host::EventArgs { session, event_type, payload, idempotency_key };
                host::event(cli.socket, event).await
            }
            Command::Tools => ops::tools(cli.socket, json).await,
            Command::Hooks => ops::hooks(cli.socket, json).await,
            Command::CallTool { name, arguments, timeout_ms } => {
                ops::call_tool(cli.socket, &name, arguments.as_deref(), timeout_ms).await
            }
            Command::Config { command: ConfigCommand::Get { path, origin } } => {
                config::get(cli.socket, path.as_deref(), origin).await
            }
            Command::Config { command: ConfigCommand::Check { file, state_dir } } => {
                let state_dir = state_dir.unwrap_or_else(burrow_sdk::transport::default_state_dir);
                config::check(&file, &state_dir)
            }
            Command::Sessions(args) => sessions::list(cli.socket, args, json).await,
            Command::History(args) => sessions::history(cli.socket, args, json).await,
            Command::Send(args) => sessions::send(cli.socket, args, json).await,
            Command::Chat(args) => sessions::chat(cli.socket, args).await,
        }
    })
}

async fn run_kernel(socket: Option<PathBuf>, args: KernelArgs) -> ExitCode {
    let log_format = args.log_format;
    logging::init(log_format);
    let state_dir = args.state_dir.unwrap_or_else(burrow_sdk::transport::default_state_dir);
    let socket = socket.unwrap_or_else(|| burrow_sdk::transport::default_socket_path(&state_dir));
    let config_path = args.config.or_else(default_config_file);
    let listen = crate::endpoints::Listen {
        rpc_tcp: args.rpc_tcp,
        http: args.http,
        comms_listen: args.comms_listen_tcp,
        comms_advertise: args.comms_advertise_tcp,
        comms_binding_out: args.comms_binding_out,
    };
    let settings = crate::server::Settings { socket, state_dir, config_path, listen };
    match crate::server::run(settings, shutdown_signal()).await {
        Ok(()) => ExitCode::SUCCESS,
        // Said once: as a log record where the log is for machines, else as a sentence.
        Err(e) if log_format == LogFormat::Json => {
            tracing::error!("{e}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("burrow: {e}");
            ExitCode::FAILURE
        }
    }
}

/// A client command whose output goes to a reader that quit (`burrow ... | head`) ends
/// quietly, as other command-line tools do, with the status of a SIGPIPE death (141),
/// rather than with a panic's message and backtrace. (Rust ignores SIGPIPE, so the
/// failed print panics; the kernel keeps that: a dead peer is an error it handles.)
fn quit_quietly_on_a_closed_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let message = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if message.starts_with("failed printing to stdout") && message.contains("Broken pipe") {
            std::process::exit(141);
        }
        default(info);
    }));
}

/// `$XDG_CONFIG_HOME/burrow/burrow.toml` (else `~/.config/...`), when it exists.
fn default_config_file() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")))?;
    Some(base.join("burrow").join("burrow.toml")).filter(|p| p.is_file())
}

/// Resolves on SIGTERM or Ctrl-C (SIGINT). The handlers are installed now, not when the
/// future is first polled: the socket accepts connections before the kernel waits on
/// this, and a SIGTERM in between must stop it gracefully rather than kill it.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let term = signal(SignalKind::terminate());
        let int = signal(SignalKind::interrupt());
        async move {
            for e in [term.as_ref().err(), int.as_ref().err()].into_iter().flatten() {
                tracing::warn!(error = %e, "cannot watch a stop signal");
            }
            let wait = |s: std::io::Result<tokio::signal::unix::Signal>| async move {
                match s {
                    Ok(mut s) => {
                        s.recv().await;
                    }
                    Err(_) => std::future::pending().await,
                }
            };
            if term.is_err() && int.is_err() {
                let _ = tokio::signal::ctrl_c().await;
                return;
            }
            tokio::select! {
                _ = wait(term) => {}
                _ = wait(int) => {}
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::tcp_addr;

    #[test]
    fn a_bare_port_is_on_loopback() {
        assert_eq!(tcp_addr("7400").unwrap().to_string(), "127.0.0.1:7400");
        assert_eq!(tcp_addr("0.0.0.0:80").unwrap().to_string(), "0.0.0.0:80");
        assert_eq!(tcp_addr("[::1]:9").unwrap().to_string(), "[::1]:9");
        assert!(tcp_addr("example.com:80").is_err());
    }
}
