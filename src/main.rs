fn main() -> std::process::ExitCode {
    pgrunbook::cli::main()
}
