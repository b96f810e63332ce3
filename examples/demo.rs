//! The demo: the main job a streaming engine runs on statespine, end to
//! end, on the public API only.
//!
//! - **Source**: a replayable log, two partition files of fixed-size events
//!   (key, event time, value), generated deterministically and partitioned
//!   by key hash, readable from any offset.
//! - **Operators**, on a 2-shard store, one worker thread per shard, each
//!   owning its `Shard`, consuming its own partition and calling `poll()`
//!   in its loop: a count per key per 1 s tumbling event-time window (a
//!   Z-set) and the latest value per key (key-value).
//! - **Sink**: two-phase commit per epoch. It prepares
//!   `sink/tx-<epoch>.pending` with the epoch's output (the counts and
//!   latest values the epoch changed, read back from the store), the epoch
//!   commit records the transaction id, and once the commit is durable the
//!   sink renames the file to `.committed`.
//! - **Control loop**: an epoch commit every 100 ms and a checkpoint every
//!   second, each behind a short barrier, so the source offsets recorded are
//!   exactly the events written before each shard's commit record. Offsets
//!   alone need no barrier (`Shard::set_source_offset`); the sink does: its
//!   transaction must hold exactly the epoch's output and be durable before
//!   any shard's commit record is.
//! - **Crash**: the job runs in a child process, SIGKILLed mid-run.
//! - **Recovery** to the last committed epoch: prepared transactions
//!   committed or aborted, sources rewound, the run finished. Then a check
//!   against a crash-free run computed from the source files: every event's
//!   output committed exactly once, byte for byte, and the final state
//!   exact. Exits 1 on any difference.
//!
//! `cargo run --release --example demo [seconds] [dir]`: crash after
//! `seconds` (default 3; sooner if 60% of the source is done), in `dir`
//! (default: a temporary directory; only its `source`, `store` and `sink`
//! subdirectories are replaced).
//!
//! With the `remote` feature, two more (`cargo run --release --features
//! remote --example demo -- ...`):
//! - `--push URL [seconds] [dir]`: the same run, every checkpoint pushed to
//!   the bucket at `URL` (`file:///tmp/bucket`, `s3://...`); the killed
//!   process was pushing too, and the recovery fences it.
//! - `--restore URL [dir]`: another machine: restores the bucket's newest
//!   checkpoint into an empty store, and checks its state entry for entry
//!   against the source replayed up to the offsets the checkpoint recorded.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::OnceLock;
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use statespine::checkpoint::ConnectorCheckpoint;
use statespine::store::{CheckpointRequest, KvSpine, Options, Shard, SpineId, Store, ZSetSpine};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const SHARDS: u32 = 2;
/// Events in the source, over both partitions.
const EVENTS: u64 = 6_000_000;
const KEYS: u64 = 2_000;
const WINDOW_MS: u32 = 1_000;
const EPOCH_INTERVAL: Duration = Duration::from_millis(100);
/// Every tenth epoch is a checkpoint: one a second.
const CHECKPOINT_EVERY: u64 = 10;
/// Events a worker applies between looks at its control channel.
const BATCH: usize = 256;
const FINGERPRINT: &[u8] = b"statespine-demo-v2";

/// The bucket every checkpoint is pushed to (`--push URL`).
static PUSH: OnceLock<Option<String>> = OnceLock::new();

/// Removes `flag VALUE` from `args`; the value.
fn take_flag(args: &mut Vec<String>, flag: &str) -> Option<String> {
    let at = args.iter().position(|a| a == flag)?;
    let value = args.get(at + 1).cloned();
    args.drain(at..(at + 2).min(args.len()));
    value
}

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let _ = PUSH.set(take_flag(&mut args, "--push"));
    let result = match (take_flag(&mut args, "--restore"), args.as_slice()) {
        (Some(url), _) => restore_command(&url, args.first()),
        (None, [flag, dir]) if flag == "--job" => job_process(Path::new(dir)),
        (None, _) => demo(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("demo FAILED: {e}");
            ExitCode::FAILURE
        }
    }
}

// ---------------------------------------------------------------- source --

/// One event, 16 bytes on disk: key u32, event time u32 (ms), value u64,
/// little-endian. Its offset is its index in its partition file.
#[derive(Debug, Clone, Copy)]
struct Event {
    key: u32,
    time_ms: u32,
    value: u64,
}

impl Event {
    const BYTES: u64 = 16;

    /// The `i`-th event of the stream: 100 events per ms of event time,
    /// up to 200 ms out of order, so windows overlap at their edges.
    fn nth(i: u64) -> Event {
        Event {
            key: (mix(i) % KEYS) as u32,
            time_ms: (i / 100 + mix(i ^ 0x7777) % 200) as u32,
            value: mix(i ^ 0xABCD),
        }
    }

