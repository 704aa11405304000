//! Load generator for the roomcast benchmarks. One process holds tens of thousands of
//! Socket.IO connections (hand-spoken Engine.IO 4 / Socket.IO 5 over WebSocket), spreads them
//! over the server instances, and prints one JSON result on stdout; progress goes to stderr.
//!
//! ```text
//! loadgen ramp  --targets http://a,http://b --rooms 1 --members 1000 --start-rate 10
//! loadgen logins --targets http://a,http://b --pids 123 --logins 1000
//! loadgen idle  --targets http://a --pids 123 --connections 10000
//! loadgen storm --targets http://a,http://b --connections 6000
//! loadgen drain --targets http://a,http://b --pids 123 --connections 5000
//! loadgen http  --targets http://a,http://b --connections 48 --secs 10
//! loadgen echo-server --port 9000
//! loadgen echo  --targets http://127.0.0.1:9000 --connections 200 --secs 5
//! ```

mod args;
mod echo;
mod http;
mod scenarios;
mod sio;
mod stats;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args = match args::Args::parse(std::env::args().skip(1)) {
        Ok(args) => args,
        Err(message) => {
            eprintln!("loadgen: {message}\n{}", args::USAGE);
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("loadgen: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async move {
        match args.mode.as_str() {
            "ramp" => scenarios::ramp(&args).await,
            "idle" => scenarios::idle(&args).await,
            "storm" => scenarios::storm(&args).await,
            "drain" => scenarios::drain(&args).await,
            "logins" => scenarios::logins(&args).await,
            "http" => scenarios::http_me(&args).await,
            "echo-server" => echo::serve(&args).await,
            "echo" => echo::drive(&args).await,
            other => Err(format!("unknown mode {other}")),
        }
    });
    match outcome {
        Ok(result) => {
            println!("{result}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!(
                "loadgen {}: {message}",
                std::env::args().nth(1).unwrap_or_default()
            );
            ExitCode::FAILURE
        }
    }
}
