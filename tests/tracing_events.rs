//! What a `tracing` subscriber hears from recovery: the checkpoint chosen,
//! each damaged one passed over (a WARN naming it), each shard's replay and
//! a torn WAL tail cut, all inside the `recovery` span; and nothing from
//! the write path.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use statespine::io::{Fs, MemFs};
use statespine::store::{CheckpointRequest, Options, RecoveredState, Shard};
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Level, Metadata, Subscriber};

const ROOT: &str = "/db";
const WAIT: Duration = Duration::from_secs(10);

/// One event as the recorder saw it.
#[derive(Debug, Clone)]
struct Seen {
    level: Level,
    message: String,
    fields: BTreeMap<String, String>,
    /// The innermost span entered on the event's thread.
    span: Option<String>,
}

/// One span as the recorder saw it made.
#[derive(Debug, Clone)]
struct SpanSeen {
    name: &'static str,
    fields: BTreeMap<String, String>,
}

#[derive(Debug, Default)]
struct Log {
    events: Mutex<Vec<Seen>>,
    spans: Mutex<Vec<SpanSeen>>,
}

thread_local! {
    /// The spans entered on this thread, innermost last (by id).
    static ENTERED: RefCell<Vec<u64>> = const { RefCell::new(Vec::new()) };
}

/// A hand-written subscriber that keeps every event and span.
#[derive(Debug, Clone, Default)]
struct Recorder(Arc<Log>);

/// Collects an event's or a span's fields as text.
struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_owned(), value.to_owned());
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_owned(), format!("{value:?}"));
    }
}

impl Subscriber for Recorder {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }

    fn new_span(&self, attrs: &Attributes<'_>) -> Id {
        let mut fields = BTreeMap::new();
        attrs.record(&mut Fields(&mut fields));
        let mut spans = self.0.spans.lock().unwrap();
        spans.push(SpanSeen {
            name: attrs.metadata().name(),
            fields,
        });
        Id::from_u64(spans.len() as u64)
    }

    fn record(&self, _: &Id, _: &Record<'_>) {}

    fn record_follows_from(&self, _: &Id, _: &Id) {}

    fn event(&self, event: &Event<'_>) {
        let mut fields = BTreeMap::new();
        event.record(&mut Fields(&mut fields));
        let message = fields.remove("message").unwrap_or_default();
        let span = ENTERED.with(|e| e.borrow().last().copied()).map(|id| {
            let spans = self.0.spans.lock().unwrap();
            spans[id as usize - 1].name.to_owned()
        });
        self.0.events.lock().unwrap().push(Seen {
            level: *event.metadata().level(),
            message,
            fields,
            span,
        });
    }

    fn enter(&self, span: &Id) {
        ENTERED.with(|e| e.borrow_mut().push(span.into_u64()));
    }

    fn exit(&self, span: &Id) {
        ENTERED.with(|e| {
            let mut e = e.borrow_mut();
            if let Some(at) = e.iter().rposition(|id| *id == span.into_u64()) {
                e.remove(at);
            }
        });
    }
}

impl Recorder {
    fn events(&self) -> Vec<Seen> {
        self.0.events.lock().unwrap().clone()
    }

    fn spans(&self) -> Vec<SpanSeen> {
        self.0.spans.lock().unwrap().clone()
    }

    /// The events with this message.
    fn named(&self, message: &str) -> Vec<Seen> {
        self.events()
            .into_iter()
            .filter(|e| e.message == message)
            .collect()
    }
}

fn options(fs: &Arc<MemFs>) -> Options {
    Options::new(ROOT).fs(fs.clone()).shards(2)
}

/// Writes `n` keys per shard from `from` on, durably.
fn write(shards: &mut [Shard], from: u32, n: u32) {
    for s in shards.iter_mut() {
        let kv = match s.kv_spine("kv") {
            Some(kv) => kv,
            None => s.create_kv("kv").unwrap(),
        };
        let mut last = None;
        for i in from..from + n {
            last = Some(s.put(kv, format!("key-{i}").as_bytes(), b"value").unwrap());
        }
        s.wait_durable(last.unwrap(), WAIT).unwrap();
    }
}

/// Two shards: checkpoints of epochs 1 and 2, then writes committed in
/// epoch 3; returns the checkpoints' ids, oldest first.
fn store_with_two_checkpoints(fs: &Arc<MemFs>) -> Vec<uuid::Uuid> {
    let mut st = options(fs).recover().unwrap();
    let mut shards = st.store.take_shards();
    for (epoch, from) in [(1, 0), (2, 100)] {
        write(&mut shards, from, 100);
        let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
        st.store
            .checkpoint_inline(&mut refs, epoch, CheckpointRequest::default())
            .unwrap();
    }
    write(&mut shards, 200, 100);
    let mut refs: Vec<&mut Shard> = shards.iter_mut().collect();
    st.store
        .commit_epoch_inline(&mut refs, 3, &CheckpointRequest::default())
        .unwrap();
    st.store
        .coordinator()
        .retained()
        .into_iter()
        .map(|(id, _)| id)
        .collect()
}

/// Recovers the store at `fs` with `recorder` listening on this thread.
fn recover_recorded(fs: &Arc<MemFs>, recorder: &Recorder) -> RecoveredState {
    tracing::subscriber::with_default(recorder.clone(), || options(fs).recover().unwrap())
}

