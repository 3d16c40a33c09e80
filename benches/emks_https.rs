//! End-to-end key fetch over HTTPS with mutual TLS and keep-alive on loopback, against a
//! baseline in the same run: the same TLS + HTTP server stack (`emks_http::server`, same
//! limits) answering a fixed body of the same size with no store, no KDF and no XML
//! encoding. Prints a table: requests/s, p50 and p99 latency, and the ratio (goal ≥ 0.8).
//!
//! ```text
//! cargo bench --bench emks_https            # 5 s per target, 8 concurrent requests
//! E2M_BENCH_SECS=10 E2M_BENCH_CONCURRENCY=16 cargo bench --bench emks_https
//! ```
//!
//! Client and servers share one process and the machine's cores, as they share loopback:
//! both targets run under the same conditions, one after the other, with the same client
//! (reqwest over the profile's rustls configuration, HTTP/1.1 keep-alive), which decodes
//! the key response in both cases. Wall-clock figures move with the load of other
//! processes on a shared machine; the CPU time of this process per request does not, so
//! the table also gives it and the ratio of requests per CPU-second.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    reason = "benchmark harness"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use e2m_emks::{Emks, EmksConfig};
use e2m_https::emks::{EmksServerOptions, start_emks};
use e2m_https::pki::{GeneratedPki, PkiSpec, Role};
use e2m_https::ratelimit::RateLimit;
use e2m_https::server::{FixedBody, Limits, serve};
use e2m_https::tls::{ExpectedServer, client_config, server_config};
use e2m_kdf::E2mIntKey;
use e2m_keyid::{AppIdentity, EmseId, Imsi, KeyId};
use e2m_keystore::IdentityMap;
use e2m_msg::{
    IntermediateKeyPush, KeyIdSource, KeyRequest, KeyResponse, Timestamp, UeRef, XmlMessage,
};
use hyper::body::Bytes;
use tokio::net::TcpListener;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    requests: usize,
    elapsed: Duration,
    latencies: Vec<Duration>,
    /// CPU time of this whole process (servers and client) during the measurement.
    cpu: Option<Duration>,
}

/// This process's user + system CPU time from `/proc/self/stat` (Linux; USER_HZ = 100).
/// Other processes on this shared machine slow the wall clock down, not this figure.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    Some(Duration::from_millis(ticks * 10))
}

impl Run {
    fn per_second(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64()
    }
    /// CPU microseconds per request (whole process: TLS and HTTP on both ends, the handler).
    fn cpu_micros_per_request(&self) -> Option<f64> {
        let cpu = self.cpu?;
        (self.requests > 0).then(|| cpu.as_secs_f64() * 1e6 / self.requests as f64)
    }

    fn percentile(&self, p: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted[index.min(sorted.len() - 1)]
    }
}

/// `concurrency` tasks, each issuing GET `url` back to back on the shared keep-alive pool
/// and decoding the body as a key response, for `warmup` then `measure`.
async fn load(
    client: reqwest::Client,
    url: String,
    concurrency: usize,
    warmup: Duration,
    measure: Duration,
) -> Run {
    let start = Instant::now();
    let measure_from = start + warmup;
    let stop_at = measure_from + measure;
    let cpu_probe = tokio::spawn(async move {
        tokio::time::sleep_until(measure_from.into()).await;
        let before = process_cpu();
        tokio::time::sleep_until(stop_at.into()).await;
        Some(process_cpu()?.saturating_sub(before?))
    });
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let client = client.clone();
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let t0 = Instant::now();
                if t0 >= stop_at {
                    break;
                }
                let response = client.get(&url).send().await.expect("request failed");
                assert_eq!(response.status(), 200, "unexpected status");
                let body = response.bytes().await.expect("body");
                let key = KeyResponse::decode(&body).expect("not a key response");
                drop(key);
                let t1 = Instant::now();
                if t0 >= measure_from {
                    latencies.push(t1 - t0);
                }
            }
            latencies
        }));
    }
    let mut latencies = Vec::new();
    for task in tasks {
        latencies.extend(task.await.unwrap());
    }
    Run {
        requests: latencies.len(),
        elapsed: measure,
        latencies,
        cpu: cpu_probe.await.ok().flatten(),
    }
}

fn main() {
    let secs = env_or("E2M_BENCH_SECS", 5);
    let concurrency = env_or("E2M_BENCH_CONCURRENCY", 8) as usize;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(bench(Duration::from_secs(secs), concurrency));
}