    fn encode(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.key.to_le_bytes());
        b[4..8].copy_from_slice(&self.time_ms.to_le_bytes());
        b[8..].copy_from_slice(&self.value.to_le_bytes());
        b
    }

    fn decode(b: &[u8; 16]) -> Event {
        let [k0, k1, k2, k3, t0, t1, t2, t3, v @ ..] = *b;
        Event {
            key: u32::from_le_bytes([k0, k1, k2, k3]),
            time_ms: u32::from_le_bytes([t0, t1, t2, t3]),
            value: u64::from_le_bytes(v),
        }
    }

    fn window(self) -> u32 {
        self.time_ms / WINDOW_MS
    }
}

/// splitmix64's finalizer: a deterministic scramble.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The partition (and so the shard) of a key: every event of a key goes to
/// one shard, so its state lives there alone.
fn partition_of(key: u32) -> u32 {
    (mix(u64::from(key) ^ 0x5EED) % u64::from(SHARDS)) as u32
}

fn partition_path(dir: &Path, p: u32) -> PathBuf {
    dir.join("source").join(format!("part-{p}.bin"))
}

/// The name a partition's offset is recorded under in each epoch.
fn source_name(p: u32) -> String {
    format!("events/{p}")
}

/// Writes the source: `EVENTS` events split into one file per partition.
fn generate(dir: &Path) -> Res<Vec<u64>> {
    fs::create_dir_all(dir.join("source"))?;
    let mut files = (0..SHARDS)
        .map(|p| File::create(partition_path(dir, p)).map(|f| BufWriter::with_capacity(1 << 20, f)))
        .collect::<std::io::Result<Vec<_>>>()?;
    let mut lens = vec![0u64; SHARDS as usize];
    for i in 0..EVENTS {
        let e = Event::nth(i);
        let p = partition_of(e.key) as usize;
        files[p].write_all(&e.encode())?;
        lens[p] += 1;
    }
    for f in files {
        f.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    }
    Ok(lens)
}

/// A reader of one partition from a given offset (a Kafka partition, say).
struct Partition {
    file: BufReader<File>,
    offset: u64,
    len: u64,
}

impl Partition {
    fn open(dir: &Path, p: u32, from: u64) -> Res<Partition> {
        let mut f = File::open(partition_path(dir, p))?;
        let len = f.metadata()?.len() / Event::BYTES;
        if from > len {
            return Err(format!("partition {p} has {len} events; cannot rewind to {from}").into());
        }
        f.seek(SeekFrom::Start(from * Event::BYTES))?;
        Ok(Partition {
            file: BufReader::with_capacity(1 << 16, f),
            offset: from,
            len,
        })
    }

    fn next(&mut self) -> Res<Option<Event>> {
        if self.offset == self.len {
            return Ok(None);
        }
        let mut b = [0u8; 16];
        self.file.read_exact(&mut b)?;
        self.offset += 1;
        Ok(Some(Event::decode(&b)))
    }
}

// ------------------------------------------------------------- operators --

/// Big-endian key bytes, so the spine's order is numeric order.
fn count_key(key: u32, window: u32) -> [u8; 8] {
    let mut k = [0u8; 8];
    k[..4].copy_from_slice(&key.to_be_bytes());
    k[4..].copy_from_slice(&window.to_be_bytes());
    k
}

/// One shard's part of a sink transaction: which events it covers, then the
/// state they changed, as upserts in key order. The check renders the same
/// text from its own model.
fn render_part(shard: u32, from: u64, to: u64, counts: &[(u32, u32, i64)], latest: &[(u32, u64)]) -> String {
    let mut s = format!("shard {shard} events {from}..{to}\n");
    for (k, w, n) in counts {
        let _ = writeln!(s, "count key={k} window={w} n={n}");
    }
    for (k, v) in latest {
        let _ = writeln!(s, "latest key={k} value={v}");
    }
    s
}

/// The two operators on one shard, and what the current epoch touched.
struct Operators {
    counts: ZSetSpine,
    latest: KvSpine,
    touched_windows: BTreeSet<(u32, u32)>,
    touched_keys: BTreeSet<u32>,
}

impl Operators {
    /// Finds the spines (after recovery) or creates them.
    fn open(shard: &mut Shard) -> Res<Operators> {
        let counts = match shard.zset_spine("counts") {
            Some(z) => z,
            None => shard.create_zset("counts")?,
        };
        let latest = match shard.kv_spine("latest") {
            Some(kv) => kv,
            None => shard.create_kv("latest")?,
        };
        Ok(Operators {
            counts,
            latest,
            touched_windows: BTreeSet::new(),
            touched_keys: BTreeSet::new(),
        })
    }

    fn apply(&mut self, shard: &mut Shard, e: Event) -> Res<()> {
        shard.update(self.counts, &count_key(e.key, e.window()), b"", 1)?;
        shard.put(self.latest, &e.key.to_be_bytes(), &e.value.to_le_bytes())?;
        self.touched_windows.insert((e.key, e.window()));
        self.touched_keys.insert(e.key);
        Ok(())
    }

