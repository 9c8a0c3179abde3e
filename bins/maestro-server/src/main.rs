//! `maestro-server`: parse the command line, then hand over to [`maestro_server::main_with_args`].

use std::process::ExitCode;

// The engine allocates many small, short-lived objects per node; mimalloc serves them faster
// than the system allocator (the benchmark driver uses the same one).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    ExitCode::from(maestro_server::main_with_args(std::env::args_os()))
}