#[test]
fn recovery_past_a_damaged_newest_checkpoint_warns_naming_it() {
    let fs = Arc::new(MemFs::new());
    let ids = store_with_two_checkpoints(&fs);
    let newest = *ids.last().unwrap();
    common::damage_manifest(&fs, ROOT, newest);

    let recorder = Recorder::default();
    let state = recover_recorded(&fs, &recorder);
    assert_eq!(state.checkpoint_id, Some(ids[0]), "rebuilt from the one before");
    assert_eq!(state.epoch, 3);

    let fallbacks = recorder.named("fallback past damaged checkpoint");
    assert_eq!(fallbacks.len(), 1, "{:#?}", recorder.events());
    let warn = &fallbacks[0];
    assert_eq!(warn.level, Level::WARN);
    assert_eq!(warn.fields["checkpoint"], newest.to_string());
    assert!(warn.fields["reason"].contains("checksum"), "{warn:?}");
    assert_eq!(warn.span.as_deref(), Some("recovery"));

    let chosen = recorder.named("checkpoint chosen");
    assert_eq!(chosen.len(), 1);
    assert_eq!(chosen[0].fields["checkpoint"], ids[0].to_string());
    assert_eq!(chosen[0].fields["epoch"], "1");

    let set_aside = recorder.named("damaged checkpoint set aside");
    assert_eq!(set_aside.len(), 1);
    assert_eq!(set_aside[0].fields["checkpoint"], newest.to_string());
    assert!(
        fs.exists(
            &Path::new(ROOT)
                .join("checkpoints")
                .join(format!("{newest}.damaged"))
        )
        .unwrap()
    );
}

#[test]
fn a_normal_recovery_says_which_checkpoint_and_what_each_shard_replayed() {
    let fs = Arc::new(MemFs::new());
    let ids = store_with_two_checkpoints(&fs);
    let recorder = Recorder::default();
    let state = recover_recorded(&fs, &recorder);
    assert_eq!((state.checkpoint_id, state.epoch), (Some(ids[1]), 3));

    let spans = recorder.spans();
    let recovery = spans
        .iter()
        .find(|s| s.name == "recovery")
        .expect("a recovery span");
    assert_eq!(recovery.fields["shards"], "2");

    let chosen = recorder.named("checkpoint chosen");
    assert_eq!(chosen.len(), 1, "{:#?}", recorder.events());
    assert_eq!(chosen[0].level, Level::INFO);
    assert_eq!(chosen[0].fields["checkpoint"], ids[1].to_string());
    assert_eq!(chosen[0].fields["epoch"], "2");
    assert_eq!(chosen[0].span.as_deref(), Some("recovery"));

    let replayed = recorder.named("shard replayed");
    assert_eq!(replayed.len(), 2, "one per shard");
    for (n, e) in replayed.iter().enumerate() {
        assert_eq!(e.level, Level::INFO);
        assert_eq!(e.fields["shard"], n.to_string());
        // 100 puts and the epoch-3 commit record after the checkpoint.
        let records: u64 = e.fields["records"].parse().unwrap();
        assert!(records >= 100, "{e:?}");
        assert!(e.fields["bytes"].parse::<u64>().unwrap() > 0, "{e:?}");
        assert!(e.fields.contains_key("elapsed_us"), "{e:?}");
        assert_eq!(e.span.as_deref(), Some("recovery"));
    }

    let done = recorder.named("recovered");
    assert_eq!(done.len(), 1);
    assert_eq!(done[0].fields["epoch"], "3");
    assert!(done[0].fields.contains_key("select_us") && done[0].fields.contains_key("restore_us"));
    let loud: Vec<Seen> = recorder
        .events()
        .into_iter()
        .filter(|e| e.level <= Level::WARN)
        .collect();
    assert!(loud.is_empty(), "a clean recovery warns of nothing: {loud:#?}");
}

#[test]
fn a_torn_wal_tail_is_reported_from_the_recovery_threads() {
    let fs = Arc::new(MemFs::new());
    store_with_two_checkpoints(&fs);
    let wal = Path::new(ROOT).join("shards").join("1").join("wal");
    let mut segments = fs.list(&wal).unwrap();
    segments.sort();
    let last = wal.join(segments.last().unwrap());
    let mut bytes = fs.read(&last).unwrap();
    let cut = bytes.len();
    bytes.extend_from_slice(&[0xAB; 40]);
    fs.write(&last, &bytes).unwrap();

    let recorder = Recorder::default();
    recover_recorded(&fs, &recorder);
    let torn = recorder.named("torn wal tail cut");
    assert_eq!(torn.len(), 1, "{:#?}", recorder.events());
    assert_eq!(torn[0].level, Level::WARN);
    assert_eq!(torn[0].fields["file"], last.display().to_string());
    assert_eq!(torn[0].fields["offset"], cut.to_string());
    assert_eq!(torn[0].fields["bytes"], "40");
    assert_eq!(
        torn[0].span.as_deref(),
        Some("recovery"),
        "the span follows the work"
    );
}

#[test]
fn writes_emit_nothing() {
    let fs = Arc::new(MemFs::new());
    let mut st = options(&fs).recover().unwrap();
    let mut shards = st.store.take_shards();
    write(&mut shards, 0, 10);
    let recorder = Recorder::default();
    tracing::subscriber::with_default(recorder.clone(), || write(&mut shards, 10, 2000));
    assert!(recorder.events().is_empty(), "{:#?}", recorder.events());
}
