//! Logging and tracing: human-readable logs by default, JSON lines by config, and spans
//! exported over OTLP/HTTP when `telemetry.otlp_endpoint` is set. Secrets never reach a log
//! line: secret-bearing types redact their `Debug`, and request logs carry paths, not queries.

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig;
use opentelemetry_sdk::trace::SdkTracerProvider;
use opentelemetry_sdk::Resource;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer, Registry};

use crate::config::{LogFormat, LogSettings, TelemetrySettings};

/// Keeps the span exporter alive; dropping it flushes what is buffered.
pub struct TelemetryGuard(Option<SdkTracerProvider>);

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.0.take() {
            let _ = provider.shutdown();
        }
    }
}

/// Installs the global subscriber; `RUST_LOG` overrides the configured level when set.
pub fn init(settings: &LogSettings) {
    let _ = init_with(settings, &TelemetrySettings::default());
}

/// Logs, and OTLP span export when configured.
pub fn init_with(settings: &LogSettings, telemetry: &TelemetrySettings) -> TelemetryGuard {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&settings.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr_is_tty = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let fmt_layer: Box<dyn Layer<Registry> + Send + Sync> = match settings.format {
        LogFormat::Human => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_ansi(stderr_is_tty)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_writer(std::io::stderr)
            .boxed(),
    };
    let provider = telemetry.otlp_endpoint.as_deref().and_then(|endpoint| {
        let url = format!("{}/v1/traces", endpoint.trim_end_matches('/'));
        match opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_endpoint(url)
            .build()
        {
            Ok(exporter) => Some(
                SdkTracerProvider::builder()
                    .with_batch_exporter(exporter)
                    .with_resource(
                        Resource::builder()
                            .with_service_name(telemetry.service_name.clone())
                            .build(),
                    )
                    .build(),
            ),
            Err(e) => {
                eprintln!("warning: OTLP export disabled: {e}");
                None
            }
        }
    });
    let otel_layer = provider
        .as_ref()
        .map(|p| tracing_opentelemetry::layer().with_tracer(p.tracer("portcullis")));
    let _ = tracing_subscriber::registry()
        .with(fmt_layer)
        .with(otel_layer)
        .with(filter)
        .try_init();
    TelemetryGuard(provider)
}
