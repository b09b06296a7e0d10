//! The run's report: history, fault timeline, results and plots (SVG), all in the run's
//! directory.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use serde_json::json;

use crate::history::{pairs, Event, Kind, Op, NEMESIS};

/// A fault's window: [start, stop] in nanoseconds, with its name and details.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Window {
    pub fault: String,
    pub start: u64,
    pub stop: Option<u64>,
    pub start_detail: String,
    pub stop_detail: String,
}

pub fn windows(history: &[Event]) -> Vec<Window> {
    let mut out: Vec<Window> = Vec::new();
    for e in history.iter().filter(|e| e.process == NEMESIS) {
        let Op::Nemesis { fault, detail } = &e.op else {
            continue;
        };
        if let Some(name) = fault.strip_prefix("start-") {
            out.push(Window {
                fault: name.to_string(),
                start: e.time,
                stop: None,
                start_detail: detail.clone(),
                stop_detail: String::new(),
            });
        } else if let Some(name) = fault.strip_prefix("stop-") {
            if let Some(w) = out
                .iter_mut()
                .rev()
                .find(|w| w.fault == name && w.stop.is_none())
            {
                w.stop = Some(e.time);
                w.stop_detail = detail.clone();
            }
        }
    }
    out
}

/// Operation counts per function and outcome.
pub fn counts(history: &[Event]) -> serde_json::Value {
    let mut m: BTreeMap<String, BTreeMap<&'static str, usize>> = BTreeMap::new();
    for p in pairs(history) {
        let k = match p.kind() {
            Kind::Ok => "ok",
            Kind::Fail => "fail",
            _ => "unknown",
        };
        *m.entry(p.invoke.op.name().to_string())
            .or_default()
            .entry(k)
            .or_default() += 1;
    }
    json!(m)
}

/// For every fault's end, milliseconds until the next write that succeeded. A fault that
/// ended after the last write was invoked (the final heal, once clients have stopped) has
/// no figure (`after-load`): the only writes left then are stragglers from before it, so
/// the time would measure them, not the cluster's recovery. And the longest time during
/// the fault with no write succeeding (between its start, the successes and its end): for
/// a kill or pause of the leader's master (detail `mN (leader)`), how long writes stopped.
pub fn heal_to_first_write(history: &[Event], windows: &[Window]) -> Vec<serde_json::Value> {
    let mut oks: Vec<u64> = pairs(history)
        .iter()
        .filter(|p| p.invoke.op.is_write() && p.kind() == Kind::Ok)
        .filter_map(|p| p.complete.as_ref().map(|c| c.time))
        .collect();
    oks.sort_unstable();
    let last_write_invoked = history
        .iter()
        .filter(|e| e.kind == Kind::Invoke && e.op.is_write())
        .map(|e| e.time)
        .max();
    windows
        .iter()
        .filter_map(|w| {
            let stop = w.stop?;
            let after_load = last_write_invoked.is_none_or(|t| stop > t);
            let first = oks.iter().copied().find(|&t| t >= stop);
            // The fault's start, the successes during it, and its end (or, once the
            // clients stopped, the last success).
            let mut marks = vec![w.start];
            marks.extend(oks.iter().copied().filter(|&t| t > w.start && t < stop));
            if !after_load {
                marks.push(stop);
            }
            let gap = marks.windows(2).map(|p| p[1] - p[0]).max();
            Some(json!({
                "fault": w.fault,
                "detail": w.start_detail,
                "started-at-s": w.start as f64 / 1e9,
                "healed-at-s": stop as f64 / 1e9,
                "after-load": after_load,
                "first-write-after-ms": first
                    .filter(|_| !after_load)
                    .map(|t| (t - stop) as f64 / 1e6),
                "longest-write-gap-ms": gap.map(|g| g as f64 / 1e6),
            }))
        })
        .collect()
}

pub fn write_history(path: &Path, history: &[Event]) -> std::io::Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path)?);
    for e in history {
        serde_json::to_writer(&mut f, e)?;
        f.write_all(b"\n")?;
    }
    f.flush()
}

