//! `burrow rpc`: JSON-RPC 2.0 on stdin/stdout, served by the running kernel (see
//! [`crate::surface::stdio`] and, for the wire, [`crate::surface::rpc`]).

use std::path::PathBuf;
use std::process::ExitCode;

use crate::surface::rpc::RpcLimits;
use crate::surface::stdio::{StdioEnd, serve_stdio};

/// `burrow rpc`: connects to the kernel and serves stdin/stdout until end of input.
/// Exits 0 at end of input, 1 when the kernel went away first, 2 when it cannot be
/// reached.
pub async fn run_stdio(socket: Option<PathBuf>) -> ExitCode {
    // Registered (as `cli-<pid>`, kept alive) for as long as it serves.
    let registration = match super::ops::registered(socket).await {
        Ok(r) => r,
        Err(code) => return code,
    };
    match serve_stdio(registration.client.clone(), RpcLimits::default()).await {
        StdioEnd::EndOfInput => ExitCode::SUCCESS,
        StdioEnd::KernelGone => {
            eprintln!("burrow: the kernel closed the connection");
            ExitCode::FAILURE
        }
    }
}
