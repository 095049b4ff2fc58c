fn main() -> std::process::ExitCode {
    burrow_kernel::cli::main()
}
