//! `cpu.png`: per-event median own CPU time of the `dispatch` process of both charms,
//! grouped bars on a log scale, with the p95 as a whisker, the ops / Rust ratio above, and
//! the floor (`/bin/true` run like a hook) as a dashed line.

use std::path::Path;

use plotters::prelude::*;
use plotters::style::{register_font, FontStyle};

use crate::report::Summary;

/// Where the chart's font is read from: DejaVu Sans, Debian package `fonts-dejavu-core`
/// (`$BENCH_FONT` names another TrueType file).
pub const DEFAULT_FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";

const OPS_COLOR: RGBColor = RGBColor(0x35, 0x72, 0xa5);
const RUST_COLOR: RGBColor = RGBColor(0xce, 0x42, 0x2b);

fn load_font() -> Result<(), String> {
    let path = std::env::var("BENCH_FONT").unwrap_or_else(|_| DEFAULT_FONT.to_string());
    let bytes = std::fs::read(&path).map_err(|e| {
        format!("cannot read the chart font {path}: {e} (apt-get install fonts-dejavu-core, or set BENCH_FONT)")
    })?;
    let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
    register_font("sans-serif", FontStyle::Normal, bytes)
        .map_err(|_| format!("{path} is not a usable TrueType font"))
}

/// An event label short enough for the x axis: `unhandled`, `cos-agent-joined`,
/// `config-changed (beta)`.
fn short_label(event: &str) -> String {
    if event == crate::UNHANDLED {
        return "unhandled hook".to_string();
    }
    event
        .replace("-relation-", "-")
        .replace("channel=beta", "beta")
        .replace("after upgrade", "upgrade")
}

