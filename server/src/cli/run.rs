//! `run`: serve agents until SIGTERM or SIGINT; read the CRLs again on
//! SIGHUP or when a `--crl` file changes.

use anyhow::{Context, Result};

use super::args::{seconds, RunArgs};
use crate::config::{Config, Limits};
use crate::paths::DataDir;

pub(super) fn run(dir: &DataDir, args: RunArgs) -> Result<()> {
    let limits = Limits {
        max_frame: args.max_frame,
        max_batch: args.max_batch,
        max_connections: args.max_connections,
        max_unauthenticated: args.max_unauthenticated,
        max_unauthenticated_per_ip: args.max_unauthenticated_per_ip,
        max_connections_per_cert: args.max_connections_per_cert,
        max_frame_bytes_in_flight: args.max_frame_bytes_in_flight,
        handshake_timeout: seconds(args.handshake_timeout, "handshake-timeout")?,
        idle_timeout: seconds(args.idle_timeout, "idle-timeout")?,
    };
    limits.check()?;
    if args.crl.is_empty() && !args.no_crl {
        anyhow::bail!(
            "no --crl given: without one a revoked or stolen laptop can still connect. Give --crl FILE (truce-certs writes pki/crl.pem), or --no-crl to run without revocation (trials only)"
        );
    }
    let crl_check_interval = seconds(args.crl_check_interval, "crl-check-interval")?;
    let (tls, revocation) = crate::tls::server_tls(&args.ca, &args.cert, &args.key, &args.crl)?;
    if args.no_crl {
        tracing::warn!("running with --no-crl: revoked laptops can still connect");
    }
    let mut config = Config::new(dir, tls, limits)?;
    config.revocation = revocation;
    config.crl_check_interval = crl_check_interval;
    if let Some(n) = args.verify_threads {
        config.verify_threads = n.max(1);
    }
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        // Handlers first: once the port is open, SIGTERM means "finish
        // and exit 0", never the default "die".
        let shutdown = crate::shutdown::signal().context("cannot install the SIGTERM/SIGINT handlers")?;
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {} (is another server running there?)", args.listen))?;
        crate::server::run(listener, config, shutdown).await?;
        anyhow::Ok(())
    })
}
