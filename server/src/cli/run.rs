//! `run`: serve agents until SIGTERM or SIGINT, with the settings layered
//! by `config_file.rs` (defaults, config file, environment, flags); read
//! the CRLs again on SIGHUP or when a `--crl` file changes.

use anyhow::{Context, Result};

use super::config_file::{RunSettings, Setting, FILE_NAME};
use crate::config::Config;
use crate::paths::DataDir;

/// A required setting, or an error saying the three ways to give it.
fn required<'a, T>(s: &'a Setting<Option<T>>, key: &str, flag: &str, example: &str) -> Result<&'a T> {
    s.value.as_ref().with_context(|| {
        format!(
            "no {flag} given: give {flag} {example}, TRUCE_SERVER_{} or {key} = \"{example}\" in {FILE_NAME}",
            key.to_uppercase()
        )
    })
}

pub(super) fn run(dir: &DataDir, s: &RunSettings) -> Result<()> {
    let limits = s.limits()?;
    let listen = *required(&s.listen, "listen", "--listen", "ADDR")?;
    let ca = required(&s.ca, "ca", "--ca", "FILE")?;
    let cert = required(&s.cert, "cert", "--cert", "FILE")?;
    let key = required(&s.key, "key", "--key", "FILE")?;
    let (crls, no_crl) = (&s.crl.value, s.no_crl.value);
    if crls.is_empty() && !no_crl {
        anyhow::bail!(
            "no --crl given: without one a revoked or stolen laptop can still connect. Give --crl FILE (truce-certs writes pki/crl.pem), or --no-crl to run without revocation (trials only)"
        );
    }
    let crl_check_interval = std::time::Duration::try_from_secs_f64(s.crl_check_interval)
        .ok()
        .filter(|d| !d.is_zero())
        .context("--crl-check-interval must be a positive number of seconds")?;
    let (tls, revocation) = crate::tls::server_tls(ca, cert, key, crls)?;
    if no_crl {
        tracing::warn!("running with --no-crl: revoked laptops can still connect");
    }
    let mut config = Config::new(dir, tls, limits)?;
    config.revocation = revocation;
    config.crl_check_interval = crl_check_interval;
    config.evidence = s.evidence.clone();
    if let Some(n) = s.verify_threads.value {
        config.verify_threads = n.max(1);
    }
    if let Some(file) = &s.file {
        tracing::info!(file = %file.display(), "config file read");
    }
    // The CRL's age, for the metrics: re-pointed when the CRL is reloaded.
    config.metrics.set_crl_this_update(crate::metrics::crl_this_update(crls));
    let runtime =
        tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the runtime")?;
    runtime.block_on(async {
        // Handlers first: once the port is open, SIGTERM means "finish
        // and exit 0", never the default "die".
        let shutdown = crate::shutdown::signal().context("cannot install the SIGTERM/SIGINT handlers")?;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on {listen} (is another server running there?)"))?;
        let metrics = match s.metrics.value {
            Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.with_context(|| {
                format!("cannot serve metrics on {addr} ({}; is something else listening there?)", s.metrics.source)
            })?),
            None => None,
        };
        crate::server::run_with_metrics(listener, metrics, config, shutdown).await?;
        anyhow::Ok(())
    })
}
