//! The table (markdown) and the chart (SVG) from the collected samples.

use std::fmt::Write;

use crate::Samples;

#[derive(Clone, Copy)]
enum Unit {
    Ops,
    Ms,
    Ns,
    Bytes,
    MiB,
    Ratio,
}

struct Row {
    metric: &'static str,
    label: &'static str,
    unit: Unit,
    /// Higher is better (a rate) or lower is (a time, a size).
    higher: bool,
    /// statespine's goal against each peer: "ahead by this factor".
    goals: &'static [(&'static str, f64)],
}

const fn row(
    metric: &'static str,
    label: &'static str,
    unit: Unit,
    higher: bool,
    goals: &'static [(&'static str, f64)],
) -> Row {
    Row {
        metric,
        label,
        unit,
        higher,
        goals,
    }
}

const ROWS: &[Row] = &[
    row(
        "fillrandom_ops",
        "fillrandom (batches of 1,000), ops/s",
        Unit::Ops,
        true,
        &[("rocksdb", 3.0), ("fjall", 2.0)],
    ),
    row(
        "fillseq_ops",
        "fillseq (batches of 1,000), ops/s",
        Unit::Ops,
        true,
        &[],
    ),
    row(
        "fillsync_ops",
        "fillsync (sync every 10,000), ops/s",
        Unit::Ops,
        true,
        &[],
    ),
    row(
        "read_present_ops",
        "readrandom present, ops/s",
        Unit::Ops,
        true,
        &[("rocksdb", 1.5), ("fjall", 1.5)],
    ),
    row(
        "read_present_p50_ns",
        "readrandom present p50",
        Unit::Ns,
        false,
        &[],
    ),
    row(
        "read_present_p99_ns",
        "readrandom present p99",
        Unit::Ns,
        false,
        &[],
    ),
    row(
        "read_absent_ops",
        "readrandom absent, ops/s",
        Unit::Ops,
        true,
        &[("rocksdb", 2.0), ("fjall", 2.0)],
    ),
    row(
        "read_absent_p50_ns",
        "readrandom absent p50",
        Unit::Ns,
        false,
        &[],
    ),
    row(
        "read_absent_p99_ns",
        "readrandom absent p99",
        Unit::Ns,
        false,
        &[],
    ),
    row(
        "scan_eps",
        "full ordered scan, entries/s",
        Unit::Ops,
        true,
        &[("rocksdb", 3.0), ("fjall", 3.0)],
    ),
    row(
        "zset_ops",
        "Z-set updates, ops/s",
        Unit::Ops,
        true,
        &[("rocksdb", 5.0)],
    ),
    row("ck_full_ms", "checkpoint, full", Unit::Ms, false, &[]),
    row(
        "ck_full_bytes",
        "checkpoint, full: bytes newly written",
        Unit::Bytes,
        false,
        &[],
    ),
    row(
        "ck_incr_ms",
        "checkpoint after 1% overwritten",
        Unit::Ms,
        false,
        &[("rocksdb", 10.0)],
    ),
    row(
        "ck_incr_bytes",
        "checkpoint after 1%: bytes newly written",
        Unit::Bytes,
        false,
        &[],
    ),
    row(
        "reopen_live_ms",
        "reopen to first read, live directory",
        Unit::Ms,
        false,
        &[("rocksdb", 5.0), ("fjall", 5.0)],
    ),
    row(
        "reopen_ck_ms",
        "reopen to first read, from the checkpoint",
        Unit::Ms,
        false,
        &[("rocksdb", 5.0), ("fjall", 5.0)],
    ),
    row(
        "close_ms",
        "clean close after 1% more writes",
        Unit::Ms,
        false,
        &[],
    ),
    row(
        "settle_ms",
        "settle after fillrandom (flush, merges)",
        Unit::Ms,
        false,
        &[],
    ),
    row(
        "disk_bytes",
        "disk after settling + a checkpoint",
        Unit::Bytes,
        false,
        &[],
    ),
    row(
        "space_amp",
        "space amplification (disk / 116 B × entries)",
        Unit::Ratio,
        false,
        &[],
    ),
    row("rss_mib", "peak RSS, main group", Unit::MiB, false, &[]),
    row("zset_rss_mib", "peak RSS, Z-set group", Unit::MiB, false, &[]),
];

const PEERS: [&str; 2] = ["rocksdb", "fjall"];