const W: f64 = 900.0;
const H: f64 = 360.0;
const L: f64 = 60.0;
const B: f64 = 40.0;
const COLORS: [&str; 6] = [
    "#e6194b66",
    "#3cb44b66",
    "#4363d866",
    "#f5823166",
    "#911eb466",
    "#46f0f066",
];

fn frame(
    title: &str,
    end_s: f64,
    ymax: f64,
    ylabel: &str,
    log: bool,
    windows: &[Window],
) -> String {
    let mut s = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' font-family='sans-serif' font-size='11'>\
         <rect width='100%' height='100%' fill='white'/>\
         <text x='{L}' y='14' font-size='13'>{title}</text>"
    );
    let faults: Vec<&str> = {
        let mut f: Vec<&str> = windows.iter().map(|w| w.fault.as_str()).collect();
        f.sort_unstable();
        f.dedup();
        f
    };
    for w in windows {
        let c = COLORS[faults.iter().position(|f| *f == w.fault).unwrap_or(0) % COLORS.len()];
        let x0 = x(w.start as f64 / 1e9, end_s);
        let x1 = x(w.stop.map_or(end_s, |t| t as f64 / 1e9), end_s);
        let _ = write!(
            s,
            "<rect x='{x0:.1}' y='20' width='{:.1}' height='{:.1}' fill='{c}'><title>{}</title></rect>",
            (x1 - x0).max(1.0),
            H - B - 20.0,
            w.fault
        );
    }
    for (i, f) in faults.iter().enumerate() {
        let top = 4 + 12 * i;
        let _ = write!(
            s,
            "<rect x='{:.0}' y='{top}' width='10' height='10' fill='{}'/><text x='{:.0}' y='{}'>{f}</text>",
            W - 330.0,
            COLORS[i % COLORS.len()],
            W - 316.0,
            top + 9
        );
    }
    let _ = write!(
        s,
        "<line x1='{L}' y1='{y0}' x2='{W}' y2='{y0}' stroke='black'/>\
         <line x1='{L}' y1='20' x2='{L}' y2='{y0}' stroke='black'/>\
         <text x='{}' y='{}'>seconds</text><text x='4' y='30'>{ylabel}</text>",
        W / 2.0,
        H - 8.0,
        y0 = H - B
    );
    for i in 0..=10 {
        let t = end_s * i as f64 / 10.0;
        let _ = write!(
            s,
            "<text x='{:.1}' y='{}' text-anchor='middle'>{t:.0}</text>",
            x(t, end_s),
            H - B + 14.0
        );
    }
    for i in 0..=4 {
        let v = if log {
            10f64.powf(ymax.log10() * i as f64 / 4.0)
        } else {
            ymax * i as f64 / 4.0
        };
        let _ = write!(
            s,
            "<text x='{}' y='{:.1}' text-anchor='end'>{}</text>",
            L - 4.0,
            y(v, ymax, log) + 4.0,
            if v >= 10.0 {
                format!("{v:.0}")
            } else {
                format!("{v:.1}")
            }
        );
    }
    s
}

fn x(t: f64, end_s: f64) -> f64 {
    L + (W - L - 10.0) * (t / end_s.max(1e-9))
}

fn y(v: f64, ymax: f64, log: bool) -> f64 {
    let frac = if log {
        (v.max(1.0).log10() / ymax.max(10.0).log10()).min(1.0)
    } else {
        (v / ymax.max(1e-9)).min(1.0)
    };
    (H - B) - (H - B - 20.0) * frac
}

/// Latency of every completed operation over time (log scale), by outcome.
pub fn latency_svg(history: &[Event], windows: &[Window]) -> String {
    let ps = pairs(history);
    let end_s = history.last().map_or(1.0, |e| e.time as f64 / 1e9);
    let pts: Vec<(f64, f64, Kind)> = ps
        .iter()
        .filter_map(|p| {
            let c = p.complete.as_ref()?;
            Some((
                p.invoke.time as f64 / 1e9,
                (c.time - p.invoke.time) as f64 / 1e6,
                c.kind,
            ))
        })
        .collect();
    let ymax = pts.iter().map(|p| p.1).fold(10.0, f64::max);
    let mut s = frame(
        "latency (ms, log scale) by invocation time",
        end_s,
        ymax,
        "ms",
        true,
        windows,
    );
    for (t, ms, k) in pts {
        let c = match k {
            Kind::Ok => "#1f77b4",
            Kind::Fail => "#d62728",
            _ => "#ff7f0e",
        };
        let _ = write!(
            s,
            "<circle cx='{:.1}' cy='{:.1}' r='1.3' fill='{c}'/>",
            x(t, end_s),
            y(ms, ymax, true)
        );
    }
    s.push_str("<text x='70' y='32' fill='#1f77b4'>ok</text><text x='90' y='32' fill='#d62728'>fail</text><text x='115' y='32' fill='#ff7f0e'>unknown</text></svg>");
    s
}

