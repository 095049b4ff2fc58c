//! The client commands `info` and `call`, and the shared connect/print helpers.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use burrow_protocol::methods::Empty;
use burrow_protocol::methods::app::KernelInfo;
use burrow_protocol::{ErrorObject, Value, now_ms};
use burrow_sdk::{Client, Error};

/// Connects to the kernel, kept alive for as long as the command runs (a followed log,
/// a chat, a long wait: the kernel drops a connection that says nothing).
pub(super) async fn connect(socket: Option<PathBuf>) -> Result<Client, ExitCode> {
    let path = socket.unwrap_or_else(burrow_sdk::transport::socket_from_env);
    let client = Client::connect(&path).await.map_err(|e| {
        eprintln!("burrow: cannot reach the kernel at {}: {e}", path.display());
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

/// Prints an error: remote errors as their JSON error object, others as text.
pub(super) fn fail(e: Error) -> ExitCode {
    match e {
        Error::Remote(obj) => eprintln!("{}", serde_json::to_string(&obj).unwrap_or_default()),
        other => {
            let obj = ErrorObject::new(
                other.code().unwrap_or(burrow_protocol::ErrorCode::UnknownError),
                other.to_string(),
            );
            eprintln!("{}", serde_json::to_string(&obj).unwrap_or_default());
        }
    }
    ExitCode::FAILURE
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
