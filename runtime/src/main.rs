//! The `wasmflow` command. Argument parsing and output only: the work is in
//! the library.

mod cli;

fn main() {
    let code = cli::main();
    std::process::exit(code);
}
