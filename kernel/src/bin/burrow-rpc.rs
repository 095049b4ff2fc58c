//! `burrow-rpc`: JSON-RPC 2.0 on stdin/stdout, served by the running kernel — the entry
//! point a host spawns (Meerkat's SDK with `MEERKAT_BIN_PATH` pointing here). It takes
//! no arguments: the kernel is found as `burrow` finds it (`BURROW_SOCKET`, then the
//! default socket). Exits 0 at end of input, 1 when the kernel went away first, 2 (with
//! the reason on stderr) when no kernel answers.

fn main() -> std::process::ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("burrow-rpc: cannot start: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(burrow_kernel::cli::rpc::run_stdio(None, "burrow-rpc"))
}