    /// The epoch's output, read back from the state: each touched count and
    /// latest value as it stands at the end of the epoch.
    fn emit(&mut self, shard: &Shard, from: u64, to: u64) -> Res<String> {
        let spine = shard.spine(self.counts)?;
        let mut counts = Vec::with_capacity(self.touched_windows.len());
        for &(k, w) in &self.touched_windows {
            counts.push((k, w, spine.key_weight(&count_key(k, w))?));
        }
        let mut latest = Vec::with_capacity(self.touched_keys.len());
        for &k in &self.touched_keys {
            let v = shard
                .get(self.latest, &k.to_be_bytes())?
                .ok_or("a latest value vanished")?;
            latest.push((k, u64::from_le_bytes(v.try_into()?)));
        }
        self.touched_windows.clear();
        self.touched_keys.clear();
        Ok(render_part(shard.id(), from, to, &counts, &latest))
    }
}

// ------------------------------------------------------------------ sink --

/// A two-phase-commit sink, one file per epoch: `tx-<e>.pending` (durable,
/// not yet visible) becomes `tx-<e>.committed` by a rename once the store
/// has committed epoch `e`. Readers see only `.committed` files.
struct Sink {
    dir: PathBuf,
}

impl Sink {
    fn open(dir: PathBuf) -> Res<Sink> {
        fs::create_dir_all(&dir)?;
        Ok(Sink { dir })
    }

    fn path(&self, tx: &str, state: &str) -> PathBuf {
        self.dir.join(format!("{tx}.{state}"))
    }

    /// Phase one. Durable before the epoch's commit record can be: recovery
    /// may hand this transaction back, and then it must exist.
    fn prepare(&self, epoch: u64, parts: &[String]) -> Res<String> {
        let tx = format!("tx-{epoch}");
        let mut f = File::create(self.path(&tx, "pending"))?;
        f.write_all(format!("epoch {epoch}\n").as_bytes())?;
        for p in parts {
            f.write_all(p.as_bytes())?;
        }
        f.sync_all()?;
        sync_dir(&self.dir)?;
        Ok(tx)
    }

    /// Phase two, once the epoch is committed.
    fn commit(&self, tx: &str) -> Res<()> {
        fs::rename(self.path(tx, "pending"), self.path(tx, "committed"))?;
        Ok(sync_dir(&self.dir)?)
    }

    fn abort(&self, tx: &str) -> Res<()> {
        fs::remove_file(self.path(tx, "pending"))?;
        Ok(sync_dir(&self.dir)?)
    }

    /// After a crash: commits what the recovered epoch prepared (if the
    /// crash came before phase two) and aborts every other pending
    /// transaction (its epoch was not committed; it will be produced again).
    fn recover(&self, prepared: &[String]) -> Res<(Vec<String>, Vec<String>)> {
        let (mut committed, mut aborted) = (Vec::new(), Vec::new());
        for (_, tx) in self.list("pending")? {
            if prepared.contains(&tx) {
                self.commit(&tx)?;
                committed.push(tx);
            } else {
                self.abort(&tx)?;
                aborted.push(tx);
            }
        }
        for tx in prepared {
            if !self.path(tx, "committed").exists() {
                return Err(format!("the recovered epoch prepared {tx}, which is gone").into());
            }
        }
        Ok((committed, aborted))
    }

    /// Transactions in `state`, by epoch.
    fn list(&self, state: &str) -> Res<Vec<(u64, String)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let name = entry?.file_name().to_string_lossy().into_owned();
            if let Some(tx) = name.strip_suffix(&format!(".{state}")) {
                let epoch = tx.strip_prefix("tx-").and_then(|e| e.parse().ok());
                out.push((
                    epoch.ok_or_else(|| format!("stray sink file {name}"))?,
                    tx.to_owned(),
                ));
            }
        }
        out.sort();
        Ok(out)
    }
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

// --------------------------------------------------------------- workers --

enum Cmd {
    /// End the epoch here: emit, report, write nothing until the shard has
    /// appended the epoch's commit record.
    Barrier(u64),
    Stop,
}

enum Report {
    Prepared(Part),
    Resumed(Duration),
}

/// A worker's contribution to an epoch.
struct Part {
    shard: u32,
    /// The partition offset at the barrier: the epoch holds every event
    /// before it.
    to: u64,
    text: String,
    exhausted: bool,
}

/// One shard's owner thread.
struct Worker {
    shard: Shard,
    ops: Operators,
    source: Partition,
    /// Where the current epoch started in the partition.
    from: u64,
    cmds: Receiver<Cmd>,
    reports: Sender<Report>,
}

impl Worker {
    fn run(mut self) -> Res<Shard> {
        loop {
            match self.cmds.try_recv() {
                Ok(Cmd::Barrier(epoch)) => self.barrier(epoch)?,
                Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => return Ok(self.shard),
                Err(TryRecvError::Empty) => {}
            }
            let mut applied = 0;
            while applied < BATCH {
                let Some(e) = self.source.next()? else { break };
                self.ops.apply(&mut self.shard, e)?;
                applied += 1;
            }
            // Merges advance here, in slices, on this thread. Requests only
            // come behind a barrier.
            if let Some(a) = self.shard.poll()? {
                return Err(format!("shard answered epoch {} outside a barrier", a.epoch()).into());
            }
            if applied == 0 {
                thread::sleep(Duration::from_millis(1)); // the partition is drained
            }
        }
    }

