//! `apitoken-server`: Dynamic's API-token endpoints (`/api/v0/user/tokens`,
//! `/api/v0/environments/{environmentId}/tokens`, `/api/v0/tokens/me`) over the `apitoken`
//! library, on axum, with its OpenAPI 3.1 description at `/openapi.json`.
//!
//! Run `apitoken-server --help` for the options; the README's "HTTP server" section walks
//! through a first run.

mod api;
mod args;
mod body;
mod client_ip;
mod clients;
mod feed;
mod introspect;
mod leak;
mod logging;
mod metrics;
mod openapi;
mod problem;
mod purge;
mod serve;
mod stall;
mod storage;
mod tls;
mod verify;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use tokio::net::TcpListener;

fn main() -> ExitCode {
    let args = args::parse();
    logging::init(args.log_format, args.log_level);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            tracing::error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            tracing::error!("{message}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: args::Args) -> Result<(), String> {
    let limits = serve::Limits {
        timeouts: stall::Timeouts {
            header: args::seconds(args.header_timeout),
            body: args::seconds(args.body_timeout),
            idle: args::seconds(args.idle_timeout),
        },
        max_connections: serve::connection_cap(
            usize::try_from(args.max_connections.get()).unwrap_or(usize::MAX),
        ),
        max_connections_per_client: std::num::NonZeroUsize::new(
            usize::try_from(args.max_connections_per_client).unwrap_or(usize::MAX),
        ),
        shutdown: args::seconds(args.shutdown_timeout),
    };
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(tls::Tls::load(cert, key)?)),
        (None, None) => None,
        _ => {
            return Err(
                "--tls-cert and --tls-key go together: give both (PEM files) for HTTPS, or neither for plain HTTP"
                    .to_owned(),
            );
        }
    };
    let storage::Opened {
        issuer,
        handle,
        feed,
    } = storage::open(&args).await?;
    let storage = handle.describe();
    let cached = feed.is_some();
    // Following before serving: no change made from here on is missed.
    if let Some(following) = &feed {
        metrics::METRICS.cache(following.cache.clone());
    }
    let following = feed.map(|following| {
        tokio::spawn(feed::follow(
            following.cache,
            following.feed,
            following.staleness,
        ))
    });
    let listener = TcpListener::bind(&args.listen).await.map_err(|e| {
        format!(
            "cannot listen on {} ({e}): choose another address with --listen (or APITOKEN_LISTEN), e.g. 127.0.0.1:8081",
            args.listen
        )
    })?;
    let address = listener
        .local_addr()
        .map_err(|e| format!("cannot read the address listened on: {e}"))?;
    if let Some(metrics_listen) = &args.metrics_listen {
        let metrics = TcpListener::bind(metrics_listen).await.map_err(|e| {
            format!(
                "cannot listen on {metrics_listen} for metrics ({e}): choose another address with --metrics-listen (or APITOKEN_METRICS_LISTEN)"
            )
        })?;
        if let Ok(at) = metrics.local_addr() {
            tracing::info!(address = %at, "metrics at /metrics");
        }
        tokio::spawn(metrics::serve(metrics));
    }
    tracing::info!(
        %address,
        storage,
        max_live_tokens = args.max_live_tokens.map(|n| n.get()),
        max_tokens_per_environment = args.cap.max_tokens_per_environment,
        purge_after_seconds = args.purge_after.as_secs(),
        max_connections = limits.max_connections,
        max_connections_per_client = limits.max_connections_per_client.map(|n| n.get()),
        cache_ttl_seconds = cached.then_some(args.cache_ttl.get()),
        cache_staleness_ms = cached.then_some(args.cache_staleness_ms.get()),
        "listening"
    );
    // The one line on standard output, for people and for scripts that chose port 0.
    let mut stdout = std::io::stdout().lock();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let _ = writeln!(stdout, "listening on {scheme}://{address}");
    let _ = stdout.flush();
    drop(stdout);

    let issuer = Arc::new(issuer);
    // Always: with tokens kept forever (0), old events and leak reports still go.
    let purge_after = if args.purge_after.is_zero() {
        std::time::Duration::MAX
    } else {
        args.purge_after
    };
    let purging = tokio::spawn(purge::periodically(issuer.clone(), purge_after));
    let (intake, public_queue) = leak::intake(&args)?;
    let revoking =
        public_queue.map(|queue| tokio::spawn(leak::revoke_public(issuer.clone(), queue)));
    let router = api::router(
        issuer,
        args.introspection_scope.clone(),
        Arc::new(intake),
        client_ip::TrustedProxies::new(args.trusted_proxies.clone()),
    );
    let reloading = tls
        .clone()
        .map(|tls| tokio::spawn(tls::reload_on_sighup(tls)));
    serve::serve(listener, router, limits, tls, shutdown_signal()).await;
    if let Some(reloading) = reloading {
        reloading.abort();
    }
    purging.abort();
    if let Some(revoking) = revoking {
        revoking.abort();
    }
    // Stopped before the store closes, which its next read would take for an
    // interruption (and log).
    if let Some(following) = following {
        following.abort();
    }
    handle.close().await;
    tracing::info!("stopped");
    Ok(())
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM; requests in flight then get until
/// `--shutdown-timeout` to finish.
async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!("cannot listen for SIGINT ({e}): stop the server with SIGTERM");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}): stop the server with SIGINT");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!(signal = "SIGINT", "shutting down"),
        () = terminate => tracing::info!(signal = "SIGTERM", "shutting down"),
    }
}
