//! `report.html`: throughput and latency over time with the fault windows shaded (an SVG
//! drawn with plotters), the fault log, and every checker's verdict.

use plotters::prelude::*;

use crate::history::{History, Kind, Op, Process};
use crate::run::{Outcome, RunOptions};

/// Per-second figures of completed client operations.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Second {
    pub ok: u64,
    pub fail: u64,
    pub info: u64,
    /// Latency percentiles of the `ok` operations, in ms.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Buckets the history's completions by the second they completed in.
pub fn per_second(history: &History) -> Vec<Second> {
    let pairs = history.pairs();
    let last = history.events.last().map(|e| e.time_ns).unwrap_or(0);
    let seconds = (last / 1_000_000_000 + 1) as usize;
    let mut buckets = vec![Second::default(); seconds];
    let mut latencies: Vec<Vec<f64>> = vec![Vec::new(); seconds];
    for pair in &pairs {
        let Some(complete) = pair.complete else {
            continue;
        };
        let s = ((complete.time_ns / 1_000_000_000) as usize).min(seconds - 1);
        match complete.kind {
            Kind::Ok => {
                buckets[s].ok += 1;
                latencies[s].push((complete.time_ns - pair.invoke.time_ns) as f64 / 1e6);
            }
            Kind::Fail => buckets[s].fail += 1,
            _ => buckets[s].info += 1,
        }
    }
    for (bucket, mut l) in buckets.iter_mut().zip(latencies) {
        if l.is_empty() {
            continue;
        }
        l.sort_by(f64::total_cmp);
        let at = |q: f64| l[((l.len() - 1) as f64 * q).round() as usize];
        bucket.p50_ms = at(0.5);
        bucket.p99_ms = at(0.99);
    }
    buckets
}

/// Fault windows as (start s, end s, name).
pub fn fault_windows(history: &History) -> Vec<(f64, f64, String)> {
    let mut open: Vec<(f64, String)> = Vec::new();
    let mut windows = Vec::new();
    let end = history
        .events
        .last()
        .map(|e| e.time_ns as f64 / 1e9)
        .unwrap_or(0.0);
    for event in &history.events {
        if let (Process::Nemesis, Op::Fault { name, start, .. }) = (&event.process, &event.op) {
            let t = event.time_ns as f64 / 1e9;
            if *start {
                open.push((t, name.clone()));
            } else if let Some(i) = open.iter().position(|(_, n)| n == name) {
                let (s, n) = open.remove(i);
                windows.push((s, t, n));
            }
        }
    }
    windows.extend(open.into_iter().map(|(s, n)| (s, end, n)));
    windows
}

fn svg(history: &History) -> Result<String, String> {
    let seconds = per_second(history);
    let windows = fault_windows(history);
    let mut out = String::new();
    {
        let root = SVGBackend::with_string(&mut out, (960, 560)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, bottom) = root.split_vertically(280);
        let x_max = seconds.len().max(1) as f64;
        let ops_max = seconds
            .iter()
            .map(|s| s.ok + s.fail + s.info)
            .max()
            .unwrap_or(1)
            .max(1) as f64;
        let latency_max = seconds.iter().map(|s| s.p99_ms).fold(1.0f64, f64::max);
        let shade = RGBColor(255, 200, 200).mix(0.6);

        let mut chart = ChartBuilder::on(&top)
            .caption(
                "operations completed per second (ok, fail, info)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..x_max, 0f64..ops_max * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("s")
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, e, _) in &windows {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*s, 0.0), (*e, ops_max * 1.1)],
                    shade.filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
        let line = |f: fn(&Second) -> f64| -> Vec<(f64, f64)> {
            seconds
                .iter()
                .enumerate()
                .map(|(i, s)| (i as f64 + 0.5, f(s)))
                .collect()
        };
        chart
            .draw_series(LineSeries::new(line(|s| s.ok as f64), &BLUE))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(line(|s| s.fail as f64), &RED))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(line(|s| s.info as f64), &MAGENTA))
            .map_err(|e| e.to_string())?;

        let mut chart = ChartBuilder::on(&bottom)
            .caption(
                "latency of ok operations, ms (p50, p99)",
                ("sans-serif", 16),
            )
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(50)
            .build_cartesian_2d(0f64..x_max, 0f64..latency_max * 1.1)
            .map_err(|e| e.to_string())?;
        chart
            .configure_mesh()
            .x_desc("s")
            .draw()
            .map_err(|e| e.to_string())?;
        for (s, e, _) in &windows {
            chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(*s, 0.0), (*e, latency_max * 1.1)],
                    shade.filled(),
                )))
                .map_err(|e| e.to_string())?;
        }
        chart
            .draw_series(LineSeries::new(line(|s| s.p50_ms), &GREEN))
            .map_err(|e| e.to_string())?;
        chart
            .draw_series(LineSeries::new(line(|s| s.p99_ms), &BLACK))
            .map_err(|e| e.to_string())?;
        root.present().map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// The whole report page.
