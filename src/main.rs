#![forbid(unsafe_code)]

use clap::Parser;
use otel_injector::cli::{Cli, Command};

// jemalloc instead of the C library's malloc: a review is allocation-heavy
// (typed pod, JSON Patch values, response) and glibc's malloc/free were about
// a third of its time; measured in BENCHMARKS.md (server CPU per review -12%,
// +2 MiB idle RSS; mimalloc saved as much but cost +9 MiB).
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    otel_injector::logging::init(cli.log.log_format, &cli.log.log_level);
    let result = match cli.command {
        Command::Serve(args) => tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(otel_injector::run::serve(args))),
        Command::Certs(args) => otel_injector::run::write_certs(&args),
        Command::Mutate(args) => otel_injector::run::mutate(&args),
        Command::Explain(args) => otel_injector::run::explain(&args),
        Command::Verify(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(otel_injector::run::verify(&args)))
            .and_then(|ok| {
                if ok {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!("verification failed"))
                }
            }),
        Command::Status(args) => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(anyhow::Error::from)
            .and_then(|rt| rt.block_on(otel_injector::run::status(&args))),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