    fn barrier(&mut self, epoch: u64) -> Res<()> {
        let paused = Instant::now();
        let to = self.source.offset;
        let text = self.ops.emit(&self.shard, self.from, to)?;
        let part = Part {
            shard: self.shard.id(),
            to,
            text,
            exhausted: to == self.source.len,
        };
        self.reports
            .send(Report::Prepared(part))
            .map_err(|_| "control is gone")?;
        // Every write before the shard's commit record belongs to `epoch`,
        // every write after it to the next: poll, and write nothing, until
        // the record is appended.
        loop {
            match self.shard.poll()? {
                Some(a) if a.epoch() == epoch => break,
                Some(a) => return Err(format!("expected epoch {epoch}, shard answered {}", a.epoch()).into()),
                None => thread::sleep(Duration::from_micros(20)),
            }
        }
        self.from = to;
        self.reports
            .send(Report::Resumed(paused.elapsed()))
            .map_err(|_| "control is gone")?;
        Ok(())
    }
}

// --------------------------------------------------------------- control --

/// One epoch, as the control loop saw it.
#[derive(Debug, Clone, Copy)]
struct EpochStat {
    epoch: u64,
    checkpoint: bool,
    /// `commit_epoch` or `checkpoint`: from the request to durable.
    store_time: Duration,
    /// The longest worker pause: barrier to its shard's commit record.
    pause: Duration,
    /// Events committed so far (both partitions).
    events: u64,
    /// Since the job started.
    at: Duration,
}

impl EpochStat {
    /// The child's progress line to its parent.
    fn to_line(self) -> String {
        format!(
            "epoch {} {} {} {} {} {}",
            self.epoch,
            u8::from(self.checkpoint),
            self.store_time.as_nanos(),
            self.pause.as_nanos(),
            self.events,
            self.at.as_nanos()
        )
    }

    fn parse(line: &str) -> Option<EpochStat> {
        let f: Vec<u64> = line
            .strip_prefix("epoch ")?
            .split(' ')
            .map(|x| x.parse().ok())
            .collect::<Option<_>>()?;
        let &[epoch, checkpoint, store, pause, events, at] = f.as_slice() else {
            return None;
        };
        Some(EpochStat {
            epoch,
            checkpoint: checkpoint == 1,
            store_time: Duration::from_nanos(store),
            pause: Duration::from_nanos(pause),
            events,
            at: Duration::from_nanos(at),
        })
    }
}

/// What the job found when it started.
struct Recovered {
    epoch: u64,
    from_checkpoint: bool,
    discarded: u64,
    replayed: u64,
    store_time: Duration,
    sink_time: Duration,
    committed: Vec<String>,
    aborted: Vec<String>,
    offsets: Vec<u64>,
}

struct JobReport {
    recovered: Recovered,
    epochs: Vec<EpochStat>,
    events: u64,
    elapsed: Duration,
}

/// A running job: the store, the sink, and the workers' channels.
struct Job {
    store: Store,
    sink: Sink,
    cmds: Vec<Sender<Cmd>>,
    reports: Receiver<Report>,
    workers: Vec<JoinHandle<Res<Shard>>>,
    offsets: Vec<u64>,
    started: Instant,
}

/// The job, from whatever `dir` holds (nothing: a fresh start) to the end
/// of the source. `on_epoch` hears of every epoch committed.
fn run_job(dir: &Path, on_epoch: &mut dyn FnMut(EpochStat)) -> Res<JobReport> {
    let (mut job, recovered) = Job::recover(dir)?;
    let mut epochs = Vec::new();
    let mut epoch = job.store.next_epoch();
    for tick in 1.. {
        let due = job.started + EPOCH_INTERVAL * tick;
        thread::sleep(due.saturating_duration_since(Instant::now()));
        let (stat, done) = job.end_epoch(epoch, u64::from(tick) % CHECKPOINT_EVERY == 0)?;
        on_epoch(stat);
        epochs.push(stat);
        epoch += 1;
        if done {
            break;
        }
    }
    let events = job.offsets.iter().sum::<u64>() - recovered.offsets.iter().sum::<u64>();
    let elapsed = job.started.elapsed();
    job.shutdown(epoch)?;
    Ok(JobReport {
        recovered,
        epochs,
        events,
        elapsed,
    })
}

impl Job {
    /// Recovery: the store at its last committed epoch, the sink's
    /// transactions resolved, one worker per shard at the epoch's offsets.
    fn recover(dir: &Path) -> Res<(Job, Recovered)> {
        let t = Instant::now();
        // The default `Options::flush_after(4)` keeps small memtables until
        // the fourth checkpoint: a crash within a few seconds replays the
        // whole WAL (a lower value bounds replay at the cost of more flushes).
        let state = push_to(
            Options::new(dir.join("store"))
                .shards(SHARDS)
                .fingerprint(FINGERPRINT),
        )?
        .recover()?;
        let store_time = t.elapsed();
        let prepared = state
            .prepared_transactions
            .get("sink")
            .cloned()
            .unwrap_or_default();
        let (committed, aborted) = Sink::open(dir.join("sink"))?.recover(&prepared)?;
        let offsets: Vec<u64> = (0..SHARDS)
            .map(|p| state.source_offsets.get(&source_name(p)).copied().unwrap_or(0))
            .collect();
        let recovered = Recovered {
            epoch: state.epoch,
            from_checkpoint: state.checkpoint_id.is_some(),
            discarded: state.discarded_records,
            replayed: state.replayed_records,
            store_time,
            sink_time: t.elapsed() - store_time,
            committed,
            aborted,
            offsets: offsets.clone(),
        };
        Ok((Job::start(dir, state.store, offsets)?, recovered))
    }

