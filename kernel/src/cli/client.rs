//! The client commands `info` and `call`, and the shared connect/print helpers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use burrow_protocol::methods::Empty;
use burrow_protocol::methods::app::KernelInfo;
use std::sync::atomic::{AtomicBool, Ordering};

use burrow_protocol::{ErrorCode, ErrorObject, Value, now_ms};
use burrow_sdk::{Client, Error};

/// Whether errors are printed as JSON objects (`--json`) rather than sentences.
static JSON_ERRORS: AtomicBool = AtomicBool::new(false);

/// Sets how errors are printed for the rest of the command.
pub(super) fn errors_as_json(on: bool) {
    JSON_ERRORS.store(on, Ordering::Relaxed);
}

/// Connects to the kernel, kept alive for as long as the command runs (a followed log,
/// a chat, a long wait: the kernel drops a connection that says nothing). Exit 2 when no
/// kernel answers.
pub(super) async fn connect(socket: Option<PathBuf>) -> Result<Client, ExitCode> {
    let path = socket.unwrap_or_else(burrow_sdk::transport::socket_from_env);
    let client = Client::connect(&path).await.map_err(|e| {
        unreachable_kernel(&path, &e);
        ExitCode::from(2)
    })?;
    client.keep_alive();
    Ok(client)
}

pub(super) fn print_json(value: &impl serde::Serialize) {
    match serde_json::to_string_pretty(value) {
        Ok(text) => println!("{text}"),
        Err(e) => eprintln!("burrow: cannot print result: {e}"),
    }
}

/// Says that no kernel answers at `path`, with what to do about it.
pub(super) fn unreachable_kernel(path: &std::path::Path, e: &dyn std::fmt::Display) {
    let message = format!("cannot reach the kernel at {}: {e}", path.display());
    let hint = "is `burrow kernel` running? Start it, or point --socket (or BURROW_SOCKET) \
                at the socket it listens on";
    report(&ErrorObject::new(ErrorCode::ConnectionClosed, message), Some(hint));
}

/// Prints an error and exits 1: `burrow: <what went wrong> (<CODE>)` with a hint where
/// one helps, or with `--json` the error object (`{code, message, data?}`).
pub(super) fn fail(e: Error) -> ExitCode {
    fail_with(e, None)
}

/// [`fail`] with a hint of the command's own, shown instead of the code's.
pub(super) fn fail_with(e: Error, hint: Option<&str>) -> ExitCode {
    let obj = match e {
        Error::Remote(obj) => obj,
        other => {
            ErrorObject::new(other.code().unwrap_or(ErrorCode::UnknownError), other.to_string())
        }
    };
    report(&obj, hint.or_else(|| hint_for(obj.code)));
    ExitCode::FAILURE
}

/// Prints `obj` as the command's error.
pub(super) fn report(obj: &ErrorObject, hint: Option<&str>) {
    if JSON_ERRORS.load(Ordering::Relaxed) {
        eprintln!("{}", serde_json::to_string(obj).unwrap_or_default());
        return;
    }
    eprintln!("{}", sentence(obj));
    if let Some(hint) = hint {
        eprintln!("hint: {hint}");
    }
}

/// An error as a line for people.
fn sentence(obj: &ErrorObject) -> String {
    format!("burrow: {} ({})", obj.message.trim_end_matches('.'), obj.code.as_str())
}

/// What to do next, for the errors where the code alone says it.
fn hint_for(code: ErrorCode) -> Option<&'static str> {
    Some(match code {
        ErrorCode::ConnectionClosed => {
            "the kernel closed the connection: is `burrow kernel` still running? (`burrow info`)"
        }
        ErrorCode::Timeout => {
            "nothing answered in time: `burrow apps` shows whether the app that should is running"
        }
        ErrorCode::AppNotRegistered => "this method is for registered apps",
        _ => return None,
    })
}

/// `burrow info`.
pub async fn info(socket: Option<PathBuf>, json: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.call::<KernelInfo>(Empty {}).await {
        Ok(info) if json => {
            print_json(&info);
            ExitCode::SUCCESS
        }
        Ok(info) => {
            let up = now_ms().saturating_sub(info.started_at) / 1000;
            println!("burrow kernel {} (protocol {})", info.version, info.protocol_version);
            println!("uptime:   {}", human_duration(up));
            println!("apps:     {}", info.apps);
            println!("sessions: {}", info.sessions);
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `burrow call METHOD [PARAMS]`.
pub async fn call(
    socket: Option<PathBuf>,
    method: &str,
    params: Option<&str>,
    timeout_ms: u64,
    register: bool,
) -> ExitCode {
    let params: Value = match params.map(serde_json::from_str).transpose() {
        Ok(p) => p.unwrap_or_else(|| Value::Object(Default::default())),
        Err(e) => {
            eprintln!("burrow: params are not valid JSON: {e}");
            return ExitCode::from(2);
        }
    };
    // Keeps the registration until the answer arrives.
    let (client, _registration) = if register {
        match super::ops::registered(socket).await {
            Ok(r) => (r.client.clone(), Some(r)),
            Err(code) => return code,
        }
    } else {
        match connect(socket).await {
            Ok(c) => (c, None),
            Err(code) => return code,
        }
    };
    match client.request_with_timeout(method, params, Duration::from_millis(timeout_ms)).await {
        Ok(result) => {
            print_json(&result);
            ExitCode::SUCCESS
        }
        Err(e) if !register && e.code() == Some(ErrorCode::AppNotRegistered) => {
            fail_with(e, Some("this method is for registered apps: pass --register"))
        }
        Err(e) => fail(e),
    }
}

pub(super) fn human_duration(secs: u64) -> String {
    match secs {
        s if s < 60 => format!("{s}s"),
        s if s < 3600 => format!("{}m{:02}s", s / 60, s % 60),
        s if s < 86_400 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        s => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use super::human_duration;

    #[test]
    fn durations() {
        assert_eq!(human_duration(5), "5s");
        assert_eq!(human_duration(65), "1m05s");
        assert_eq!(human_duration(3 * 3600 + 120), "3h02m");
        assert_eq!(human_duration(2 * 86_400 + 3600), "2d01h");
    }
}
