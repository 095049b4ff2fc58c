//! End-to-end tests: the real `burrow` binary on a temporary socket, real app processes.

mod cli;
mod framing;
mod lifecycle;
mod shutdown;