    /// One worker thread per shard, each reading its partition from `offsets`.
    fn start(dir: &Path, mut store: Store, offsets: Vec<u64>) -> Res<Job> {
        let (report_tx, reports) = mpsc::channel();
        let (mut cmds, mut workers) = (Vec::new(), Vec::new());
        for mut shard in store.take_shards() {
            let (cmd_tx, cmd_rx) = mpsc::channel();
            let p = shard.id();
            let worker = Worker {
                ops: Operators::open(&mut shard)?,
                source: Partition::open(dir, p, offsets[p as usize])?,
                from: offsets[p as usize],
                shard,
                cmds: cmd_rx,
                reports: report_tx.clone(),
            };
            cmds.push(cmd_tx);
            workers.push(thread::spawn(move || worker.run()));
        }
        Ok(Job {
            store,
            sink: Sink::open(dir.join("sink"))?,
            cmds,
            reports,
            workers,
            offsets,
            started: Instant::now(),
        })
    }

    /// Ends epoch `epoch` (a checkpoint if `checkpoint`): barrier, prepare,
    /// commit in the store, commit in the sink. True once every partition
    /// is consumed and committed.
    fn end_epoch(&mut self, epoch: u64, checkpoint: bool) -> Res<(EpochStat, bool)> {
        for c in &self.cmds {
            c.send(Cmd::Barrier(epoch)).map_err(|_| "a worker stopped")?;
        }
        let mut parts = Vec::new();
        while parts.len() < SHARDS as usize {
            if let Report::Prepared(p) = self.next_report()? {
                parts.push(p);
            }
        }
        parts.sort_by_key(|p| p.shard);
        let texts: Vec<String> = parts.iter().map(|p| p.text.clone()).collect();
        let tx = self.sink.prepare(epoch, &texts)?;

        let mut req = CheckpointRequest::default();
        for p in &parts {
            req.source_offsets.insert(source_name(p.shard), p.to);
            self.offsets[p.shard as usize] = p.to;
        }
        let sink = ConnectorCheckpoint {
            state: Vec::new(),
            prepared_transactions: vec![tx.clone()],
        };
        req.connectors.insert("sink".into(), sink);
        let store_time = if checkpoint {
            self.store.checkpoint(epoch, req)?.total_time
        } else {
            self.store.commit_epoch(epoch, &req)?.total_time
        };
        // Committed: every shard's record is durable. Now the sink.
        self.sink.commit(&tx)?;

        let mut pause = Duration::ZERO;
        for _ in 0..SHARDS {
            if let Report::Resumed(d) = self.next_report()? {
                pause = pause.max(d);
            }
        }
        let stat = EpochStat {
            epoch,
            checkpoint,
            store_time,
            pause,
            events: self.offsets.iter().sum(),
            at: self.started.elapsed(),
        };
        Ok((stat, parts.iter().all(|p| p.exhausted)))
    }

    fn next_report(&self) -> Res<Report> {
        self.reports
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "a worker stopped answering".into())
    }

    /// The clean stop: workers hand their shards back; a final checkpoint
    /// leaves nothing to replay.
    fn shutdown(self, epoch: u64) -> Res<()> {
        for c in &self.cmds {
            let _ = c.send(Cmd::Stop);
        }
        let mut shards = Vec::new();
        for w in self.workers {
            shards.push(w.join().map_err(|_| "a worker panicked")??);
        }
        let mut req = CheckpointRequest::default();
        for (p, &off) in self.offsets.iter().enumerate() {
            req.source_offsets.insert(source_name(p as u32), off);
        }
        self.store.shutdown(shards, epoch, req)?;
        Ok(())
    }
}

/// The child: runs the job, telling the parent of each epoch on stdout,
/// until the parent kills it.
fn job_process(dir: &Path) -> Res<()> {
    let mut out = std::io::stdout().lock();
    run_job(dir, &mut |s| {
        let _ = writeln!(out, "{}", s.to_line());
        let _ = out.flush();
    })?;
    Ok(())
}

// ----------------------------------------------------------------- crash --

struct Crash {
    epochs: Vec<EpochStat>,
    at: Duration,
    finished_first: bool,
}

