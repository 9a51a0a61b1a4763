//! The one `kyso` binary: node subcommands (`dev`, `node`) and client subcommands.

use clap::Parser;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (the 16th option); libmimalloc-sys
/// names the options around it but not this one.
const MI_OPTION_PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
/// mimalloc 3's own default for it, in milliseconds.
const MI_DEFAULT_PURGE_DELAY_MS: std::os::raw::c_long = 1000;

/// Freed memory goes back to the OS after 10 ms, not mimalloc's 1 s: a node streaming a
/// large blob at 100 MB/s otherwise holds about 100 MB of freed chunks at its peak
/// (`tests/s3_storage.rs::file_of_200_mib_goes_through_multipart_upload_with_bounded_memory`
/// fails without this). An operator's `MIMALLOC_PURGE_DELAY` wins; so does any value
/// other than mimalloc's default, which would mean that the option moved.
fn tune_allocator() {
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mimalloc's option calls take plain integers and may run at any time.
    unsafe {
        if libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) == MI_DEFAULT_PURGE_DELAY_MS {
            libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, 10);
        }
    }
}

fn main() -> std::process::ExitCode {
    tune_allocator();
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
