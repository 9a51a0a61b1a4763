//! The one `kyso` binary: node subcommands (`dev`, `node`) and client subcommands.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = kyso::cli::Cli::parse();
    if !kyso::cli::sets_up_its_own_tracing(&cli) {
        kyso::cli::init_tracing(cli.log_json);
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the async runtime: {error}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(kyso::cli::run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            // The message may quote a server's answer or a certificate: never raw.
            eprintln!("error: {}", kyso::text::for_terminal_lines(&format!("{error:#}")));
            std::process::ExitCode::FAILURE
        }
    }
}