/// Runs the job in a child process and SIGKILLs it after `after`, or once
/// 60% of the source is committed (a fast machine still crashes mid-run).
fn crash_run(dir: &Path, after: Duration) -> Res<Crash> {
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.arg("--job").arg(dir);
    if let Some(Some(url)) = PUSH.get() {
        cmd.arg("--push").arg(url);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn()?;
    let stdout = child.stdout.take().ok_or("no stdout from the job")?;
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            // A line cut by the kill does not parse: dropped.
            if let Some(s) = EpochStat::parse(&line)
                && tx.send(s).is_err()
            {
                break;
            }
        }
    });
    let started = Instant::now();
    let deadline = started + after;
    let mut epochs = Vec::new();
    // Until the deadline, the child's end, or 60% of the source; then a
    // little more, so the kill lands anywhere in an epoch's cycle (its
    // barrier, the sink's prepare, the commit, the sink's commit).
    while let Ok(s) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        epochs.push(s);
        if s.events * 10 >= EVENTS * 6 {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .subsec_nanos();
            thread::sleep(Duration::from_nanos(
                u64::from(nanos) % EPOCH_INTERVAL.as_nanos() as u64,
            ));
            break;
        }
    }
    let finished_first = child.try_wait()?.is_some();
    if !finished_first {
        child.kill()?; // SIGKILL: no destructor, no flush, no shutdown
    }
    let status = child.wait()?;
    let at = started.elapsed();
    let _ = reader.join();
    epochs.extend(rx.try_iter());
    if finished_first && !status.success() {
        return Err(format!("the job failed before the crash: {status}").into());
    }
    Ok(Crash {
        epochs,
        at,
        finished_first,
    })
}

// ----------------------------------------------------------------- check --

/// The crash-free run, computed in memory from the source files.
struct Model {
    sources: Vec<Partition>,
    counts: HashMap<(u32, u32), i64>,
    latest: HashMap<u32, u64>,
}

impl Model {
    fn new(dir: &Path) -> Res<Model> {
        Ok(Model {
            sources: (0..SHARDS)
                .map(|p| Partition::open(dir, p, 0))
                .collect::<Res<_>>()?,
            counts: HashMap::new(),
            latest: HashMap::new(),
        })
    }

    /// Applies partition `p` up to offset `to`; renders the part a worker
    /// should have emitted for those events.
    fn advance(&mut self, p: u32, to: u64) -> Res<String> {
        let src = &mut self.sources[p as usize];
        let from = src.offset;
        let (mut windows, mut keys) = (BTreeSet::new(), BTreeSet::new());
        while src.offset < to {
            let e = src.next()?.ok_or("a transaction covers events past the end")?;
            *self.counts.entry((e.key, e.window())).or_default() += 1;
            self.latest.insert(e.key, e.value);
            windows.insert((e.key, e.window()));
            keys.insert(e.key);
        }
        let counts: Vec<_> = windows
            .iter()
            .map(|&(k, w)| (k, w, self.counts[&(k, w)]))
            .collect();
        let latest: Vec<_> = keys.iter().map(|&k| (k, self.latest[&k])).collect();
        Ok(render_part(p, from, to, &counts, &latest))
    }
}

/// The sink's committed transactions against the crash-free run: each one
/// starts where the previous one of its shard ended (no event lost or
/// output twice) and is byte-identical to what a run without the crash
/// emits for the same events. Returns the number of transactions.
fn check_sink(dir: &Path, model: &mut Model) -> Res<usize> {
    let sink = Sink::open(dir.join("sink"))?;
    if let Some((_, tx)) = sink.list("pending")?.first() {
        return Err(format!("{tx} is still pending after the run").into());
    }
    let txs = sink.list("committed")?;
    for (epoch, tx) in &txs {
        let text = fs::read_to_string(sink.path(tx, "committed"))?;
        let mut expected = format!("epoch {epoch}\n");
        for line in text.lines().filter(|l| l.starts_with("shard ")) {
            let (p, from, to) = parse_header(line).ok_or_else(|| format!("{tx}: bad header {line:?}"))?;
            let at = model.sources[p as usize].offset;
            if from != at {
                return Err(format!("{tx}: shard {p} output starts at event {from}, expected {at}").into());
            }
            expected += &model.advance(p, to)?;
        }
        if text != expected {
            let diff = text.lines().zip(expected.lines()).find(|(a, b)| a != b);
            return Err(format!("{tx} differs from the crash-free run: (got, expected) = {diff:?}").into());
        }
    }
    for (p, src) in model.sources.iter().enumerate() {
        if src.offset != src.len {
            return Err(format!(
                "partition {p}: only {} of {} events reached the sink",
                src.offset, src.len
            )
            .into());
        }
    }
    Ok(txs.len())
}

/// `shard <p> events <from>..<to>`.
fn parse_header(line: &str) -> Option<(u32, u64, u64)> {
    let rest = line.strip_prefix("shard ")?;
    let (p, range) = rest.split_once(" events ")?;
    let (from, to) = range.split_once("..")?;
    let p: u32 = p.parse().ok()?;
    (p < SHARDS).then_some((p, from.parse().ok()?, to.parse().ok()?))
}

/// A spine's entries in key order: key, value, weight (Z-sets).
type Entries = Vec<(Vec<u8>, Vec<u8>, Option<i64>)>;