/// Draws the chart into `out`.
pub fn draw(out: &Path, summary: &Summary, subtitle: &str) -> Result<(), String> {
    let reports = &summary.events;
    load_font()?;
    let e = |e: &dyn std::fmt::Display| format!("cannot draw {}: {e}", out.display());
    let root = BitMapBackend::new(out, (1900, 800)).into_drawing_area();
    root.fill(&WHITE).map_err(|x| e(&x))?;
    let (title_area, body) = root.split_vertically(70);
    title_area
        .draw(&Text::new(
            "Own CPU time of the dispatch process per hook, children excluded (median, p95 whisker; log scale)",
            (20, 12),
            ("sans-serif", 22).into_font(),
        ))
        .map_err(|x| e(&x))?;
    title_area
        .draw(&Text::new(
            subtitle.to_string(),
            (20, 42),
            ("sans-serif", 15).into_font().color(&RGBColor(80, 80, 80)),
        ))
        .map_err(|x| e(&x))?;

    let n = reports.len().max(1);
    let values = reports
        .iter()
        .flat_map(|r| [r.ops.cpu_p95_ms, r.rust.cpu_median_ms])
        .chain(summary.floor.iter().map(|f| f.cpu_median_ms));
    let top = values.clone().fold(1.0f64, f64::max) * 12.0;
    let bottom = values.fold(f64::INFINITY, f64::min).min(0.1) / 3.0;
    let labels: Vec<String> = reports.iter().map(|r| short_label(&r.event)).collect();
    let mut chart = ChartBuilder::on(&body)
        .margin(20)
        .x_label_area_size(60)
        .y_label_area_size(80)
        .build_cartesian_2d(0f64..n as f64, (bottom..top).log_scale())
        .map_err(|x| e(&x))?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(n * 2 + 1)
        .x_label_formatter(&|x| {
            let i = x.floor() as usize;
            if (x - i as f64 - 0.5).abs() < 0.01 {
                labels.get(i).cloned().unwrap_or_default()
            } else {
                String::new()
            }
        })
        .x_label_style(("sans-serif", 12).into_font())
        .y_desc("ms")
        .y_label_style(("sans-serif", 14).into_font())
        .axis_desc_style(("sans-serif", 16).into_font())
        .draw()
        .map_err(|x| e(&x))?;

    for (charm, color, offset) in [("ops", OPS_COLOR, 0.12), ("Rust", RUST_COLOR, 0.52)] {
        let bars = reports.iter().enumerate().map(|(i, r)| {
            let s = if charm == "ops" { &r.ops } else { &r.rust };
            let x0 = i as f64 + offset;
            Rectangle::new([(x0, bottom), (x0 + 0.36, s.cpu_median_ms)], color.filled())
        });
        chart
            .draw_series(bars)
            .map_err(|x| e(&x))?
            .label(format!("{charm} (median)"))
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 14, y + 6)], color.filled()));
        let whiskers = reports.iter().enumerate().map(|(i, r)| {
            let s = if charm == "ops" { &r.ops } else { &r.rust };
            let x = i as f64 + offset + 0.18;
            PathElement::new(
                vec![(x, s.cpu_median_ms), (x, s.cpu_p95_ms)],
                BLACK.stroke_width(2),
            )
        });
        chart.draw_series(whiskers).map_err(|x| e(&x))?;
        let values = reports.iter().enumerate().map(|(i, r)| {
            let s = if charm == "ops" { &r.ops } else { &r.rust };
            let x = i as f64 + offset + 0.02;
            Text::new(
                if s.cpu_median_ms < 10.0 {
                    format!("{:.2}", s.cpu_median_ms)
                } else {
                    format!("{:.0}", s.cpu_median_ms)
                },
                (x, s.cpu_p95_ms * 1.25),
                ("sans-serif", 12).into_font(),
            )
        });
        chart.draw_series(values).map_err(|x| e(&x))?;
    }
    let speedups = reports.iter().enumerate().map(|(i, r)| {
        Text::new(
            format!("{:.0}x", r.cpu_ratio),
            (i as f64 + 0.38, top / 6.0),
            ("sans-serif", 15).into_font(),
        )
    });
    chart.draw_series(speedups).map_err(|x| e(&x))?;
    if let Some(floor) = &summary.floor {
        let y = floor.cpu_median_ms;
        let dashes = (0..n * 8).map(|k| {
            let x = k as f64 / 8.0;
            PathElement::new(vec![(x, y), (x + 0.07, y)], BLACK.stroke_width(1))
        });
        chart
            .draw_series(dashes)
            .map_err(|x| e(&x))?
            .label(format!("/bin/true run like a hook (median {y:.2} ms)"))
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 14, y)], BLACK.stroke_width(1)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperRight)
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK)
        .label_font(("sans-serif", 15).into_font())
        .draw()
        .map_err(|x| e(&x))?;
    root.present().map_err(|x| e(&x))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::{artifacts, defs, sample};
    use crate::report::{summarize, FLOOR};

    #[test]
    fn draws_the_chart() {
        if !Path::new(DEFAULT_FONT).exists() && std::env::var_os("BENCH_FONT").is_none() {
            eprintln!("skipped: no font");
            return;
        }
        let mut samples = Vec::new();
        for i in 0..5 {
            samples.push(sample("ops", "update-status", 200_000 + i, 30_000));
            samples.push(sample("rust", "update-status", 2_300 + i, 1_500));
            samples.push(sample("ops", "unhandled", 190_000 + i, 30_000));
            samples.push(sample("rust", "unhandled", 470 + i, 1_500));
            samples.push(sample(FLOOR, "unhandled", 500 + i, 1_000));
        }
        let summary = summarize(&defs(), &samples, &artifacts(1, 1));
        let out =
            std::env::temp_dir().join(format!("charm-bench-chart-{}.png", std::process::id()));
        draw(&out, &summary, "test").unwrap();
        assert!(std::fs::metadata(&out).unwrap().len() > 10_000);
        if std::env::var_os("KEEP_CHART").is_none() {
            let _ = std::fs::remove_file(&out);
        }
    }
}
