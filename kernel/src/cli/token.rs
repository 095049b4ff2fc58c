//! `burrow token create`: a host token for the `--http` and `--rpc-tcp` surfaces.

use std::path::Path;
use std::process::ExitCode;

use crate::surface::auth::TokenStore;

/// Creates a host token in `state_dir` (the kernel's): prints it once on stdout, and how
/// to use it on stderr. A running kernel accepts it at once.
pub fn create(state_dir: &Path) -> ExitCode {
    match TokenStore::create(state_dir) {
        Ok(made) => {
            println!("{}", made.token);
            eprintln!(
                "burrow: created host token {} (only its hash is kept, in {}); it is not shown \
                 again.\nREST: send `Authorization: Bearer <token>`. JSON-RPC over TCP: call \
                 `rpc/authenticate {{\"token\": \"<token>\"}}` first.",
                made.id,
                state_dir.join(crate::surface::auth::TOKENS_FILE).display()
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("burrow: cannot create a host token in {}: {e}", state_dir.display());
            ExitCode::FAILURE
        }
    }
}