fn entries(shard: &mut Shard, id: SpineId) -> Res<Entries> {
    let mut c = shard.cursor(id)?;
    let mut out = Vec::new();
    while let Some(e) = c.current() {
        out.push((e.key.to_vec(), e.value.to_vec(), c.weight()));
        c.advance()?;
    }
    Ok(out)
}

/// The final state in the store, entry for entry, against the model.
fn check_state(dir: &Path, model: &Model) -> Res<(usize, usize)> {
    let mut store = Options::new(dir.join("store"))
        .shards(SHARDS)
        .fingerprint(FINGERPRINT)
        .open()?;
    let (mut counts, mut latest) = (0, 0);
    for mut shard in store.take_shards() {
        let p = shard.id();
        let mut want_counts: Entries = (model.counts.iter())
            .filter(|((k, _), _)| partition_of(*k) == p)
            .map(|(&(k, w), &n)| (count_key(k, w).to_vec(), Vec::new(), Some(n)))
            .collect();
        want_counts.sort();
        let mut want_latest: Entries = (model.latest.iter())
            .filter(|(k, _)| partition_of(**k) == p)
            .map(|(k, v)| (k.to_be_bytes().to_vec(), v.to_le_bytes().to_vec(), None))
            .collect();
        want_latest.sort();
        let z = shard.zset_spine("counts").ok_or("no counts spine")?;
        if entries(&mut shard, z.id())? != want_counts {
            return Err(format!("shard {p}: the window counts differ from the crash-free run").into());
        }
        let kv = shard.kv_spine("latest").ok_or("no latest spine")?;
        if entries(&mut shard, kv.id())? != want_latest {
            return Err(format!("shard {p}: the latest values differ from the crash-free run").into());
        }
        counts += want_counts.len();
        latest += want_latest.len();
    }
    Ok((counts, latest))
}

// ------------------------------------------------------------------ main --

fn demo(args: &[String]) -> Res<()> {
    let secs: f64 = args
        .first()
        .map_or(Ok(3.0), |s| s.parse())
        .map_err(|_| "seconds must be a number")?;
    let tmp = tempfile::tempdir()?;
    let dir = args
        .get(1)
        .map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    for sub in ["source", "store", "sink"] {
        let _ = fs::remove_dir_all(dir.join(sub));
    }
    println!("statespine demo in {}", dir.display());
    let t = Instant::now();
    let lens = generate(&dir)?;
    println!(
        "source        {EVENTS} events in {SHARDS} partitions by key hash ({lens:?}), generated in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    println!(
        "job           count per key per {WINDOW_MS} ms window (Z-set) + latest value per key (KV) on {SHARDS} shards; \
         an epoch every {} ms, each {CHECKPOINT_EVERY}th a checkpoint; a 2PC sink",
        EPOCH_INTERVAL.as_millis()
    );

    let crash = crash_run(&dir, Duration::from_secs_f64(secs))?;
    print_crash(&crash);
    let run = run_job(&dir, &mut |_| {})?;
    print_run(&run);
    let all: Vec<EpochStat> = crash.epochs.iter().chain(&run.epochs).copied().collect();
    print_latencies(&all);

    let t = Instant::now();
    let mut model = Model::new(&dir)?;
    let txs = check_sink(&dir, &mut model)?;
    let (counts, latest) = check_state(&dir, &model)?;
    println!(
        "verified      {txs} committed sink transactions hold every event's output exactly once, each \
         byte-identical to a crash-free run's; the final state ({counts} window counts, {latest} latest \
         values) is exact ({:.1} s)",
        t.elapsed().as_secs_f64()
    );
    print_pushed()
}

// ---------------------------------------------------------------- remote --

/// `opts`, pushing to the `--push` bucket if one was given.
fn push_to(opts: Options) -> Res<Options> {
    match PUSH.get() {
        Some(Some(url)) => push_to_url(opts, url),
        _ => Ok(opts),
    }
}

#[cfg(feature = "remote")]
fn push_to_url(opts: Options, url: &str) -> Res<Options> {
    Ok(opts.push_to(statespine::remote::Remote::from_url(url)?))
}

#[cfg(not(feature = "remote"))]
fn push_to_url(_: Options, _: &str) -> Res<Options> {
    Err(
        "--push needs the remote feature: cargo run --release --features remote --example demo -- --push URL"
            .into(),
    )
}

/// What the bucket holds after the run.
#[cfg(feature = "remote")]
fn print_pushed() -> Res<()> {
    let Some(Some(url)) = PUSH.get() else {
        return Ok(());
    };
    let remote = statespine::remote::Remote::from_url(url)?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let (m, _) = rt.block_on(statespine::remote::newest_manifest(&remote))?;
    let m = m.ok_or("the bucket holds no manifest")?;
    let newest = m.newest().ok_or("the bucket holds no checkpoint")?;
    println!(
        "pushed        {url}: manifest {} by writer epoch {} (the killed process's pushes fenced), \
         newest checkpoint epoch {} ({} objects, {:.1} MB), {} retained; restore it with --restore {url}",
        m.seq,
        m.writer_epoch,
        newest.epoch,
        newest.objects.len(),
        newest.bytes() as f64 / 1e6,
        m.checkpoints.len()
    );
    Ok(())
}