async fn bench(measure: Duration, concurrency: usize) {
    let warmup = Duration::from_secs(1);
    let emse_id = EmseId::new("emse-a").unwrap();
    let dir = std::env::temp_dir().join(format!("e2m-bench-pki-{}", std::process::id()));
    let pki = GeneratedPki::generate(&PkiSpec::new(vec![emse_id.clone()]).unwrap())
        .unwrap()
        .write_to(&dir)
        .unwrap();
    let ca = pki.ca_certificates().unwrap();
    // The rate limit is the transport's; lift it so that it does not cap either target.
    let limits = Limits {
        rate: RateLimit {
            per_second: 1e9,
            burst: u32::MAX,
        },
        ..Limits::default()
    };

    // The EMKS with one provisioned UE, one key, one session.
    let app = AppIdentity::new("sensor-17@iot.example.com").unwrap();
    let imsi = Imsi::new("001010123456789").unwrap();
    let core = Arc::new(Emks::in_memory(EmksConfig::default()));
    core.identities()
        .provision(&emse_id, &app, &imsi)
        .await
        .unwrap();
    let emks = start_emks(
        core,
        &pki,
        EmksServerOptions {
            limits: limits.clone(),
            notifications: false,
            ..EmksServerOptions::default()
        },
    )
    .await
    .unwrap();
    let hss =
        e2m_https::client::EmksClient::new(&emks.base_url(), &pki.hss().unwrap(), &ca).unwrap();
    let key_id = KeyId::from_u32(0xae47_bf35);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    hss.push_intermediate_key(&IntermediateKeyPush {
        imsi,
        key_id: KeyIdSource::RandLsb32(key_id),
        int_key: E2mIntKey::from_array([0x42; 32]),
        created: Timestamp::from_unix_secs(now),
    })
    .await
    .unwrap();
    let emse =
        e2m_https::client::EmksClient::new(&emks.base_url(), &pki.emse(&emse_id).unwrap(), &ca)
            .unwrap();
    let session = emse.register(None).await.unwrap();
    let request = KeyRequest {
        session_id: session.session_id,
        ue: UeRef::AppIdentity(app),
        key_id,
    };
    let target = request.to_target();
    // One real response, to give the baseline the same body.
    let sample = emse.fetch_key(&request).await.unwrap();
    let body = Bytes::copy_from_slice(sample.encode().as_bytes());

    // The baseline: the same stack and limits, a fixed body, no store, KDF or XML.
    let tls = server_config(&pki.emks().unwrap(), &ca, &[Role::Emse, Role::Hss]).unwrap();
    let baseline = serve(
        TcpListener::bind("127.0.0.1:0").await.unwrap(),
        tls,
        limits,
        Arc::new(FixedBody {
            body,
            content_type: "application/xml",
        }),
    )
    .unwrap();

    // One client configuration for both (the EMSE's certificate, keep-alive pool).
    let client = {
        let tls = client_config(
            &pki.emse(&emse_id).unwrap(),
            &ca,
            ExpectedServer::AnyOfRole(Role::Emks),
        )
        .unwrap();
        reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .no_proxy()
            .http1_only()
            .pool_max_idle_per_host(concurrency)
            .build()
            .unwrap()
    };

    println!(
        "\nkey fetch over mTLS, HTTP/1.1 keep-alive, loopback; {concurrency} concurrent, {} s each\n",
        measure.as_secs()
    );
    // Alternate the targets (base, EMKS, base, EMKS, …) so that a change in the load of
    // this shared machine hits both alike; report each target's best round.
    let rounds = env_or("E2M_BENCH_ROUNDS", 2) as usize;
    let mut base: Option<Run> = None;
    let mut real: Option<Run> = None;
    for _ in 0..rounds.max(1) {
        let b = load(
            client.clone(),
            format!("https://{}{}", baseline.local_addr(), target.as_str()),
            concurrency,
            warmup,
            measure,
        )
        .await;
        let r = load(
            client.clone(),
            format!("{}{}", emks.base_url(), target.as_str()),
            concurrency,
            warmup,
            measure,
        )
        .await;
        println!(
            "  round: baseline {:>8.0} req/s {:>6.1} CPU µs/req; EMKS {:>8.0} req/s {:>6.1} CPU µs/req",
            b.per_second(),
            b.cpu_micros_per_request().unwrap_or(f64::NAN),
            r.per_second(),
            r.cpu_micros_per_request().unwrap_or(f64::NAN)
        );
        if base
            .as_ref()
            .is_none_or(|x| b.per_second() > x.per_second())
        {
            base = Some(b);
        }
        if real
            .as_ref()
            .is_none_or(|x| r.per_second() > x.per_second())
        {
            real = Some(r);
        }
    }
    let (base, real) = (base.unwrap(), real.unwrap());
    println!(
        "\n{:<44} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "target (best round)", "requests", "req/s", "p50 µs", "p99 µs", "CPU µs/req"
    );
    for (name, run) in [
        ("baseline: same stack, fixed body", &base),
        ("EMKS: route + store + KDF + XML (e2m-emks)", &real),
    ] {
        println!(
            "{:<44} {:>10} {:>10.0} {:>10} {:>10} {:>12.1}",
            name,
            run.requests,
            run.per_second(),
            run.percentile(0.50).as_micros(),
            run.percentile(0.99).as_micros(),
            run.cpu_micros_per_request().unwrap_or(f64::NAN)
        );
    }
    let ratio = real.per_second() / base.per_second();
    println!(
        "\nEMKS / baseline requests/s = {ratio:.2} (goal ≥ 0.80: {})",
        if ratio >= 0.8 { "met" } else { "NOT met" }
    );
    // The same ratio at equal CPU: immune to other processes on a shared machine.
    if let (Some(b), Some(r)) = (base.cpu_micros_per_request(), real.cpu_micros_per_request()) {
        println!(
            "EMKS / baseline requests per CPU-second = {:.2} ({b:.1} vs {r:.1} CPU µs per request)\n",
            b / r
        );
    }
    emks.shutdown().await;
    baseline.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}