pub fn html(
    options: &RunOptions,
    history: &History,
    outcome: &Outcome,
    faults: &[String],
) -> String {
    let plot = svg(history).unwrap_or_else(|e| format!("<p>plot failed: {}</p>", escape(&e)));
    let mut rows = String::new();
    for (name, verdict) in &outcome.verdicts {
        rows.push_str(&format!(
            "<tr><td>{}</td><td class=\"{}\">{}</td><td><pre>{}</pre></td><td><pre>{}</pre></td></tr>\n",
            escape(name),
            if verdict.valid { "ok" } else { "bad" },
            if verdict.valid { "valid" } else { "INVALID" },
            escape(&verdict.anomalies.join("\n")),
            escape(&serde_json::to_string(&verdict.stats).unwrap_or_default()),
        ));
    }
    let fault_list: String = faults
        .iter()
        .map(|f| format!("<li>{}</li>", escape(f)))
        .collect();
    format!(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>ledger-jepsen: {workload} / {nemesis} / seed {seed}</title>\
<style>body{{font-family:sans-serif;margin:2em}} td,th{{border:1px solid #ccc;padding:4px;vertical-align:top}} \
table{{border-collapse:collapse}} .ok{{color:#070}} .bad{{color:#b00;font-weight:bold}} pre{{margin:0;white-space:pre-wrap}}</style></head><body>\
<h1>ledger-jepsen: {verdict}</h1>\
<p>workload <b>{workload}</b>, nemesis <b>{nemesis}</b>, {nodes} nodes, seed {seed}, {secs} s, {ops} operations{negative}.</p>\
<p>Shaded: fault windows. Lines: ok (blue), fail (red), info (magenta); latency p50 (green), p99 (black).</p>\
{plot}\
<h2>Checkers</h2><table><tr><th>checker</th><th>verdict</th><th>anomalies</th><th>stats</th></tr>{rows}</table>\
<h2>Faults</h2><ul>{fault_list}</ul></body></html>\n",
        workload = escape(&options.workload),
        nemesis = escape(&options.nemesis),
        seed = options.seed,
        nodes = options.nodes,
        secs = options.time_limit.as_secs(),
        ops = outcome.ops,
        negative = match &options.negative_control {
            Some(kind) => format!(" (negative control {}: a deliberately broken server)", escape(kind)),
            None => String::new(),
        },
        verdict = if outcome.valid { "valid" } else { "ANOMALIES FOUND" },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Recorder;

    #[test]
    fn seconds_and_fault_windows_come_from_the_history_and_the_plot_renders() {
        let mut r = Recorder::default();
        let read = || Op::ReadAll {
            balances: Default::default(),
        };
        r.push(100_000_000, Process::Client(0), Kind::Invoke, read(), None);
        r.push(300_000_000, Process::Client(0), Kind::Ok, read(), None);
        let fault = |start| Op::Fault {
            name: "kill".into(),
            start,
            detail: "SIGKILL node 1".into(),
        };
        r.push(
            1_000_000_000,
            Process::Nemesis,
            Kind::Info,
            fault(true),
            None,
        );
        r.push(
            1_200_000_000,
            Process::Client(1),
            Kind::Invoke,
            read(),
            None,
        );
        r.push(2_500_000_000, Process::Client(1), Kind::Info, read(), None);
        r.push(
            3_000_000_000,
            Process::Nemesis,
            Kind::Info,
            fault(false),
            None,
        );
        let seconds = per_second(&r.history);
        assert_eq!(seconds.len(), 4);
        assert_eq!(seconds[0].ok, 1);
        assert!((seconds[0].p50_ms - 200.0).abs() < 1e-6);
        assert_eq!(seconds[2].info, 1);
        assert_eq!(
            fault_windows(&r.history),
            vec![(1.0, 3.0, "kill".to_string())]
        );
        let svg = svg(&r.history).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("<rect"), "fault window shaded");
    }
}
