// jemalloc on Unix: see docs/benchmarks.md for what it buys.
#[cfg(unix)]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    burrow_kernel::cli::main()
}
