//! The benchmark scenarios. Each returns one JSON object; none asserts a figure.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinHandle;

use crate::args::Args;
use crate::sio::{Cmd, Ended, RecvStats, Session};
use crate::stats::{self, ProcWindow, round2};

const PASSWORD: &str = "bench-password-1";

/// Common settings of every Socket.IO scenario.
struct Common {
    targets: Vec<String>,
    pids: Vec<u32>,
    cookies: Vec<String>,
    concurrency: usize,
}

impl Common {
    /// Reads the common options and logs the bench users in (registering them if needed),
    /// spreading the logins over the instances.
    async fn prepare(args: &Args) -> Result<Self, String> {
        let targets = args.targets()?;
        let pids = args.list("pids")?;
        let users: usize = args.number("users", 20)?;
        let cookie_name = args.string("cookie-name", "roomcast.sid");
        let prefix = args.string("user-prefix", "bench");
        let mut cookies = Vec::with_capacity(users);
        for chunk in (0..users).collect::<Vec<_>>().chunks(4) {
            let logins = chunk.iter().map(|&index| {
                let base = targets[index % targets.len()].clone();
                let cookie_name = cookie_name.clone();
                let username = format!("{prefix}_{index}");
                tokio::spawn(async move {
                    crate::http::login(&base, &cookie_name, &username, PASSWORD).await
                })
            });
            for login in logins.collect::<Vec<_>>() {
                cookies.push(login.await.map_err(|err| format!("login task: {err}"))??);
            }
        }
        Ok(Self {
            targets,
            pids,
            cookies,
            concurrency: args.number("concurrency", 256)?,
        })
    }

    fn cookie(&self, index: usize) -> &str {
        &self.cookies[index % self.cookies.len()]
    }
}

/// Opens one connection per `(target, cookie, room)` with at most `concurrency` handshakes in
/// flight; returns the sessions in order (failures as errors) and the time it took.
async fn open_many(
    plans: Vec<(String, String, Option<String>)>,
    concurrency: usize,
) -> (Vec<Result<Session, String>>, Duration) {
    let start = Instant::now();
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let tasks: Vec<JoinHandle<Result<Session, String>>> = plans
        .into_iter()
        .map(|(target, cookie, room)| {
            let gate = gate.clone();
            tokio::spawn(async move {
                let _permit = gate.acquire_owned().await.map_err(|err| err.to_string())?;
                let mut session = Session::open(&target, &cookie).await?;
                if let Some(room) = room {
                    session.join(&room).await?;
                }
                Ok(session)
            })
        })
        .collect();
    let mut sessions = Vec::with_capacity(tasks.len());
    for task in tasks {
        sessions.push(task.await.unwrap_or_else(|err| Err(format!("task: {err}"))));
    }
    (sessions, start.elapsed())
}

/// A running connection: its command channel and what it received.
struct Running {
    commands: mpsc::UnboundedSender<Cmd>,
    stats: Arc<Mutex<RecvStats>>,
    task: JoinHandle<Ended>,
}

fn start_running(session: Session, clock: Instant) -> Running {
    let (commands, receiver) = mpsc::unbounded_channel();
    let stats = Arc::new(Mutex::new(RecvStats::default()));
    let task = tokio::spawn(session.run(receiver, stats.clone(), clock));
    Running {
        commands,
        stats,
        task,
    }
}

async fn close_all(running: Vec<Running>) {
    let tasks: Vec<JoinHandle<Ended>> = running
        .into_iter()
        .map(|conn| {
            drop(conn.commands);
            conn.task
        })
        .collect();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
}

/// Splits results into sessions and a failure summary (count and first error).
fn split_failures(results: Vec<Result<Session, String>>) -> (Vec<Session>, u64, Option<String>) {
    let mut sessions = Vec::with_capacity(results.len());
    let mut failed = 0;
    let mut first_error = None;
    for result in results {
        match result {
            Ok(session) => sessions.push(session),
            Err(err) => {
                failed += 1;
                first_error.get_or_insert(err);
            }
        }
    }
    (sessions, failed, first_error)
}