#[cfg(not(feature = "remote"))]
fn print_pushed() -> Res<()> {
    Ok(())
}

/// `--restore URL [dir]`: the bucket's newest checkpoint into an empty
/// store in `dir`, checked against the source replayed to its offsets.
#[cfg(feature = "remote")]
fn restore_command(url: &str, dir: Option<&String>) -> Res<()> {
    let tmp = tempfile::tempdir()?;
    let dir = dir.map_or_else(|| tmp.path().to_path_buf(), PathBuf::from);
    for sub in ["source", "store", "sink"] {
        let _ = fs::remove_dir_all(dir.join(sub));
    }
    println!("statespine restore from {url} into {}", dir.display());
    generate(&dir)?;
    let remote = statespine::remote::Remote::from_url(url)?;
    let t = Instant::now();
    let state = Options::new(dir.join("store"))
        .shards(SHARDS)
        .fingerprint(FINGERPRINT)
        .restore_from(remote)
        .recover()?;
    let took = t.elapsed();
    let r = state.restored.clone().ok_or("the bucket holds no checkpoint")?;
    println!(
        "restored      checkpoint of epoch {} from manifest {}: {} objects, {:.1} MB in {:.1} ms \
         (every object checked against its crc32c{}); readable after {:.1} ms",
        r.epoch,
        r.manifest_seq,
        r.objects,
        r.bytes as f64 / 1e6,
        ms(r.duration),
        if r.skipped.is_empty() {
            String::new()
        } else {
            format!(", {} damaged passed over", r.skipped.len())
        },
        ms(took)
    );
    let offsets: Vec<u64> = (0..SHARDS)
        .map(|p| state.source_offsets.get(&source_name(p)).copied().unwrap_or(0))
        .collect();
    drop(state);
    let mut model = Model::new(&dir)?;
    for (p, &to) in offsets.iter().enumerate() {
        model.advance(p as u32, to)?;
    }
    let (counts, latest) = check_state(&dir, &model)?;
    println!(
        "verified      the restored state ({counts} window counts, {latest} latest values) is exactly the \
         source replayed to the checkpoint's offsets {offsets:?}"
    );
    Ok(())
}

#[cfg(not(feature = "remote"))]
fn restore_command(_: &str, _: Option<&String>) -> Res<()> {
    Err("--restore needs the remote feature: cargo run --release --features remote --example demo -- --restore URL".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn print_crash(crash: &Crash) {
    let Some(last) = crash.epochs.last() else {
        println!(
            "run 1         killed at {:.2} s, before its first epoch",
            crash.at.as_secs_f64()
        );
        return;
    };
    let what = if crash.finished_first {
        "finished before the kill (no crash this time)"
    } else {
        "SIGKILLed"
    };
    println!(
        "run 1         {:.2} M events/s; {what} at {:.2} s, epoch {} ({} events) the last it saw committed",
        last.events as f64 / last.at.as_secs_f64() / 1e6,
        crash.at.as_secs_f64(),
        last.epoch,
        last.events,
    );
}

fn print_run(run: &JobReport) {
    let r = &run.recovered;
    let base = match (r.epoch, r.from_checkpoint) {
        (0, _) => "nothing committed yet",
        (_, true) => "checkpoint + WAL",
        (_, false) => "WAL only",
    };
    println!(
        "recovery      {:.1} ms to a readable store at epoch {} ({base}): {} WAL records replayed, {} discarded past the epoch",
        ms(r.store_time),
        r.epoch,
        r.replayed,
        r.discarded
    );
    println!(
        "sink          committed {:?}, aborted {:?} ({:.1} ms); sources rewound to {:?}",
        r.committed,
        r.aborted,
        ms(r.sink_time),
        r.offsets
    );
    println!(
        "run 2         {:.2} M events/s: the remaining {} events in {:.2} s, {} epochs",
        run.events as f64 / run.elapsed.as_secs_f64() / 1e6,
        run.events,
        run.elapsed.as_secs_f64(),
        run.epochs.len()
    );
}

fn percentiles(mut v: Vec<Duration>) -> String {
    if v.is_empty() {
        return "none".into();
    }
    v.sort();
    let at = |p: f64| ms(v[((v.len() - 1) as f64 * p).round() as usize]);
    format!("p50 {:.2} ms, p99 {:.2} ms over {}", at(0.5), at(0.99), v.len())
}

fn print_latencies(all: &[EpochStat]) {
    let of = |checkpoint: bool| {
        all.iter()
            .filter(|s| s.checkpoint == checkpoint)
            .map(|s| s.store_time)
            .collect()
    };
    println!(
        "epoch commit  {} (request to durable on every shard)",
        percentiles(of(false))
    );
    println!("checkpoint    {}", percentiles(of(true)));
    println!(
        "worker pause  {} (barrier: emit the epoch's output, sink prepare, the commit record)",
        percentiles(all.iter().map(|s| s.pause).collect())
    );
}
