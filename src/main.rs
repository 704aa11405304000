//! The roomcast binary: configuration from the command line and the environment (`--help`
//! lists every setting), telemetry, then the app until a signal. A first SIGTERM/SIGINT starts
//! the graceful drain; a second one exits at once.

use std::process::ExitCode;

use roomcast::App;
use roomcast::config::{Config, LoadError};
use tokio::signal::unix::{SignalKind, signal};

#[cfg(feature = "alloc-mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(all(feature = "alloc-jemalloc", not(feature = "alloc-mimalloc")))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        // `--help`, `--version` (exit 0) and malformed command lines (exit 2), as clap prints them.
        Err(LoadError::Cli(err)) => err.exit(),
        Err(LoadError::Invalid(err)) => {
            eprintln!("roomcast: invalid configuration: {err}");
            return ExitCode::from(2);
        }
    };
    roomcast::telemetry::init(config.log_format, &config.instance_id);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            tracing::error!(error = %err, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: Config) -> ExitCode {
    let app = match App::build(config).await {
        Ok(app) => app,
        Err(err) => {
            tracing::error!(error = %err, "startup failed");
            return ExitCode::FAILURE;
        }
    };
    let (first_signal, stop) = tokio::sync::oneshot::channel::<&'static str>();
    // The one task no `Tasks` owns, on purpose: it must outlive the drain (the drain joins
    // every owned task) to exit on a second signal while the drain runs. It ends with the
    // runtime when `run` returns.
    tokio::spawn(watch_signals(first_signal));
    app.run_until_stopped(async move {
        if let Ok(name) = stop.await {
            tracing::info!(signal = name, "shutdown requested");
        }
    })
    .await;
    ExitCode::SUCCESS
}

/// Reports the first signal, then exits the process on the second.
async fn watch_signals(first: tokio::sync::oneshot::Sender<&'static str>) {
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop the process with SIGKILL");
        return;
    };
    let name = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    let _ = first.send(name);
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    tracing::warn!("second signal: exiting without finishing the drain");
    std::process::exit(130);
}
