//! `burrow apps [start|stop|restart ID]` and `burrow logs ID [-f]`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use burrow_protocol::{Value, now_ms};
use futures_util::StreamExt;
use serde_json::json;

use super::client::{connect, fail, human_duration, print_json};

/// `burrow apps`: connected apps and managed apps in one table.
pub async fn list(socket: Option<PathBuf>, json_out: bool) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let apps = match client.request("kernel.apps", json!({})).await {
        Ok(v) => v,
        Err(e) => return fail(e),
    };
    if json_out {
        print_json(&apps);
        return ExitCode::SUCCESS;
    }
    let rows = rows(&apps, now_ms());
    if rows.is_empty() {
        println!("no apps");
        return ExitCode::SUCCESS;
    }
    println!(
        "{:<24} {:<10} {:<20} {:>8} {:>9} {:>8}",
        "APP", "VERSION", "STATE", "PID", "UPTIME", "RESTARTS"
    );
    for r in rows {
        println!("{:<24} {:<10} {:<20} {:>8} {:>9} {:>8}", r[0], r[1], r[2], r[3], r[4], r[5]);
    }
    let why = reasons(&apps);
    if !why.is_empty() {
        println!();
        why.iter().for_each(|line| println!("{line}"));
    }
    ExitCode::SUCCESS
}

/// Why each failed or restarting managed app is not running, a line each.
fn reasons(apps: &Value) -> Vec<String> {
    let managed = apps["managed"].as_array().map(Vec::as_slice).unwrap_or_default();
    managed
        .iter()
        .filter(|m| m["state"] == "failed" || m["state"] == "restarting")
        .map(|m| {
            let (id, state) =
                (m["appId"].as_str().unwrap_or("?"), m["state"].as_str().unwrap_or("?"));
            let last = m["lastExit"].as_str().unwrap_or("no reason recorded");
            let next = if state == "failed" { " (burrow apps start to try again)" } else { "" };
            format!("{id} {state}: {last}{next}")
        })
        .collect()
}

/// One row per app: managed ones with their process state, others as
/// `connected-unmanaged`.
fn rows(apps: &Value, now: u64) -> Vec<[String; 6]> {
    let empty = Vec::new();
    let connected = apps["apps"].as_array().unwrap_or(&empty);
    let managed = apps["managed"].as_array().unwrap_or(&empty);
    let version_of = |id: &str| {
        connected
            .iter()
            .find(|a| a["appId"] == id)
            .and_then(|a| a["version"].as_str())
            .unwrap_or("-")
            .to_owned()
    };
    let mut out: Vec<[String; 6]> = managed
        .iter()
        .map(|m| {
            let id = m["appId"].as_str().unwrap_or("?");
            let uptime = m["startedAt"]
                .as_u64()
                .map_or("-".to_owned(), |t| human_duration(now.saturating_sub(t) / 1000));
            [
                id.to_owned(),
                version_of(id),
                m["state"].as_str().unwrap_or("?").to_owned(),
                m["pid"].as_u64().map_or("-".to_owned(), |p| p.to_string()),
                uptime,
                m["restarts"].as_u64().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    for a in connected {
        let id = a["appId"].as_str().unwrap_or("?");
        if managed.iter().any(|m| m["appId"] == id) {
            continue;
        }
        let uptime = a["registeredAt"]
            .as_u64()
            .map_or("-".to_owned(), |t| human_duration(now.saturating_sub(t) / 1000));
        out.push([
            id.to_owned(),
            version_of(id),
            "connected-unmanaged".into(),
            "-".into(),
            uptime,
            "-".into(),
        ]);
    }
    out.sort();
    out
}

/// `burrow apps start|stop|restart ID`.
pub async fn control(socket: Option<PathBuf>, action: &str, id: &str) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    match client.request(&format!("supervisor.{action}"), json!({ "appId": id })).await {
        Ok(_) => {
            let now = if action == "stop" { "stopped" } else { "running" };
            println!("{id}: {now}");
            ExitCode::SUCCESS
        }
        Err(e) => fail(e),
    }
}

/// `burrow logs ID [-f] [--lines N]`.
pub async fn logs(socket: Option<PathBuf>, id: &str, follow: bool, lines: usize) -> ExitCode {
    let client = match connect(socket).await {
        Ok(c) => c,
        Err(code) => return code,
    };
    let params = json!({ "appId": id, "follow": follow, "lines": lines });
    let mut stream = match client.request_stream("supervisor.logs", params).await {
        Ok(s) => s,
        Err(e) => return fail(e),
    };
    while let Some(item) = stream.next().await {
        match item {
            Ok(burrow_sdk::StreamItem::Chunk(chunk)) => {
                // A closed stdout (e.g. `burrow logs -f | head`) ends the command quietly.
                let line = chunk["line"].as_str().unwrap_or_default();
                if writeln!(std::io::stdout().lock(), "{line}").is_err() {
                    break;
                }
            }
            Ok(burrow_sdk::StreamItem::End(_)) => break,
            Err(e) => return fail(e),
        }
    }
    ExitCode::SUCCESS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn managed_and_unmanaged_rows() {
        let apps = json!({
            "apps": [
                {"appId": "files", "version": "1.0.0", "registeredAt": 1000},
                {"appId": "hello", "version": "0.1.0", "registeredAt": 5000}
            ],
            "managed": [
                {"appId": "files", "state": "running", "pid": 42, "startedAt": 1000, "restarts": 2},
                {"appId": "broken", "state": "failed", "pid": null, "startedAt": null, "restarts": 5}
            ]
        });
        let rows = rows(&apps, 61_000);
        assert_eq!(rows[0], ["broken", "-", "failed", "-", "-", "5"].map(String::from));
        assert_eq!(rows[1], ["files", "1.0.0", "running", "42", "1m00s", "2"].map(String::from));
        assert_eq!(
            rows[2],
            ["hello", "0.1.0", "connected-unmanaged", "-", "56s", "-"].map(String::from)
        );
    }

    #[test]
    fn failed_and_restarting_apps_say_why() {
        let apps = json!({"managed": [
            {"appId": "ok", "state": "running", "lastExit": "exit status: 0"},
            {"appId": "gone", "state": "failed", "lastExit": "command \"x\" not found"},
            {"appId": "flaky", "state": "restarting", "lastExit": "exit status: 1"},
            {"appId": "mute", "state": "failed"}
        ]});
        assert_eq!(
            reasons(&apps),
            [
                "gone failed: command \"x\" not found (burrow apps start to try again)",
                "flaky restarting: exit status: 1",
                "mute failed: no reason recorded (burrow apps start to try again)",
            ]
        );
    }
}