/// What one step of a ramp is for: the equal-load probe, the coarse bracket, the bisection
/// inside it, or the step at half the maximum (latency with headroom).
#[derive(Clone, Copy)]
enum Phase {
    Probe,
    Coarse,
    Bisect,
    Half,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Probe => "probe",
            Phase::Coarse => "coarse",
            Phase::Bisect => "bisect",
            Phase::Half => "half",
        }
    }
}

/// The sockets of a ramp and what every step needs to offer load and judge it.
struct Ramp {
    running: Vec<Running>,
    /// `(socket index, room)` of every possible sender, rooms interleaved.
    senders: Vec<(usize, Arc<str>)>,
    seq: Vec<u32>,
    members: usize,
    pids: Vec<u32>,
    step_secs: f64,
    grace_secs: f64,
    p99_limit_ms: f64,
    min_delivery: f64,
    /// Messages per second one sender offers; `None`: every sender sends, sharing the rate.
    sender_rate: Option<f64>,
    steps: Vec<Value>,
}

impl Ramp {
    /// How many senders a rate uses: all of them, or (hot room) as many as the per-sender
    /// rate needs, so that the sender count is what ramps.
    fn active_senders(&self, rate: f64) -> usize {
        match self.sender_rate {
            Some(per_sender) if per_sender > 0.0 => {
                ((rate / per_sender).ceil() as usize).clamp(1, self.senders.len())
            }
            _ => self.senders.len(),
        }
    }

    /// Offers `rate` messages/s for one step and judges it; a failed step is run once more
    /// before it counts as failed (one scheduling hiccup of the shared machine should not
    /// decide a bisection). Returns whether the rate is sustained and the last step's figures.
    async fn judge(&mut self, rate: f64, phase: Phase) -> (bool, Value) {
        let first = self.step(rate, phase, false).await;
        if first["passed"] == true {
            return (true, first);
        }
        let second = self.step(rate, phase, true).await;
        (second["passed"] == true, second)
    }