fn median(v: &[f64]) -> Option<f64> {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

fn med(s: &Samples, metric: &str, engine: &str) -> Option<f64> {
    s.get(metric).and_then(|m| m.get(engine)).and_then(|v| median(v))
}

/// A short human form of a number.
pub fn short(v: f64) -> String {
    let a = v.abs();
    if a >= 1e9 {
        format!("{:.2}G", v / 1e9)
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.0}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}

fn cell(v: Option<f64>, unit: Unit) -> String {
    let Some(v) = v else { return "n/a".into() };
    match unit {
        Unit::Ops => format!("{:.3} M", v / 1e6),
        Unit::Ms => format!("{v:.1} ms"),
        Unit::Ns if v >= 10_000.0 => format!("{:.1} µs", v / 1e3),
        Unit::Ns => format!("{v:.0} ns"),
        Unit::Bytes if v >= 1e6 => format!("{:.1} MB", v / 1e6),
        Unit::Bytes if v >= 1e3 => format!("{:.1} KB", v / 1e3),
        Unit::Bytes => format!("{v:.0} B"),
        Unit::MiB => format!("{v:.0} MiB"),
        Unit::Ratio => format!("{v:.2}"),
    }
}

/// statespine's advantage over `peer` (above 1: statespine ahead).
fn advantage(s: &Samples, r: &Row, peer: &str) -> Option<f64> {
    let ours = med(s, r.metric, "statespine")?;
    let theirs = med(s, r.metric, peer)?;
    if ours <= 0.0 || theirs <= 0.0 {
        return None;
    }
    Some(if r.higher { ours / theirs } else { theirs / ours })
}

fn spread(s: &Samples, metric: &str) -> Option<f64> {
    let v = s.get(metric)?.get("statespine")?;
    let m = median(v)?;
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (m > 0.0).then(|| (hi - lo) / m * 100.0)
}

/// Goals met: `Some(true)` all met, `Some(false)` one missed, `None` none set
/// or a peer missing.
fn met(s: &Samples, r: &Row) -> (String, String) {
    if r.goals.is_empty() {
        return ("—".into(), "—".into());
    }
    let goal = r
        .goals
        .iter()
        .map(|(p, f)| format!("≥ {f}× {p}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut missing = Vec::new();
    let mut unknown = false;
    for (peer, f) in r.goals {
        match advantage(s, r, peer) {
            Some(a) if a >= *f => {}
            Some(_) => missing.push(*peer),
            None => unknown = true,
        }
    }
    let verdict = match (missing.is_empty(), unknown) {
        (true, false) => "yes".to_string(),
        (true, true) => "yes (where measured)".to_string(),
        (false, _) => format!("**no** ({})", missing.join(", ")),
    };
    (goal, verdict)
}

pub fn markdown(s: &Samples, options: &[(String, String)], n: u64, threads: usize, runs: usize) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{n} entries (16-byte random keys, 100-byte values compressible to ~50%), {threads} writer \
         thread(s), median of {runs} run(s); ratios are statespine's advantage (above 1×: ahead; \
         times and sizes inverted so that higher is better).\n"
    );
    let _ = writeln!(
        out,
        "| workload | statespine | RocksDB | fjall | vs RocksDB | vs fjall | statespine spread | goal | met |"
    );
    let _ = writeln!(out, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
    for r in ROWS {
        if !s.contains_key(r.metric) {
            continue;
        }
        let adv = |p| advantage(s, r, p).map_or("n/a".to_string(), |a| format!("{a:.2}×"));
        let (goal, verdict) = met(s, r);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            cell(med(s, r.metric, "statespine"), r.unit),
            cell(med(s, r.metric, "rocksdb"), r.unit),
            cell(med(s, r.metric, "fjall"), r.unit),
            adv("rocksdb"),
            adv("fjall"),
            spread(s, r.metric).map_or("—".into(), |p| format!("{p:.0}%")),
            goal,
            verdict
        );
    }
    let _ = writeln!(out, "\nOptions:\n");
    for (e, o) in options {
        let _ = writeln!(out, "- **{e}**: {o}");
    }
    out
}

/// The chart's name of a row.
fn chart_label(metric: &str) -> &str {
    match metric {
        "fillrandom_ops" => "fillrandom",
        "fillseq_ops" => "fillseq",
        "fillsync_ops" => "fillsync",
        "read_present_ops" => "readrandom, present",
        "read_absent_ops" => "readrandom, absent",
        "scan_eps" => "full ordered scan",
        "zset_ops" => "Z-set updates",
        "ck_full_ms" => "checkpoint, full",
        "ck_incr_ms" => "checkpoint after 1% changed",
        "ck_incr_bytes" => "… bytes it wrote",
        "reopen_live_ms" => "reopen, live directory",
        "reopen_ck_ms" => "reopen, from the checkpoint",
        "close_ms" => "clean close",
        "settle_ms" => "settle after fillrandom",
        "rss_mib" => "peak RSS, main",
        "zset_rss_mib" => "peak RSS, Z-set",
        other => other,
    }
}

/// The samples as lines of `metric engine value` (`--samples`), and back
/// (`--replot`): the table and chart can be redrawn without measuring.
pub fn samples_tsv(s: &Samples) -> String {
    let mut out = String::new();
    for (metric, engines) in s {
        for (engine, values) in engines {
            for v in values {
                let _ = writeln!(out, "{metric}\t{engine}\t{v}");
            }
        }
    }
    out
}

pub fn parse_samples(text: &str) -> Option<Samples> {
    let mut s = Samples::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let mut f = line.split('\t');
        let (m, e, v) = (f.next()?, f.next()?, f.next()?.parse().ok()?);
        s.entry(m.to_string())
            .or_default()
            .entry(e.to_string())
            .or_default()
            .push(v);
    }
    Some(s)
}