/// Completed operations per second, by outcome.
pub fn throughput_svg(history: &[Event], windows: &[Window]) -> String {
    let ps = pairs(history);
    let end_s = history.last().map_or(1.0, |e| e.time as f64 / 1e9);
    let buckets = end_s.ceil().max(1.0) as usize;
    let mut per: [Vec<f64>; 3] = [
        vec![0.0; buckets + 1],
        vec![0.0; buckets + 1],
        vec![0.0; buckets + 1],
    ];
    for p in &ps {
        if let Some(c) = &p.complete {
            let i = match c.kind {
                Kind::Ok => 0,
                Kind::Fail => 1,
                _ => 2,
            };
            per[i][((c.time as f64 / 1e9) as usize).min(buckets)] += 1.0;
        }
    }
    let ymax = per.iter().flatten().fold(1.0, |a: f64, &b| a.max(b));
    let mut s = frame("throughput (ops/s)", end_s, ymax, "ops/s", false, windows);
    for (i, c) in ["#1f77b4", "#d62728", "#ff7f0e"].iter().enumerate() {
        let pts: Vec<String> = per[i]
            .iter()
            .enumerate()
            .map(|(b, v)| format!("{:.1},{:.1}", x(b as f64 + 0.5, end_s), y(*v, ymax, false)))
            .collect();
        let _ = write!(
            s,
            "<polyline fill='none' stroke='{c}' stroke-width='1.5' points='{}'/>",
            pts.join(" ")
        );
    }
    s.push_str("<text x='70' y='32' fill='#1f77b4'>ok</text><text x='90' y='32' fill='#d62728'>fail</text><text x='115' y='32' fill='#ff7f0e'>unknown</text></svg>");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::build::H;

    fn nemesis(fault: &str, detail: &str) -> Op {
        Op::Nemesis {
            fault: fault.into(),
            detail: detail.into(),
        }
    }

    fn write(value: u64) -> Op {
        Op::Write {
            key: "r".into(),
            value,
        }
    }

    #[test]
    fn a_heal_after_the_last_write_was_invoked_has_no_figure() {
        let mut h = H::new();
        h.ev(NEMESIS, Kind::Invoke, nemesis("start-pause", "n1"))
            .ev(0, Kind::Invoke, write(1))
            .ev(NEMESIS, Kind::Invoke, nemesis("stop-pause", ""))
            .ev(0, Kind::Ok, write(1))
            .ev(NEMESIS, Kind::Invoke, nemesis("start-pause", "n2"))
            .ev(1, Kind::Invoke, write(2))
            .ev(NEMESIS, Kind::Invoke, nemesis("stop-pause", ""))
            .ev(1, Kind::Ok, write(2));
        let w = windows(&h.events);
        assert_eq!(w.len(), 2, "{w:?}");
        let r = heal_to_first_write(&h.events, &w);
        assert_eq!(r[0]["first-write-after-ms"], json!(10.0 / 1e6));
        assert_eq!(r[0]["after-load"], json!(false));
        assert_eq!(r[1]["first-write-after-ms"], json!(null));
        assert_eq!(r[1]["after-load"], json!(true));
        // No write succeeded during the first pause (start 10, stop 30); during the
        // second (50 to 70, after the load) none either, and there is no end to count to.
        assert_eq!(r[0]["longest-write-gap-ms"], json!(20.0 / 1e6));
        assert_eq!(r[1]["longest-write-gap-ms"], json!(null));
    }
}
