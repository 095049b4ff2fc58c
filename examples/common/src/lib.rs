//! `burrow-example-common`: the plumbing the example apps share, so that each example's
//! `main.rs` keeps only what teaches the SDK (its manifest, tools, hooks and handlers,
//! its own flags).
//!
//! An example describes itself with an [`Example`], then its `main` is:
//!
//! ```no_run
//! # use burrow_example_common::Example;
//! # use burrow_sdk::{App, Manifest};
//! # fn app(id: String) -> App { App::new(Manifest::new(id, "0.1.0")) }
//! const EXAMPLE: Example = Example::new("hello", "hello");
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let args = EXAMPLE.start();
//!     EXAMPLE.run(app(args.id), args.socket).await
//! }
//! ```
//!
//! [`Example::start`] sends logs to stderr (`RUST_LOG`, default `info`) and reads the
//! command line: `--id ID` (default `BURROW_APP_ID`, else the example's default id),
//! `--socket PATH` (default: the SDK's, `BURROW_SOCKET` else the default socket),
//! `-h`/`--help`, and any flags of the example's own ([`Example::start_with`]); every flag
//! takes a value, as `--flag VALUE` or `--flag=VALUE`. A bad command line prints
//! `<bin>: <message>` on stderr and exits with status 2.
//!
//! [`Example::run`] runs the app until Ctrl-C/SIGTERM, printing `<bin>: leaving`, or
//! until the kernel asks it to shut down, printing `<bin>: kernel asked us to shut down`;
//! both exit 0. If the run fails, it prints `<bin>: <error>` on stderr and exits 1.
//! Lines meant for scripts go to stdout through [`say`].

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use burrow_sdk::transport::APP_ID_ENV;
use burrow_sdk::{App, shutdown_signal};
use tracing_subscriber::EnvFilter;

/// Prints one line on stdout and flushes it, for scripts and tests waiting for it.
pub fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// One example binary: its name (the prefix of its stdout and stderr lines), the app id it
/// uses when none is given, and the usage of its own flags.
#[derive(Debug, Clone, Copy)]
pub struct Example {
    name: &'static str,
    default_id: &'static str,
    flags: &'static str,
}

/// The command line every example understands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    /// The app id: `--id`, else `BURROW_APP_ID`, else the example's default.
    pub id: String,
    /// `--socket`, if given.
    pub socket: Option<String>,
}

/// One flag an example's own parser is asked about (see [`Example::start_with`]).
#[allow(missing_debug_implementations)]
pub struct Flag<'a> {
    name: String,
    inline: Option<String>,
    rest: &'a mut dyn Iterator<Item = String>,
    usage: &'a str,
}

impl Flag<'_> {
    /// The flag, as given: `--priority` for both `--priority 3` and `--priority=3`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The flag's value: after `=`, else the next argument.
    pub fn value(&mut self) -> Result<String, String> {
        self.inline
            .take()
            .or_else(|| self.rest.next())
            .ok_or_else(|| format!("{} needs a value", self.name))
    }

    /// The error for a flag the example does not know.
    pub fn unknown(&self) -> String {
        format!("unknown argument {:?}\n{}", self.name, self.usage)
    }
}

impl Example {
    /// An example named `name` (its binary), whose app id defaults to `default_id`.
    pub const fn new(name: &'static str, default_id: &'static str) -> Self {
        Example { name, default_id, flags: "" }
    }

    /// The usage of the example's own flags, e.g. `"[--priority N] [--block NAME]..."`.
    pub const fn flags(self, usage: &'static str) -> Self {
        Example { flags: usage, ..self }
    }

    /// The usage line.
    pub fn usage(&self) -> String {
        let mut usage = format!("usage: {} [--id ID] [--socket PATH]", self.name);
        if !self.flags.is_empty() {
            usage.push(' ');
            usage.push_str(self.flags);
        }
        usage
    }

    /// Sets up logging and reads the command line, for an example without flags of its own.
    pub fn start(&self) -> Args {
        self.start_with(|flag| Err(flag.unknown()))
    }