/// A horizontal bar chart of statespine's advantage over each peer per
/// workload, on a log scale, with each goal marked.
pub fn svg(s: &Samples, n: u64, threads: usize, runs: usize) -> String {
    let rows: Vec<&Row> = ROWS
        .iter()
        .filter(|r| {
            !matches!(r.unit, Unit::Ns | Unit::Ratio) && !r.metric.ends_with("_bytes")
                || r.metric == "ck_incr_bytes"
        })
        .filter(|r| PEERS.iter().any(|p| advantage(s, r, p).is_some()))
        .collect();
    let (left, width, top, row_h) = (330.0, 520.0, 60.0, 34.0);
    let (lo, hi) = (-1.0f64, 3.0f64); // 0.1× to 1000×
    let x = |ratio: f64| left + (ratio.log10().clamp(lo, hi) - lo) / (hi - lo) * width;
    let height = top + row_h * rows.len() as f64 + 40.0;
    let mut o = String::new();
    let _ = writeln!(
        o,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{:.0}" height="{height:.0}" font-family="sans-serif" font-size="12">"#,
        left + width + 90.0
    );
    let _ = writeln!(o, r#"<rect width="100%" height="100%" fill="white"/>"#);
    let _ = writeln!(
        o,
        r#"<text x="10" y="20" font-size="14" font-weight="bold">statespine's advantage (× , log scale; right of 1× = ahead)</text>"#
    );
    let _ = writeln!(
        o,
        r#"<text x="10" y="38">{n} entries, {threads} thread(s), median of {runs} runs. Bars: vs RocksDB (blue), vs fjall (orange); black ticks: goals.</text>"#
    );
    for d in [0.1, 1.0, 10.0, 100.0, 1000.0] {
        let xv = x(d);
        let stroke = if d == 1.0 { "#000" } else { "#ccc" };
        let _ = writeln!(
            o,
            r#"<line x1="{xv:.1}" y1="{top}" x2="{xv:.1}" y2="{:.1}" stroke="{stroke}"/><text x="{xv:.1}" y="{:.1}" text-anchor="middle">{d}×</text>"#,
            height - 35.0,
            height - 20.0
        );
    }
    for (i, r) in rows.iter().enumerate() {
        let y = top + row_h * i as f64;
        let label = chart_label(r.metric);
        let _ = writeln!(
            o,
            r#"<text x="{:.1}" y="{:.1}" text-anchor="end">{label}</text>"#,
            left - 8.0,
            y + 20.0
        );
        for (j, (peer, color)) in PEERS.iter().zip(["#4e79a7", "#f28e2b"]).enumerate() {
            let Some(a) = advantage(s, r, peer) else { continue };
            let by = y + 4.0 + 13.0 * j as f64;
            let (x0, x1) = (x(1.0).min(x(a)), x(1.0).max(x(a)));
            let _ = writeln!(
                o,
                r#"<rect x="{x0:.1}" y="{by:.1}" width="{:.1}" height="12" fill="{color}"/><text x="{:.1}" y="{:.1}" font-size="10">{a:.2}×</text>"#,
                (x1 - x0).max(1.0),
                x1.max(x(1.0)) + 4.0,
                by + 10.0
            );
            if let Some((_, g)) = r.goals.iter().find(|(p, _)| p == peer) {
                let gx = x(*g);
                let _ = writeln!(
                    o,
                    r##"<line x1="{gx:.1}" y1="{by:.1}" x2="{gx:.1}" y2="{:.1}" stroke="#000" stroke-width="2"/>"##,
                    by + 12.0
                );
            }
        }
    }
    o.push_str("</svg>\n");
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(metric: &str, values: &[(&str, &[f64])]) -> Samples {
        let mut s = Samples::new();
        for (engine, v) in values {
            s.entry(metric.to_string())
                .or_default()
                .insert(engine.to_string(), v.to_vec());
        }
        s
    }

    #[test]
    fn medians_and_advantages_point_the_right_way() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), Some(2.5));
        let rate = &ROWS[0];
        assert!(rate.higher);
        let s = samples(
            rate.metric,
            &[("statespine", &[3.0, 9.0, 6.0]), ("rocksdb", &[2.0, 2.0, 2.0])],
        );
        assert_eq!(advantage(&s, rate, "rocksdb"), Some(3.0));
        assert_eq!(advantage(&s, rate, "fjall"), None);
        let time = ROWS.iter().find(|r| r.metric == "ck_incr_ms").unwrap();
        let s = samples(time.metric, &[("statespine", &[1.0]), ("rocksdb", &[20.0])]);
        assert_eq!(advantage(&s, time, "rocksdb"), Some(20.0));
        assert_eq!(met(&s, time).1, "yes");
        let s = samples(time.metric, &[("statespine", &[4.0]), ("rocksdb", &[20.0])]);
        assert!(met(&s, time).1.starts_with("**no**"));
    }
}
