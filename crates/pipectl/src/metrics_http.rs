//! `pipectl run --metrics-addr ADDR` for a stream: Prometheus metrics at `http://ADDR/metrics`,
//! encoded by the `prometheus-client` crate (events in and out, bytes, micro-batches and their
//! durations, end-to-end latency percentiles, lag per partition), served by a minimal HTTP/1.1
//! responder (one GET per connection; anything else is answered 404).

use anyhow::Context;
use pipeline_core::{MetricsLine, MicroBatch, StreamObserver};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

type Labels = Vec<(String, String)>;

/// The stream's metrics, updated after every micro-batch.
struct Metrics {
    events_in: Counter,
    events_out: Counter,
    bytes_in: Counter,
    batches: Counter,
    batch_seconds: Histogram,
    latency: Family<Labels, Gauge>,
    lag: Family<Labels, Gauge>,
    lag_total: Gauge,
}

impl StreamObserver for Metrics {
    fn micro_batch(&self, b: &MicroBatch) {
        self.events_in.inc_by(b.events_in);
        self.events_out.inc_by(b.events_out);
        self.bytes_in.inc_by(b.bytes_in);
        self.batches.inc();
        self.batch_seconds.observe(b.duration.as_secs_f64());
        if let Some((p50, p95, p99)) = b.latency_ms {
            for (q, v) in [("0.5", p50), ("0.95", p95), ("0.99", p99)] {
                self.latency
                    .get_or_create(&vec![("quantile".into(), q.into())])
                    .set(i64::try_from(v).unwrap_or(i64::MAX));
            }
        }
        for (partition, lag) in &b.lag {
            self.lag
                .get_or_create(&vec![("partition".into(), partition.clone())])
                .set(*lag);
        }
        self.lag_total.set(b.total_lag());
    }

    fn metrics_line(&self, _: &MetricsLine) {}
}

/// Registers the metrics, starts serving them and returns the observer that updates them.
pub(crate) async fn serve(
    addr: SocketAddr,
    pipeline: &str,
) -> anyhow::Result<Arc<dyn StreamObserver>> {
    let mut registry = Registry::with_prefix_and_labels(
        "pipectl_stream",
        [(
            std::borrow::Cow::Borrowed("pipeline"),
            std::borrow::Cow::Owned(pipeline.to_string()),
        )]
        .into_iter(),
    );
    let m = Metrics {
        events_in: Counter::default(),
        events_out: Counter::default(),
        bytes_in: Counter::default(),
        batches: Counter::default(),
        batch_seconds: Histogram::new(exponential_buckets(0.01, 2.0, 14)),
        latency: Family::default(),
        lag: Family::default(),
        lag_total: Gauge::default(),
    };
    registry.register(
        "events_in",
        "Records read from the source",
        m.events_in.clone(),
    );
    registry.register(
        "events_out",
        "Rows the loads committed",
        m.events_out.clone(),
    );
    registry.register(
        "bytes_in",
        "Record key and value bytes read",
        m.bytes_in.clone(),
    );
    registry.register(
        "micro_batches",
        "Micro-batches committed",
        m.batches.clone(),
    );
    registry.register(
        "micro_batch_seconds",
        "Time from a micro-batch's start to its commit",
        m.batch_seconds.clone(),
    );
    registry.register(
        "latency_milliseconds",
        "End-to-end latency of the last micro-batch's records (record timestamp to commit)",
        m.latency.clone(),
    );
    registry.register(
        "lag",
        "Records not yet read, per partition (high watermark - next offset)",
        m.lag.clone(),
    );
    registry.register(
        "lag_total",
        "Records not yet read, all partitions",
        m.lag_total.clone(),
    );
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("--metrics-addr {addr}: cannot listen there"))?;
    tracing::info!(url = %format!("http://{addr}/metrics"), "serving Prometheus metrics");
    let registry = Arc::new(registry);
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((socket, _)) => {
                    let registry = registry.clone();
                    // A client that sends nothing is dropped after a while.
                    tokio::spawn(tokio::time::timeout(
                        std::time::Duration::from_secs(10),
                        answer(socket, registry),
                    ));
                }
                // Out of file descriptors or similar: wait rather than spin.
                Err(_) => tokio::time::sleep(std::time::Duration::from_millis(200)).await,
            }
        }
    });
    Ok(Arc::new(m))
}

/// Answers one request on `socket`.
async fn answer(mut socket: tokio::net::TcpStream, registry: Arc<Registry>) {
    let mut buf = vec![0u8; 4096];
    let mut read = 0usize;
    // The request line and headers; bodies are not expected.
    while let Some(free) = buf.get_mut(read..) {
        if free.is_empty() {
            break;
        }
        match socket.read(free).await {
            Ok(0) | Err(_) => break,
            Ok(n) => read = read.saturating_add(n),
        }
        if buf
            .get(..read)
            .is_some_and(|b| b.windows(4).any(|w| w == b"\r\n\r\n"))
        {
            break;
        }
    }
    let head = String::from_utf8_lossy(buf.get(..read).unwrap_or_default());
    let response = if head.starts_with("GET /metrics ") || head.starts_with("GET /metrics?") {
        let mut body = String::new();
        match encode(&mut body, &registry) {
            Ok(()) => format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            ),
            Err(_) => "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".to_string(),
        }
    } else {
        "HTTP/1.1 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 23\r\nConnection: close\r\n\r\nonly /metrics is here.\n".to_string()
    };
    let _ = socket.write_all(response.as_bytes()).await;
    let _ = socket.shutdown().await;
}