    async fn step(&mut self, rate: f64, phase: Phase, is_retry: bool) -> Value {
        let step = self.steps.len() as u32 + 1;
        for conn in &self.running {
            if let Ok(mut stats) = conn.stats.lock() {
                *stats = RecvStats {
                    step,
                    ..RecvStats::default()
                };
            }
        }
        let active = self.active_senders(rate);
        let window = ProcWindow::start(&self.pids);
        let start = Instant::now();
        let duration = Duration::from_secs_f64(self.step_secs);
        let mut sent: u64 = 0;
        let mut next_sender = 0usize;
        let mut ticker = tokio::time::interval(Duration::from_millis(2));
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        while start.elapsed() < duration {
            ticker.tick().await;
            let due = (rate * start.elapsed().as_secs_f64().min(self.step_secs)) as u64;
            while sent < due {
                let (index, room) = &self.senders[next_sender];
                let command = Cmd::Send {
                    room: room.clone(),
                    step,
                    sender: next_sender as u32,
                    seq: self.seq[next_sender],
                };
                self.seq[next_sender] += 1;
                let _ = self.running[*index].commands.send(command);
                next_sender = (next_sender + 1) % active;
                sent += 1;
            }
        }
        let expected = sent * self.members as u64;
        let grace_deadline = Instant::now() + Duration::from_secs_f64(self.grace_secs);
        while Instant::now() < grace_deadline {
            let received: u64 = self
                .running
                .iter()
                .map(|conn| conn.stats.lock().map(|s| s.seen.len() as u64).unwrap_or(0))
                .sum();
            if received >= expected {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut latencies = Vec::new();
        let mut ack_latencies = Vec::new();
        let (mut received, mut duplicates, mut late, mut acks_ok, mut acks_err) = (0, 0, 0, 0, 0);
        let mut ack_error = None;
        for conn in &self.running {
            if let Ok(mut stats) = conn.stats.lock() {
                received += stats.seen.len() as u64;
                latencies.append(&mut stats.latencies_us);
                ack_latencies.append(&mut stats.ack_latencies_us);
                duplicates += stats.duplicates;
                late += stats.late;
                acks_ok += stats.acks_ok;
                acks_err += stats.acks_err;
                if ack_error.is_none() {
                    ack_error = stats.last_error.take();
                }
                stats.step = 0;
            }
        }
        let resources = window.finish_per_delivery(received);
        let latency = stats::latency_summary(&mut latencies);
        let delivery = if expected == 0 {
            1.0
        } else {
            received as f64 / expected as f64
        };
        let passed = stats::p99_ms(&latency) <= self.p99_limit_ms && delivery >= self.min_delivery;
        let elapsed = self.step_secs.max(1e-3);
        let result = json!({
            "phase": phase.name(),
            "send_rate": round2(rate),
            "offered_deliveries_per_sec": round2(rate * self.members as f64),
            "active_senders": active,
            "sent": sent,
            "acks_ok": acks_ok,
            "acks_error": acks_err,
            "ack_error_sample": ack_error,
            "expected_deliveries": expected,
            "delivered": received,
            "delivered_per_sec": round2(received as f64 / elapsed),
            "messages_per_sec": round2(sent as f64 / elapsed),
            "delivery_ratio": (delivery * 100000.0).round() / 100000.0,
            "duplicates": duplicates,
            "late_from_previous_step": late,
            "latency": latency,
            "ack_latency": stats::latency_summary(&mut ack_latencies),
            "resources": resources,
            "retry": is_retry,
            "passed": passed,
        });
        eprintln!("ramp step {step}: {result}");
        eprintln!(
            "progress: step {step} {} {:.1} msg/s ({} senders): {} delivered/s, p99 {} ms, {:.2} % delivered, {} µs CPU/delivery: {}",
            phase.name(),
            rate,
            active,
            result["delivered_per_sec"],
            result["latency"]["p99_ms"],
            delivery * 100.0,
            result["resources"]["cpu_us_per_delivery"],
            if passed {
                "sustained"
            } else if is_retry {
                "not sustained"
            } else {
                "not sustained, retrying"
            },
        );
        self.steps.push(result.clone());
        self.settle(passed).await;
        result
    }

    /// Lets stragglers of a step arrive before the next one (they count as late, not as its
    /// own): after a failed step the servers may hold a backlog, so wait until nothing has
    /// arrived for 300 ms (at most 5 s).
    async fn settle(&self, passed: bool) {
        if passed {
            tokio::time::sleep(Duration::from_millis(300)).await;
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        let arrived = || -> u64 {
            self.running
                .iter()
                .map(|conn| conn.stats.lock().map(|s| s.late).unwrap_or(0))
                .sum()
        };
        let mut last = arrived();
        while Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let now = arrived();
            if now == last {
                break;
            }
            last = now;
        }
    }
}

/// Fan-out, chat, hot room and one room: `rooms` rooms of `members` sockets; the sustained
/// rate (p99 ≤ the limit and ≥ the minimum delivered) is bracketed by multiplying the
/// offered messages/s by `factor` from `start-rate` until a step fails (or `max-rate` passes),
/// then bisected (geometric midpoint) until the bracket is narrower than `precision`.
/// Optionally one step at `probe-rate` first (the same offered load for every peer, for CPU
/// per delivery) and one at half the maximum found (latency with headroom).
pub async fn ramp(args: &Args) -> Result<Value, String> {
    let common = Common::prepare(args).await?;
    let rooms: usize = args.number("rooms", 1)?;
    let members: usize = args.number("members", 1000)?;
    let senders_per_room: usize = args.number("senders-per-room", 10)?;
    let start_rate: f64 = args.number("start-rate", 10.0)?;
    let max_rate: f64 = args.number("max-rate", f64::INFINITY)?;
    let factor: f64 = args.number("factor", 2.0)?;
    let precision: f64 = args.number("precision", 0.07)?;
    let max_steps: usize = args.number("max-steps", 24)?;
    let probe_rate: f64 = args.number("probe-rate", 0.0)?;
    let half: bool = args.string("half", "false") == "true";
    let sender_rate: f64 = args.number("sender-rate", 0.0)?;
    if !(start_rate > 0.0 && factor > 1.0 && precision > 0.0 && max_rate >= start_rate) {
        return Err("need start-rate > 0, factor > 1, precision > 0, max-rate ≥ start-rate".into());
    }
    let clock = Instant::now();
    let plans = (0..rooms * members)
        .map(|index| {
            (
                common.targets[index % common.targets.len()].clone(),
                common.cookie(index).to_owned(),
                Some(format!("bench-{}", index / members)),
            )
        })
        .collect();
    eprintln!(
        "progress: opening {} sockets in {rooms} room(s)",
        rooms * members
    );
    let (results, setup) = open_many(plans, common.concurrency).await;
    let (sessions, failed, first_error) = split_failures(results);
    if failed > 0 {
        return Err(format!(
            "{failed} sockets failed to connect/join: {}",
            first_error.unwrap_or_default()
        ));
    }
    let running: Vec<Running> = sessions
        .into_iter()
        .map(|session| start_running(session, clock))
        .collect();
    // Senders: the first members of every room, interleaved so consecutive sends hit
    // different rooms and instances.
    let senders: Vec<(usize, Arc<str>)> = (0..senders_per_room.min(members))
        .flat_map(|k| (0..rooms).map(move |room| (room * members + k, room)))
        .map(|(index, room)| (index, Arc::from(format!("bench-{room}"))))
        .collect();
    let mut ramp = Ramp {
        running,
        seq: vec![0; senders.len()],
        senders,
        members,
        pids: common.pids.clone(),
        step_secs: args.number("step-secs", 5.0)?,
        grace_secs: args.number("grace-secs", 3.0)?,
        p99_limit_ms: args.number("p99-limit-ms", 100.0)?,
        min_delivery: args.number("min-delivery", 0.999)?,
        sender_rate: (sender_rate > 0.0).then_some(sender_rate),
        steps: Vec::new(),
    };
    tokio::time::sleep(Duration::from_secs(1)).await;

    let probe = if probe_rate > 0.0 {
        Some(ramp.judge(probe_rate, Phase::Probe).await.1)
    } else {
        None
    };
    // `low`: the highest rate sustained (and its step); `high`: the lowest rate not sustained.
    let mut low: Option<(f64, Value)> = None;
    let mut high: Option<f64> = None;
    let mut judged = 0usize;
    while judged < max_steps {
        let (rate, phase) = match (&low, high) {
            (Some((l, _)), Some(h)) if h / l <= 1.0 + precision => break,
            (Some((l, _)), Some(h)) => ((l * h).sqrt(), Phase::Bisect),
            (Some((l, _)), None) if *l >= max_rate => break,
            (Some((l, _)), None) => ((l * factor).min(max_rate), Phase::Coarse),
            // Nothing sustained yet: go down until something is, but not forever.
            (None, Some(h)) if h <= start_rate / factor.powi(4) => break,
            (None, Some(h)) => (h / factor, Phase::Coarse),
            (None, None) => (start_rate, Phase::Coarse),
        };
        judged += 1;
        let (passed, result) = ramp.judge(rate, phase).await;
        if passed {
            low = Some((rate, result));
        } else {
            high = Some(rate);
        }
    }
    let at_half = match (&low, half) {
        (Some((l, _)), true) => Some(ramp.judge(l / 2.0, Phase::Half).await.1),
        _ => None,
    };
    let steps = std::mem::take(&mut ramp.steps);
    close_all(ramp.running).await;
    let max = low.as_ref().map(|(_, step)| step);
    Ok(json!({
        "rooms": rooms,
        "members_per_room": members,
        "sockets": rooms * members,
        "senders": ramp.senders.len(),
        "sender_rate": ramp.sender_rate,
        "users": common.cookies.len(),
        "setup_secs": round2(setup.as_secs_f64()),
        "step_secs": ramp.step_secs,
        "p99_limit_ms": ramp.p99_limit_ms,
        "min_delivery": ramp.min_delivery,
        "start_rate": start_rate,
        "max_rate": if max_rate.is_finite() { json!(max_rate) } else { Value::Null },
        "precision": precision,
        "bracket": [low.as_ref().map(|(l, _)| round2(*l)), high.map(round2)],
        "max_sustained_delivered_per_sec": max.map(|s| s["delivered_per_sec"].clone()),
        "max_sustained_send_rate": max.map(|s| s["send_rate"].clone()),
        "max_sustained_messages_per_sec": max.map(|s| s["messages_per_sec"].clone()),
        "at_max_p50_ms": max.map(|s| s["latency"]["p50_ms"].clone()),
        "at_max_p99_ms": max.map(|s| s["latency"]["p99_ms"].clone()),
        "at_max_cpu_us_per_delivery": max.map(|s| s["resources"]["cpu_us_per_delivery"].clone()),
        "at_max_server_cpu_cores": max.map(|s| s["resources"]["server_cpu_cores"].clone()),
        "limit_reached": high.is_some(),
        "probe": probe,
        "at_half": at_half,
        "steps": steps,
    }))
}

/// Idle memory: `connections` authenticated sockets on the first target; RSS growth per
/// connection of the process `--pids` (its first pid).
pub async fn idle(args: &Args) -> Result<Value, String> {
    let common = Common::prepare(args).await?;
    let connections: usize = args.number("connections", 10_000)?;
    let settle_secs: f64 = args.number("settle-secs", 3.0)?;
    let pid = *common.pids.first().ok_or("--pids is required")?;
    let target = common.targets[0].clone();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = stats::rss_kib(pid).ok_or("server process not found")?;
    let plans = (0..connections)
        .map(|index| (target.clone(), common.cookie(index).to_owned(), None))
        .collect();
    let (results, took) = open_many(plans, common.concurrency).await;
    let (sessions, failed, first_error) = split_failures(results);
    let clock = Instant::now();
    let running: Vec<Running> = sessions
        .into_iter()
        .map(|session| start_running(session, clock))
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(settle_secs)).await;
    let after = stats::rss_kib(pid).ok_or("server process exited")?;
    let open = running.len();
    close_all(running).await;
    let per_conn = if open == 0 {
        0.0
    } else {
        after.saturating_sub(before) as f64 / open as f64
    };
    Ok(json!({
        "connections": connections,
        "connected": open,
        "failed": failed,
        "first_error": first_error,
        "connect_secs": round2(took.as_secs_f64()),
        "rss_before_mib": round2(before as f64 / 1024.0),
        "rss_after_mib": round2(after as f64 / 1024.0),
        "rss_per_connection_kib": round2(per_conn),
    }))
}

/// Connect storm: `connections` authenticated sockets over all targets, `concurrency`
/// handshakes in flight; connections accepted per second.
pub async fn storm(args: &Args) -> Result<Value, String> {
    let common = Common::prepare(args).await?;
    let connections: usize = args.number("connections", 6_000)?;
    let plans = (0..connections)
        .map(|index| {
            (
                common.targets[index % common.targets.len()].clone(),
                common.cookie(index).to_owned(),
                None,
            )
        })
        .collect();
    let window = ProcWindow::start(&common.pids);
    let (results, took) = open_many(plans, common.concurrency).await;
    let resources = window.finish();
    let (sessions, failed, first_error) = split_failures(results);
    let accepted = sessions.len();
    let clock = Instant::now();
    let running: Vec<Running> = sessions
        .into_iter()
        .map(|session| start_running(session, clock))
        .collect();
    close_all(running).await;
    Ok(json!({
        "connections": connections,
        "concurrency": common.concurrency,
        "accepted": accepted,
        "failed": failed,
        "first_error": first_error,
        "secs": round2(took.as_secs_f64()),
        "accepted_per_sec": round2(accepted as f64 / took.as_secs_f64().max(1e-3)),
        "resources": resources,
    }))
}

/// Drain: `connections` sockets on the first target; SIGTERM to its pid (first of `--pids`);
/// every socket reconnects to another target when its transport closes. Reports how long the
/// drain took and how many sockets did not make it to another instance.
pub async fn drain(args: &Args) -> Result<Value, String> {
    let common = Arc::new(Common::prepare(args).await?);
    let connections: usize = args.number("connections", 5_000)?;
    let timeout_secs: f64 = args.number("timeout-secs", 60.0)?;
    let pid = *common.pids.first().ok_or("--pids is required")?;
    if common.targets.len() < 2 {
        return Err("drain needs at least two targets".into());
    }
    let plans = (0..connections)
        .map(|index| {
            (
                common.targets[0].clone(),
                common.cookie(index).to_owned(),
                None,
            )
        })
        .collect();
    let (results, _) = open_many(plans, common.concurrency).await;
    let (sessions, failed, first_error) = split_failures(results);
    if failed > 0 {
        return Err(format!(
            "{failed} sockets failed to connect: {}",
            first_error.unwrap_or_default()
        ));
    }
    let clock = Instant::now();
    // Microseconds since `clock` of the last disconnect / reconnect; counts of both.
    let last_down = Arc::new(AtomicU64::new(0));
    let last_up = Arc::new(AtomicU64::new(0));
    let down = Arc::new(AtomicU64::new(0));
    let up = Arc::new(AtomicU64::new(0));
    let (stop, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut tasks = Vec::with_capacity(sessions.len());
    for (index, session) in sessions.into_iter().enumerate() {
        let common = common.clone();
        let (last_down, last_up, down, up) =
            (last_down.clone(), last_up.clone(), down.clone(), up.clone());
        let mut stop_rx = stop.subscribe();
        tasks.push(tokio::spawn(async move {
            let (commands, receiver) = mpsc::unbounded_channel::<Cmd>();
            let stats = Arc::new(Mutex::new(RecvStats::default()));
            let ended = tokio::select! {
                ended = session.run(receiver, stats.clone(), clock) => ended,
                _ = stop_rx.recv() => return,
            };
            drop(commands);
            if !matches!(ended, Ended::Remote) {
                return;
            }
            last_down.fetch_max(clock.elapsed().as_micros() as u64, Ordering::Relaxed);
            down.fetch_add(1, Ordering::Relaxed);
            let others = &common.targets[1..];
            let target = &others[index % others.len()];
            for attempt in 0..40u64 {
                match Session::open(target, common.cookie(index)).await {
                    Ok(session) => {
                        last_up.fetch_max(clock.elapsed().as_micros() as u64, Ordering::Relaxed);
                        up.fetch_add(1, Ordering::Relaxed);
                        let (_commands, receiver) = mpsc::unbounded_channel::<Cmd>();
                        tokio::select! {
                            _ = session.run(receiver, stats, clock) => {}
                            _ = stop_rx.recv() => {}
                        }
                        return;
                    }
                    Err(_) => {
                        tokio::time::sleep(Duration::from_millis(100 + 50 * attempt.min(10))).await;
                    }
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    let signal_at = clock.elapsed();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .map_err(|err| format!("kill: {err}"))?;
    if !killed.success() {
        return Err(format!("kill -TERM {pid} failed"));
    }
    let deadline = Instant::now() + Duration::from_secs_f64(timeout_secs);
    let mut exited_after = None;
    let total = tasks.len() as u64;
    while Instant::now() < deadline {
        if exited_after.is_none() && !stats::alive(pid) {
            exited_after = Some(clock.elapsed() - signal_at);
        }
        if up.load(Ordering::Relaxed) >= total && exited_after.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let secs_since_signal = |micros: u64| {
        round2((Duration::from_micros(micros).saturating_sub(signal_at)).as_secs_f64())
    };
    let result = json!({
        "connections": total,
        "disconnected": down.load(Ordering::Relaxed),
        "reconnected_elsewhere": up.load(Ordering::Relaxed),
        "lost": total.saturating_sub(up.load(Ordering::Relaxed)),
        "all_disconnected_secs": secs_since_signal(last_down.load(Ordering::Relaxed)),
        "all_reconnected_secs": secs_since_signal(last_up.load(Ordering::Relaxed)),
        "process_exit_secs": exited_after.map(|took| round2(took.as_secs_f64())),
    });
    let _ = stop.send(());
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    Ok(result)
}

/// HTTP: closed-loop keep-alive `GET /api/me` with a logged-in session over `connections`
/// connections for `secs` seconds.
pub async fn http_me(args: &Args) -> Result<Value, String> {
    let common = Arc::new(Common::prepare(args).await?);
    let connections: usize = args.number("connections", 48)?;
    let secs: f64 = args.number("secs", 10.0)?;
    let window = ProcWindow::start(&common.pids);
    let start = Instant::now();
    let duration = Duration::from_secs_f64(secs);
    let tasks: Vec<JoinHandle<(Vec<u32>, u64, u64)>> = (0..connections)
        .map(|index| {
            let common = common.clone();
            tokio::spawn(async move {
                let base = &common.targets[index % common.targets.len()];
                let host = crate::http::authority(base);
                let head = crate::http::request_head(
                    host,
                    "GET",
                    "/api/me",
                    Some(common.cookie(index)),
                    None,
                    true,
                );
                let (mut latencies, mut ok, mut errors) = (Vec::new(), 0u64, 0u64);
                let mut stream = None;
                let mut buffer = Vec::new();
                while start.elapsed() < duration {
                    if stream.is_none() {
                        match tokio::net::TcpStream::connect(host).await {
                            Ok(s) => {
                                let _ = s.set_nodelay(true);
                                stream = Some(s);
                                buffer.clear();
                            }
                            Err(_) => {
                                errors += 1;
                                tokio::time::sleep(Duration::from_millis(10)).await;
                                continue;
                            }
                        }
                    }
                    let Some(conn) = stream.as_mut() else {
                        continue;
                    };
                    let sent = Instant::now();
                    let exchange = async {
                        tokio::io::AsyncWriteExt::write_all(conn, head.as_bytes())
                            .await
                            .map_err(crate::http::HttpError::from)?;
                        crate::http::read_response(conn, &mut buffer).await
                    };
                    match exchange.await {
                        Ok(response) if response.status == 200 => {
                            ok += 1;
                            latencies
                                .push(sent.elapsed().as_micros().min(u128::from(u32::MAX)) as u32);
                        }
                        Ok(_) => errors += 1,
                        Err(_) => {
                            errors += 1;
                            stream = None;
                        }
                    }
                }
                (latencies, ok, errors)
            })
        })
        .collect();
    let (mut latencies, mut ok, mut errors) = (Vec::new(), 0, 0);
    for task in tasks {
        let (mut l, o, e) = task.await.map_err(|err| format!("http task: {err}"))?;
        latencies.append(&mut l);
        ok += o;
        errors += e;
    }
    let elapsed = start.elapsed().as_secs_f64();
    Ok(json!({
        "connections": connections,
        "secs": round2(elapsed),
        "ok": ok,
        "errors": errors,
        "requests_per_sec": round2(ok as f64 / elapsed),
        "latency": stats::latency_summary(&mut latencies),
        "resources": window.finish(),
    }))
}

/// Memory after logins: `logins` password logins (spread over `--users` users, registered
/// first through another instance when there is one) against the first target, at most
/// `concurrency` at once; RSS of the first `--pids` process before, at its peak during, and
/// `settle-secs` after them. Password hashing is the allocation that matters here.
pub async fn logins(args: &Args) -> Result<Value, String> {
    let targets = args.targets()?;
    let pid = *args
        .list::<u32>("pids")?
        .first()
        .ok_or("--pids is required")?;
    let users: usize = args.number("users", 20)?;
    let logins: usize = args.number("logins", 1000)?;
    let concurrency: usize = args.number("concurrency", 16)?;
    let settle_secs: f64 = args.number("settle-secs", 3.0)?;
    let cookie_name = args.string("cookie-name", "roomcast.sid");
    let prefix = args.string("user-prefix", "bench");
    let target = targets[0].clone();
    let register_at = targets.last().cloned().unwrap_or_else(|| target.clone());
    for index in 0..users {
        crate::http::login(
            &register_at,
            &cookie_name,
            &format!("{prefix}_{index}"),
            PASSWORD,
        )
        .await?;
    }
    tokio::time::sleep(Duration::from_secs_f64(settle_secs)).await;
    let before = stats::rss_kib(pid).ok_or("server process not found")?;
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let failed = Arc::new(AtomicU64::new(0));
    let first_error = Arc::new(Mutex::new(None::<String>));
    let window = ProcWindow::start(&[pid]);
    let start = Instant::now();
    let tasks: Vec<JoinHandle<()>> = (0..logins)
        .map(|index| {
            let (gate, failed, first_error) = (gate.clone(), failed.clone(), first_error.clone());
            let (target, cookie_name) = (target.clone(), cookie_name.clone());
            let username = format!("{prefix}_{}", index % users.max(1));
            tokio::spawn(async move {
                let Ok(_permit) = gate.acquire_owned().await else {
                    return;
                };
                let outcome =
                    crate::http::login_existing(&target, &cookie_name, &username, PASSWORD).await;
                if let Err(err) = outcome {
                    failed.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = first_error.lock() {
                        first.get_or_insert(err);
                    }
                }
            })
        })
        .collect();
    let mut peak = before;
    let mut pending = tasks;
    while !pending.is_empty() {
        if let Some(rss) = stats::rss_kib(pid) {
            peak = peak.max(rss);
        }
        pending.retain(|task| !task.is_finished());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let took = start.elapsed();
    let resources = window.finish();
    let right_after = stats::rss_kib(pid).ok_or("server process exited")?;
    tokio::time::sleep(Duration::from_secs_f64(settle_secs)).await;
    let after = stats::rss_kib(pid).ok_or("server process exited")?;
    let failed = failed.load(Ordering::Relaxed);
    if failed as usize == logins {
        let error = first_error.lock().ok().and_then(|mut first| first.take());
        return Err(format!("every login failed: {}", error.unwrap_or_default()));
    }
    let mib = |kib: u64| round2(kib as f64 / 1024.0);
    Ok(json!({
        "logins": logins,
        "users": users,
        "concurrency": concurrency,
        "failed": failed,
        "first_error": first_error.lock().ok().and_then(|mut first| first.take()),
        "secs": round2(took.as_secs_f64()),
        "logins_per_sec": round2((logins as u64 - failed) as f64 / took.as_secs_f64().max(1e-3)),
        "rss_before_mib": mib(before),
        "rss_peak_mib": mib(peak),
        "rss_right_after_mib": mib(right_after),
        "rss_after_mib": mib(after),
        "rss_growth_mib": round2((after as f64 - before as f64) / 1024.0),
        "settle_secs": settle_secs,
        "resources": resources,
    }))
}
