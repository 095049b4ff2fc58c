//! End-to-end tests: the real `burrow` binary on a temporary socket, real app processes.

mod abuse;
mod cancel;
mod capabilities;
mod chat;
mod cli;
mod comms;
mod config;
mod defaults;
mod examples;
mod framing;
mod hooks;
mod host_tools;
mod install;
mod kernels;
mod lifecycle;
mod mcp;
mod meerkat;
mod metrics;
mod rest;
mod routes;
mod sessions;
mod shutdown;
mod streaming;
mod supervisor;
mod tool_wait;