    /// Sets up logging and reads the command line; `on_flag` handles every flag but
    /// `--id`, `--socket` and `--help`, taking its value with [`Flag::value`] and
    /// answering [`Flag::unknown`] for a flag it does not know.
    pub fn start_with(&self, on_flag: impl FnMut(&mut Flag<'_>) -> Result<(), String>) -> Args {
        tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(std::io::stderr().is_terminal())
            .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
            .init();
        match self.parse(std::env::args().skip(1), on_flag) {
            Ok((id, socket)) => Args {
                id: id
                    .or_else(|| std::env::var(APP_ID_ENV).ok().filter(|id| !id.is_empty()))
                    .unwrap_or_else(|| self.default_id.to_owned()),
                socket,
            },
            Err(message) => {
                eprintln!("{}: {message}", self.name);
                std::process::exit(2);
            }
        }
    }

    /// Reads `args` (without the program name): the `--id` and `--socket` given, or the
    /// message for a bad command line (the usage for `--help`).
    fn parse(
        &self,
        args: impl IntoIterator<Item = String>,
        mut on_flag: impl FnMut(&mut Flag<'_>) -> Result<(), String>,
    ) -> Result<(Option<String>, Option<String>), String> {
        let usage = self.usage();
        let (mut id, mut socket) = (None, None);
        let mut rest = args.into_iter();
        while let Some(arg) = rest.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((name, value)) => (name.to_owned(), Some(value.to_owned())),
                None => (arg, None),
            };
            let mut flag = Flag { name, inline, rest: &mut rest, usage: &usage };
            match flag.name() {
                "-h" | "--help" => return Err(usage),
                "--id" => id = Some(flag.value()?),
                "--socket" => socket = Some(flag.value()?),
                _ => on_flag(&mut flag)?,
            }
        }
        Ok((id, socket))
    }

    /// Runs `app` (on `socket`, if given) until Ctrl-C/SIGTERM or until the kernel asks
    /// it to shut down, says which on stdout, and gives the exit code.
    pub async fn run(&self, mut app: App, socket: Option<String>) -> ExitCode {
        if let Some(socket) = socket {
            app = app.socket(socket);
        }
        let mut signalled = false;
        let shutdown = async {
            shutdown_signal().await;
            signalled = true;
        };
        let result = app.run_until(shutdown).await;
        match result {
            Ok(()) if signalled => {
                say(&format!("{}: leaving", self.name));
                ExitCode::SUCCESS
            }
            Ok(()) => {
                say(&format!("{}: kernel asked us to shut down", self.name));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{}: {e}", self.name);
                ExitCode::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Example = Example::new("plain", "p");
    const FLAGGED: Example = Example::new("flagged", "f").flags("[--n N]");

    type Parsed = Result<(Option<String>, Option<String>), String>;

    fn plain(args: &[&str]) -> Parsed {
        PLAIN.parse(args.iter().map(|a| a.to_string()), |f| Err(f.unknown()))
    }

    fn some(s: &str) -> Option<String> {
        Some(s.to_owned())
    }

    #[test]
    fn reads_id_and_socket_separate_or_inline() {
        assert_eq!(plain(&[]), Ok((None, None)));
        assert_eq!(plain(&["--id", "a", "--socket=/s"]), Ok((some("a"), some("/s"))));
        assert_eq!(plain(&["--id=a=b"]), Ok((some("a=b"), None)));
    }

    #[test]
    fn rejects_bad_command_lines() {
        let usage = "usage: plain [--id ID] [--socket PATH]";
        assert_eq!(plain(&["--help"]), Err(usage.to_owned()));
        assert_eq!(plain(&["-h=x"]), Err(usage.to_owned()));
        assert_eq!(plain(&["--id"]), Err("--id needs a value".to_owned()));
        assert_eq!(plain(&["--nope"]), Err(format!("unknown argument \"--nope\"\n{usage}")));
    }

    #[test]
    fn hands_other_flags_to_the_example() {
        assert_eq!(FLAGGED.usage(), "usage: flagged [--id ID] [--socket PATH] [--n N]");
        let mut seen = Vec::new();
        let args = ["--n", "1", "--id", "x", "--n=2"].map(String::from);
        let parsed = FLAGGED.parse(args, |flag| match flag.name() {
            "--n" => {
                seen.push(flag.value()?);
                Ok(())
            }
            _ => Err(flag.unknown()),
        });
        assert_eq!(parsed, Ok((some("x"), None)));
        assert_eq!(seen, ["1", "2"]);
        let bad = FLAGGED.parse(["--m".to_owned()], |flag| Err(flag.unknown()));
        assert_eq!(bad, Err(format!("unknown argument \"--m\"\n{}", FLAGGED.usage())));
    }
}
